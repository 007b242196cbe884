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
from .controller import EpochController, ModeSwitchController, SLSController, controller_for
from .lr_range import (
    LRRangeController,
    LRRangeResult,
    build_lr_range_sgd,
    lr_range_test,
    suggest_lr,
)
from .mbt_finder import MBTFinder, MBTSearchConfig, SearchReport, find_lr, rescale_factor
from .mbt_schedule import MBT_VARIANTS, MBTController, build_mbt
from .momentum import BacktrackingMomentum, BacktrackingNAG
from .sls import SLS

__all__ = [
    "BacktrackingGD",
    "BacktrackingMomentum",
    "BacktrackingNAG",
    "EpochController",
    "InexactBacktrackingGD",
    "LRRangeController",
    "LRRangeResult",
    "ModeSwitchController",
    "SLS",
    "SLSController",
    "SearchResult",
    "TwoWayBacktrackingGD",
    "UnboundedBacktrackingGD",
    "armijo_holds",
    "armijo_search",
    "build_lr_range_sgd",
    "controller_for",
    "default_h",
    "evaluate",
    "lr_range_test",
    "make_closure",
    "MBT_VARIANTS",
    "MBTController",
    "MBTFinder",
    "MBTSearchConfig",
    "SearchReport",
    "build_mbt",
    "find_lr",
    "rescale_factor",
    "suggest_lr",
]
