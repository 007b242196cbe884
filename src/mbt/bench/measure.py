"""The timed measurements behind ``python -m mbt.bench``.

Every timing drives the real code: :func:`mbt.loop.train_epoch` for training steps,
:meth:`mbt.optim.MBTController.on_epoch_start` for the MBT search, on loaders from
:func:`mbt.data.build_loaders`. A timed window starts after ``warmup`` steps of the same
pass (worker start-up, cudnn/oneDNN algorithm selection, torch.compile, a filled prefetch
queue all fall outside it) and the device is synchronised at both ends.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mbt.data import build_loaders
from mbt.loop import train_epoch
from mbt.models import build_model
from mbt.optim import build_mbt

__all__ = [
    "EPOCH_IMAGES",
    "MODEL",
    "SEARCH_BATCHES",
    "Pipeline",
    "flops_per_image",
    "mbt_overhead",
    "throughput",
]

log = logging.getLogger(__name__)

MODEL = "resnet18"
DATASET = "cifar10"
EPOCH_IMAGES = 50_000  # one CIFAR training epoch
SEARCH_BATCHES = 20  # mini-batches per MBT search (code num_iter = 20, paper Sec. 3.5.2)
LR = 1e-2  # Table 2: NAG's lr and the MBT search's start eta
MOMENTUM = 0.9
# mbt.train draws the search's mini-batches from a shuffle of their own (its offset).
_SEARCH_EPOCH = 1_000_003


@dataclass(frozen=True)
class Pipeline:
    """One way of feeding and running the model."""

    name: str
    data: str  # build_loaders pipeline: "dataloader" (CPU workers, PIL) | "device"
    augment: str  # "paper" | "standard"
    channels_last: bool
    bf16: bool  # autocast, CUDA only (mbt.loop.autocast)
    compile: bool

    def describe(self) -> dict:
        return asdict(self)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Window:
    """The first ``steps`` batches of ``loader`` (restarted if it runs out), for
    ``train_epoch``; notes the time when batch ``skip`` is requested, after syncing, so
    the window leaves out the first ``skip`` steps. Yields exactly ``steps`` batches:
    ``train_epoch`` then ends without asking the loader for one more."""

    def __init__(self, loader, steps: int, skip: int, device: torch.device):
        if not 0 <= skip < steps:
            raise ValueError(f"need 0 <= warm-up ({skip}) < steps ({steps})")
        self.loader, self.steps, self.skip, self.device = loader, steps, skip, device
        self.t0: float | None = None
        self.t1: float | None = None
        self.restarts = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        it = iter(self.loader)
        for n in range(self.steps):
            if n == self.skip:  # before fetching: the window holds its batches' data time
                sync(self.device)
                self.t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:  # ran out: a fresh iterator, as the next epoch would take
                self.restarts += 1
                it = iter(self.loader)
                batch = next(it, None)
                if batch is None:
                    raise ValueError("the loader yielded no batch")
            yield batch
        # train_epoch asks for one more batch once its last step is done: the window ends
        # here, before the loader's iterator (DataLoader workers) is torn down.
        sync(self.device)
        self.t1 = time.perf_counter()


def timed_steps(model: nn.Module, loader, optimizer, *, device: torch.device, bf16: bool,
                steps: int, warmup: int) -> float:
    """Seconds per training step, over ``steps`` steps after ``warmup`` untimed ones."""
    window = _Window(loader, warmup + steps, warmup, device)
    stats = train_epoch(model, window, optimizer, nn.CrossEntropyLoss(), device=device,
                        bf16=bf16, diverge_factor=math.inf)
    if stats.diverged or stats.steps != warmup + steps:
        raise RuntimeError(f"training diverged during the benchmark (loss {stats.loss})")
    seconds = window.t1 - window.t0
    if window.restarts:
        log.info("the timed window restarted the loader %d time(s)", window.restarts)
    return seconds / steps


class _Probe(nn.Module):
    """The model as the MBT finder sees it, noting when each forward starts (and whether
    grad is on: the finder's gradient pass) and when each search batch is requested.

    Same parameters, buffers and modules as the model, so the search computes exactly
    what it would. The finder syncs the host once per gradient pass and once per trial,
    so on CUDA too the time from one forward's start to the next event covers the GPU work
    in between (kernels of the search's own data batch can slip into the gradient pass).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model
        self.marks: list[tuple[str, float]] = []  # ("grad" | "trial" | "batch", time)

    def forward(self, x):
        self.marks.append(("grad" if torch.is_grad_enabled() else "trial", time.perf_counter()))
        return self.inner(x)

    def batches(self, loader):
        """``loader`` re-iterable, marking each request for a batch."""
        probe = self

        class Marked:
            def __iter__(self):
                for batch in loader:
                    yield batch
                    probe.marks.append(("batch", time.perf_counter()))

        return Marked()


def _per_batch(marks: list[tuple[str, float]], t0: float, t1: float) -> dict:
    """The search [t0, t1] split per mini-batch into gradient pass, trials and other.

    An interval runs from one event to the next. One opened by a gradient forward is the
    gradient pass (forward, backward, ||g||^2, sync, buffer restore); one opened by a trial
    forward is a trial (weight copies, forward, restore, sync; the last of a mini-batch
    also holds the walk step); one opened by a batch request is the next mini-batch's data
    (other). Before the first forward: set-up and the first batch's data (other).
    """
    events = [*marks, ("end", t1)]
    batches: list[dict] = []
    trial_s: list[float] = []
    for (kind, t), (_, t_next) in zip(events, events[1:], strict=False):
        dt = t_next - t
        if kind == "grad":
            batches.append({"grad": dt, "trials": 0.0, "other": 0.0, "n_trials": 0})
        elif kind == "trial":
            batches[-1]["trials"] += dt
            batches[-1]["n_trials"] += 1
            trial_s.append(dt)
        else:
            batches[-1]["other"] += dt
    return {"setup": events[0][1] - t0, "batches": batches, "trial_s": trial_s}


def _to_full_search(split: dict) -> dict:
    """Seconds (and trials) of a 20-mini-batch search from a shorter one.

    The first mini-batch starts from the fixed start lr and usually needs more trials
    than the later ones, which start from the running mean; so it counts once and the
    mean of the later ones 19 times (the first alone x 20 if that is all there is). With
    all 20 measured this is the plain sum.
    """
    first, later = split["batches"][0], split["batches"][1:]
    n = SEARCH_BATCHES

    def full(key: str) -> float:
        if not later:
            return n * first[key]
        return first[key] + (n - 1) * statistics.mean(b[key] for b in later)

    out = {k: full(k) for k in ("grad", "trials", "other", "n_trials")}
    out["other"] += split["setup"]
    out["total"] = out["grad"] + out["trials"] + out["other"]
    return out


def _nag(model: nn.Module) -> torch.optim.SGD:
    # conf/optim/nag.yaml: the paper's NAG baseline.
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)


def _model(pipe: Pipeline, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(eager model, the module that trains: compiled or the same) as mbt.train builds them."""
    torch.manual_seed(0)
    model = build_model(MODEL, 10).to(device)
    if pipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # dynamic=False: one static graph per batch size, as a run at one batch size settles on
    # (the batch sizes of the MBT section must not turn it into a dynamic-shape graph).
    return model, (torch.compile(model, dynamic=False) if pipe.compile else model)


def _loader(pipe: Pipeline, root: Path, batch_size: int, device: torch.device, workers: int):
    train, _, _ = build_loaders(
        DATASET, root, batch_size=batch_size, augment=pipe.augment, pipeline=pipe.data,
        device=device, num_workers=workers, channels_last=pipe.channels_last,
        allow_partial=True, test_batch_size=None,
    )  # fmt: skip
    if pipe.data == "device":
        train.drop_last = True  # only full batches, also when a window restarts the loader
    return train


def throughput(pipes: list[Pipeline], root: Path, *, batch_size: int, images: int,
               warmup: int, repeats: int, workers: int, device: torch.device) -> list[dict]:
    """Training images/s of each pipeline (NAG steps), the pipelines interleaved per repeat."""
    steps = max(1, images // batch_size)
    setups = []
    for pipe in pipes:
        model, step_model = _model(pipe, device)
        setups.append((pipe, step_model, _nag(model),
                       _loader(pipe, root, batch_size, device, workers)))
    seconds: dict[str, list[float]] = {p.name: [] for p in pipes}
    for rep in range(repeats):
        for pipe, step_model, opt, loader in setups:
            t = timed_steps(step_model, loader, opt, device=device, bf16=pipe.bf16,
                            steps=steps, warmup=warmup)
            seconds[pipe.name].append(t)
            log.info("throughput %s (repeat %d/%d): %.1f images/s", pipe.name, rep + 1,
                     repeats, batch_size / t)
    rows = []
    for pipe, *_ in setups:
        step = statistics.median(seconds[pipe.name])
        rows.append({
            **pipe.describe(), "batch_size": batch_size, "timed_steps": steps,
            "timed_images": steps * batch_size, "warmup_steps": warmup,
            "step_s": step, "step_s_all": seconds[pipe.name],
            "images_per_s": batch_size / step,
            "epoch_50k_s": EPOCH_IMAGES / (batch_size / step),
        })  # fmt: skip
    return rows


def mbt_overhead(pipe: Pipeline, root: Path, *, batch_size: int, steps: int, warmup: int,
                 search_batches: int, repeats: int, device: torch.device) -> dict:
    """MBT-NAG's search against NAG's training step, both on ``pipe``, at ``batch_size``.

    Per repeat: ``steps`` timed NAG steps (after ``warmup``), then one MBT search through
    the controller as ``mbt.train`` calls it (eager model, fp32, loader reshuffled for the
    search, rho of a 50 000-image epoch), its time split by :class:`_Probe` (no extra
    work or syncs) and, if fewer than 20 mini-batches were searched, extrapolated to 20
    (:func:`_to_full_search`). MBT-NAG trains with the same SGD(momentum 0.9, Nesterov) step as NAG,
    so one step time serves both epochs.
    """
    loader = _loader(pipe, root, batch_size, device, workers=0)
    model, step_model = _model(pipe, device)
    init = copy.deepcopy(model.state_dict())
    loss_fn = nn.CrossEntropyLoss()
    probe = _Probe(model)

    def search(num_batches: int):
        _, controller = build_mbt("nag", model.parameters(), lr=LR, momentum=MOMENTUM,
                                  num_batches=num_batches)
        loader.set_epoch(_SEARCH_EPOCH)
        probe.marks.clear()
        sync(device)
        t0 = time.perf_counter()
        report = controller.on_epoch_start(0, probe, loss_fn, probe.batches(loader),
                                           dataset_size=EPOCH_IMAGES, batch_size=batch_size)
        sync(device)
        t1 = time.perf_counter()
        return t1 - t0, report, _per_batch(probe.marks, t0, t1)

    if device.type == "cuda":  # the search's own shapes and no-grad kernels, untimed
        search(1)
    runs = []
    for rep in range(repeats):
        model.load_state_dict(init)
        step = timed_steps(step_model, loader, _nag(model), device=device, bf16=pipe.bf16,
                           steps=steps, warmup=warmup)
        model.load_state_dict(init)
        seconds, report, split = search(search_batches)
        full = _to_full_search(split)
        runs.append({
            "step_s": step, "search_measured_s": seconds, "search_s": full["total"],
            "grad_total_s": full["grad"], "trial_total_s": full["trials"],
            "other_s": full["other"], "trials": full["n_trials"],
            "grad_pass_s": statistics.median(b["grad"] for b in split["batches"]),
            "trial_s": statistics.median(split["trial_s"]),
            "trials_by_batch": [len(t) for t in report.trials], "lr": report.lr,
        })  # fmt: skip
        log.info("MBT overhead b=%d (repeat %d/%d): step %.4g s, search %.4g s "
                 "(%d grad passes, %d trials)", batch_size, rep + 1, repeats, step, seconds,
                 report.grad_evals, report.func_evals)
    model.load_state_dict(init)
    return _overhead_row(batch_size, search_batches, runs)


def _overhead_row(batch_size: int, search_batches: int, runs: list[dict]) -> dict:
    """Medians of the repeats and the 50 000-image epochs."""
    keys = ("step_s", "search_s", "search_measured_s", "trials", "grad_pass_s", "trial_s",
            "grad_total_s", "trial_total_s", "other_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    step, search = med["step_s"], med["search_s"]
    steps_per_epoch = math.ceil(EPOCH_IMAGES / batch_size)
    nag_epoch = steps_per_epoch * step
    # The floor, 20 gradient evaluations, two ways: as 20 training steps (timed
    # apart from the search) and as 20 of the search's own gradient passes (timed inside
    # it, so drifting machine load does not enter the ratio).
    floor = SEARCH_BATCHES * step
    floor_grad = SEARCH_BATCHES * med["grad_pass_s"]
    # Fewest evaluations the two-way search can make: per mini-batch one gradient pass and
    # two trials (one that passes the Armijo test and one that fails it).
    least = SEARCH_BATCHES * (med["grad_pass_s"] + 2 * med["trial_s"])
    return {
        "batch_size": batch_size,
        "steps_per_epoch_50k": steps_per_epoch,
        "search_batches_measured": search_batches,
        "search_scaled": search_batches < SEARCH_BATCHES,
        "step_s": step,
        "search_s": search,
        "search_measured_s": med["search_measured_s"],
        "trials": med["trials"],
        "trials_per_batch": med["trials"] / SEARCH_BATCHES,
        "grad_pass_s": med["grad_pass_s"],
        "trial_s": med["trial_s"],
        "trial_vs_step": med["trial_s"] / step,
        "split_s": {"grad_passes": med["grad_total_s"], "trials": med["trial_total_s"],
                    "other": med["other_s"]},
        "floor_s": floor,
        "floor_grad_s": floor_grad,
        "floor_share": SEARCH_BATCHES / steps_per_epoch,
        "search_steps": search / step,
        "search_vs_floor": search / floor,
        "search_vs_floor_grad": search / floor_grad,
        "least_search_s": least,
        "least_vs_floor_grad": least / floor_grad,
        "nag_epoch_50k_s": nag_epoch,
        "mbt_epoch_50k_s": search + nag_epoch,
        "mbt_train_50k_s": nag_epoch,
        "ratio": (search + nag_epoch) / nag_epoch,
        "repeats": runs,
    }


def flops_per_image() -> int:
    """Forward+backward FLOPs of one image through the model (FlopCounterMode).

    Counted on CPU at batch 2 (the count depends on shapes only); FlopCounterMode counts
    convolutions and matrix products, not BatchNorm, activations or the optimizer update,
    which is the usual convention for MFU.
    """
    model = build_model(MODEL, 10)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with FlopCounterMode(display=False) as counter:
        nn.CrossEntropyLoss()(model(x), y).backward()
    return counter.get_total_flops() // 2
