"""Line searches and optimizers of Truong & Nguyen (2020), Sec. 2-3, in ``torch.optim`` form."""

from .armijo import SearchResult, armijo_holds, armijo_search
from .backtracking import (
    BacktrackingGD,
    InexactBacktrackingGD,
    TwoWayBacktrackingGD,
    UnboundedBacktrackingGD,
    default_h,
)
from .closure import evaluate, make_closure
from .momentum import BacktrackingMomentum, BacktrackingNAG

__all__ = [
    "BacktrackingGD",
    "BacktrackingMomentum",
    "BacktrackingNAG",
    "InexactBacktrackingGD",
    "SearchResult",
    "TwoWayBacktrackingGD",
    "UnboundedBacktrackingGD",
    "armijo_holds",
    "armijo_search",
    "default_h",
    "evaluate",
    "make_closure",
]
