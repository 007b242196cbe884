"""One training epoch and one evaluation pass, the same for every optimizer.

Every optimizer is driven through ``optimizer.step(closure)``: stock torch optimizers
call the closure once, the line searches of :mod:`mbt.optim` call it again at trial
points with ``backward=False`` (no graph). So the loop never branches on names.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from mbt.optim.step_size import step_size

__all__ = ["EpochStats", "autocast", "cpu_bf16_supported", "evaluate", "train_epoch"]


@dataclass
class EpochStats:
    loss: float
    acc: float  # percent
    lr: float  # mean learning rate of the steps taken
    steps: int
    diverged: bool = False
    first_loss: float | None = None
    step_lrs: list[float] = field(default_factory=list)


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's own test: AVX512-BF16 or AMX on x86,
    BF16 on Arm). Without it bf16 autocast is emulated and slower than fp32."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and torch.backends.mkldnn.is_available():
        return bool(check())
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA and on the CPU (mbt.config refuses ``amp_bf16`` on a CPU
    without native bf16); fp32 elsewhere."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    device: torch.device,
    bf16: bool = False,
    max_steps: int | None = None,
    check_every: int = 20,
    diverge_factor: float | None = None,
    ref_loss: float | None = None,
    record_steps: bool = False,
    bar: bool = False,
    desc: str = "",
) -> EpochStats:
    """Train one epoch; stops early (``diverged=True``) on a non-finite (or exploding) loss.

    Divergence: a non-finite running mean loss (the published code's only stop: it never
    ends a run otherwise), or, when ``diverge_factor`` is set, a mean above
    ``diverge_factor * ref_loss``; ``ref_loss`` is the run's first mini-batch loss (None:
    this epoch's first, returned as ``first_loss`` for later epochs). Checked every
    ``check_every`` steps (one host sync each) and at the end.

    Longer than 60 lines: the per-step hot loop; the step, the divergence check and the
    records stay inline so a step costs no extra calls or host syncs."""
    model.train()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, steps, lr_sum, first_loss = 0, 0, 0.0, None
    step_lrs: list[float] = []
    n_steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    batches = tqdm(loader, total=n_steps, desc=desc, leave=False, disable=not bar)
    for x, y in batches:
        if steps >= n_steps:
            break
        seen_here: dict[str, torch.Tensor] = {}

        def closure(backward: bool = True, x=x, y=y, seen_here=seen_here) -> torch.Tensor:
            with autocast(device, bf16):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if backward:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # The first backward evaluation is at the current point: log that one.
                seen_here.setdefault("loss", loss.detach())
                seen_here.setdefault("logits", logits.detach())
            return loss

        optimizer.step(closure)
        total_loss += seen_here["loss"].double() * len(y)
        correct += (seen_here["logits"].argmax(1) == y).sum()
        seen += len(y)
        steps += 1
        lr = step_size(optimizer)
        lr_sum += lr
        if record_steps:
            step_lrs.append(lr)
        if first_loss is None:
            first_loss = float(seen_here["loss"])
            if ref_loss is None:
                ref_loss = first_loss
        if steps % check_every == 0 or steps == n_steps:
            mean = float(total_loss) / seen
            if not math.isfinite(mean) or (diverge_factor is not None
                                           and mean > diverge_factor * ref_loss):
                return EpochStats(mean, 100.0 * float(correct) / seen, lr_sum / steps, steps,
                                  diverged=True, first_loss=first_loss, step_lrs=step_lrs)
            if bar:
                batches.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.3g}")
    mean = float(total_loss) / max(seen, 1)
    return EpochStats(mean, 100.0 * float(correct) / max(seen, 1), lr_sum / max(steps, 1),
                      steps, diverged=not math.isfinite(mean), first_loss=first_loss,
                      step_lrs=step_lrs)


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn: nn.Module, *, device: torch.device,
             bf16: bool = False) -> tuple[float, float]:
    """(mean loss, accuracy in percent) over ``loader`` in eval mode."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        with autocast(device, bf16):
            logits = model(x)
        total_loss += loss_fn(logits.float(), y).double() * len(y)
        # NaN logits (a diverged model) predict class 0, i.e. chance on balanced data,
        # which is how the paper records divergent runs (10.00 on CIFAR10).
        correct += (torch.nan_to_num(logits.float(), nan=0.0).argmax(1) == y).sum()
        seen += len(y)
    return float(total_loss) / max(seen, 1), 100.0 * float(correct) / max(seen, 1)
