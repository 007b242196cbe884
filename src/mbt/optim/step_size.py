"""The step size an optimizer actually used, for logging and the per-epoch lr curves.

``param_groups[0]["lr"]`` is the *multiplier* of the automatic methods, not their step
(Prodigy and D-Adaptation default it to 1 and learn ``d``), so Figure 3's lr curve and
its autolr extension read the step each method publishes:

* line searches (ours, SLS): ``optimizer.last_search["lr"]``, the accepted step;
* D-Adaptation SGD/Adam and Prodigy: ``d * lr`` (Defazio & Mishchenko 2023, Alg. 1;
  Mishchenko & Defazio 2024, Alg. 1), with Adam's bias correction left out;
* DoG / LDoG: ``eta = lr * rbar / sqrt(G)`` (Ivgi et al. 2023, Eq. 1), averaged over
  the group's parameters for the per-layer LDoG;
* Schedule-Free: ``scheduled_lr``, the lr after its warm-up (Defazio et al. 2024);
* anything else: the group's ``lr`` (after schedulers).
"""

from __future__ import annotations

import torch

__all__ = ["step_size"]


def step_size(optimizer: torch.optim.Optimizer) -> float:
    last = getattr(optimizer, "last_search", None)
    if isinstance(last, dict) and "lr" in last:
        return float(last["lr"])
    group = optimizer.param_groups[0]
    if "d" in group and "growth_rate" in group:  # D-Adaptation, Prodigy
        return float(group["d"]) * float(group["lr"])
    if "eta" in group and "rbar" in group:  # DoG, LDoG: a list of 0-d tensors, one sync
        return float(torch.stack([torch.as_tensor(e).float() for e in group["eta"]]).mean())
    if group.get("scheduled_lr"):  # Schedule-Free, once it has stepped
        return float(group["scheduled_lr"])
    return float(group["lr"])
