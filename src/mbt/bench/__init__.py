"""``python -m mbt.bench`` (``make bench``): training throughput and MBT search overhead.

In one process, on whatever device is present, ResNet18 with the same batch size and
number of images for each pair:

1. throughput of the reference pipeline (torch DataLoader + PIL transforms in 2 workers,
   fp32, NCHW: the paper's / kuangliu's setup) against the fast one (uint8 data set and
   augmentation on the device, channels_last, bf16 autocast on CUDA, optionally
   torch.compile), NAG steps at batch 200;
2. MBT-NAG against NAG on the fast pipeline at batch 12, 50, 200, 800: the search's cost
   against the floor of 20 gradient evaluations, split into gradient passes, trial
   forwards and the rest, and the 50 000-image epoch extrapolated from the measured step;
3. FLOPs per image, achieved FLOP/s and MFU against the device's peak (known GPUs only);
4. accuracy parity of bf16 / channels_last / compile runs against fp32 from the ledger.

Writes ``<out>/bench.json`` (every number, the settings, device, torch version, commit,
timestamp) and ``<out>/bench.md``. The data are a generated CIFAR-layout set in a temp
dir unless ``--data-root`` is given. Defaults depend on the device: full settings on
CUDA; a reduced run on CPU (a few minutes on 2 cores, labelled as such in the report);
``--smallest`` for the tests (under a minute on CPU).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from mbt.data import load_cifar
from mbt.data.synthetic import write_cifar
from mbt.runinfo import device_name, git_state, resolve_device

from . import measure, report
from .measure import Pipeline

__all__ = ["Settings", "refresh_parity", "resolve_settings", "run_bench", "write_results"]

log = logging.getLogger(__name__)

TARGET_BATCH = 200  # where the issue sets the MBT target
TARGET_FLOOR = 1.3  # search <= 1.3 x (20 training steps)
TARGET_RATIO = 1.10  # MBT-NAG epoch <= 1.10 x NAG epoch


@dataclass(frozen=True)
class Settings:
    """What to measure; ``None`` fields take the device's default (:func:`resolve_settings`)."""

    device: str = "auto"
    images: int | None = None  # timed images per throughput row
    batch_size: int | None = None  # throughput batch size
    batch_sizes: tuple[int, ...] | None = None  # MBT overhead
    bf16: bool | None = None
    compile: bool = False
    channels_last: bool = True
    augments: tuple[str, ...] | None = None
    ablation: bool | None = None  # also time the device pipeline in fp32 NCHW, no compile
    warmup: int | None = None  # untimed steps before each timed window
    steps: int | None = None  # timed NAG steps per batch size (MBT overhead)
    search_batches: int | None = None  # mini-batches of each timed search (20 = full)
    repeats: int | None = None
    workers: int = 2  # reference DataLoader workers (kuangliu / the paper's code: 2)
    data_root: str | None = None
    ledger: str | None = None
    out: str = "results"
    smallest: bool = False
    parity_only: bool = False  # only re-read the parity table (refresh_parity)
    notes: tuple[str, ...] = field(default=())


_DEFAULTS = {
    "cuda": {"images": 10_000, "batch_size": 200, "batch_sizes": (12, 50, 200, 800), "bf16": True,
             "augments": ("paper", "standard"), "ablation": True, "warmup": 10, "steps": 50,
             "search_batches": measure.SEARCH_BATCHES, "repeats": 3},
    # ~15 images/s for ResNet18 on 2 shared cores: full searches at batch 200 would take
    # minutes each, so the CPU run cuts them (and says so).
    "cpu": {"images": 400, "batch_size": 200, "batch_sizes": (12, 50, 200), "bf16": False,
            "augments": ("paper",), "ablation": False, "warmup": 1, "steps": 2,
            "search_batches": 2, "repeats": 1},
}
_SMALLEST = {"images": 24, "batch_size": 12, "batch_sizes": (12,), "augments": ("paper",),
             "ablation": False, "warmup": 0, "steps": 1, "search_batches": 1, "repeats": 1}


def resolve_settings(s: Settings, device: torch.device) -> Settings:
    """Fill the device defaults (and ``--smallest``) and validate."""
    base = dict(_DEFAULTS["cuda" if device.type == "cuda" else "cpu"])
    if s.smallest:
        base.update(_SMALLEST)
    merged = {**base, **{k: v for k, v in asdict(s).items() if v is not None}}
    notes = list(s.notes)
    if merged["bf16"] and device.type != "cuda":
        notes.append("bf16 autocast is CUDA-only in mbt.loop; it has no effect here, so the "
                     "fast pipeline runs fp32.")
        merged["bf16"] = False
    out = replace(s, **{**merged, "notes": tuple(notes)})
    for name in ("images", "batch_size", "steps", "search_batches", "repeats"):
        if getattr(out, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if out.warmup < 0 or out.workers < 0:
        raise ValueError("--warmup and --workers must be >= 0")
    if not 1 <= out.search_batches <= measure.SEARCH_BATCHES:
        raise ValueError(f"--search-batches must be in 1..{measure.SEARCH_BATCHES}")
    if out.images < out.batch_size:
        raise ValueError(f"--images ({out.images}) must be >= --batch-size ({out.batch_size})")
    if not out.batch_sizes or min(out.batch_sizes) < 1:
        raise ValueError("--batch-sizes needs positive sizes")
    bad = set(out.augments) - {"paper", "standard", "none"}
    if bad or not out.augments:
        raise ValueError(f"--augments must name paper/standard/none, got {out.augments}")
    return out


def _pipelines(s: Settings) -> list[Pipeline]:
    pipes = []
    for aug in s.augments:
        pipes.append(Pipeline(f"reference/{aug}", "dataloader", aug, False, False, False))
        if s.ablation and aug == s.augments[0]:
            pipes.append(Pipeline(f"device fp32/{aug}", "device", aug, False, False, False))
        pipes.append(Pipeline(f"fast/{aug}", "device", aug, s.channels_last, s.bf16, s.compile))
    return pipes


def _data(s: Settings, tmp: Path) -> tuple[Path, dict]:
    if s.data_root is not None:
        return Path(s.data_root), {"kind": "real", "root": s.data_root}
    # Enough for the warm-up plus the timed throughput window without a restart, and at
    # least one batch of the largest MBT batch size.
    steps = s.images // s.batch_size + s.warmup
    n = max(steps * s.batch_size, max(s.batch_sizes))
    write_cifar(tmp, measure.DATASET, n_train=n, n_test=10, seed=0)
    return tmp, {"kind": "synthetic", "num_train": n}


def parity_ledger(path: str | None) -> Path:
    """The ledger the parity table reads: ``path``, else ``$MBT_RUNS/ledger.jsonl``."""
    return Path(path) if path is not None else \
        Path(os.environ.get("MBT_RUNS", "runs")) / "ledger.jsonl"


def refresh_parity(out: str | Path, ledger_path: str | None) -> tuple[Path, Path]:
    """Re-read only the parity table from the ledger into ``<out>/bench.json`` and
    ``bench.md``, keeping the timings measured before (they are not re-timed)."""
    js = Path(out) / "bench.json"
    if not js.exists():
        raise ValueError(f"{js} does not exist: run the bench first (without --parity-only)")
    res = json.loads(js.read_text())
    res["parity"] = report.parity(parity_ledger(ledger_path))
    return write_results(res, out)


def run_bench(s: Settings, command: str = "python -m mbt.bench") -> dict:
    """Measure everything ``s`` asks for; returns the bench.json dict.


    Longer than 60 lines: one timed sequence (pipelines, steps, searches, the GPU half)
    whose order and warm-ups are part of what it measures."""
    device = resolve_device(s.device)
    s = resolve_settings(s, device)
    load_start = os.getloadavg()[0]
    name = device_name(device)
    notes = list(s.notes)
    with tempfile.TemporaryDirectory(prefix="mbt-bench-") as tmp:
        root, data = _data(s, Path(tmp))
        if data["kind"] == "real":
            data["num_train"] = len(load_cifar(measure.DATASET, root,
                                               allow_partial=True).train.labels)
        pipes = _pipelines(s)
        log.info("throughput: %s at batch %d on %s", ", ".join(p.name for p in pipes),
                 s.batch_size, name)
        rows = measure.throughput(pipes, root, batch_size=s.batch_size, images=s.images,
                                  warmup=s.warmup, repeats=s.repeats, workers=s.workers,
                                  device=device)
        ref = {r["augment"]: r["images_per_s"] for r in rows if r["data"] == "dataloader"}
        for r in rows:
            r["vs_reference"] = r["images_per_s"] / ref[r["augment"]]
        ratio = {r["augment"]: r["vs_reference"] for r in rows if r["name"].startswith("fast")}

        fast = next(p for p in pipes if p.name.startswith("fast"))
        overhead = []
        for b in s.batch_sizes:
            log.info("MBT overhead at batch %d", b)
            overhead.append(measure.mbt_overhead(
                fast, root, batch_size=b, steps=s.steps, warmup=s.warmup,
                search_batches=s.search_batches, repeats=s.repeats, device=device))
    target = next(({"batch_size": r["batch_size"], "search_vs_floor": r["search_vs_floor"],
                    "search_vs_floor_grad": r["search_vs_floor_grad"], "ratio": r["ratio"],
                    "least_vs_floor_grad": r["least_vs_floor_grad"],
                    "met": r["search_vs_floor"] <= TARGET_FLOOR and r["ratio"] <= TARGET_RATIO}
                   for r in overhead if r["batch_size"] == TARGET_BATCH), None)

    flops = _flops(rows, device, name)
    ledger_path = parity_ledger(s.ledger)
    if device.type == "cpu" and s.channels_last:
        notes.append("The fast pipeline uses channels_last on CPU too (oneDNN); mbt.train "
                     "applies channels_last on CUDA, and on a CPU only under amp_bf16.")
    if device.type == "cpu" and not s.smallest and max(s.batch_sizes) < 800:
        notes.append("Batch 800 is left out on CPU (a single step takes about a minute here); "
                     "add it with --batch-sizes 12,50,200,800.")
    if fast.bf16 or fast.compile:
        notes.append("The MBT search runs on the eager fp32 model, as mbt.train calls it, "
                     "while the training steps use bf16 autocast / torch.compile.")
    notes.append("Trials per mini-batch come from searches at initialisation on this data "
                 "set; on real CIFAR and in later epochs they differ, and so does the search's "
                 "cost (not its floor).")
    return {
        "schema": 1,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": {"type": device.type, "name": name, "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(),
                   # 1-minute load average: other jobs on the machine make CPU timings noisy
                   "load_avg_start": load_start, "load_avg_end": os.getloadavg()[0]},
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "git": git_state(),
        "model": measure.MODEL,
        "settings": {k: list(v) if isinstance(v, tuple) else v
                     for k, v in asdict(s).items() if k != "notes"},
        "data": data,
        "throughput": {"batch_size": s.batch_size, "rows": rows, "ratio": ratio},
        "mbt_overhead": {"search_batches": measure.SEARCH_BATCHES, "rows": overhead,
                         "target": target},
        "flops": flops,
        "parity": report.parity(ledger_path),
        "notes": notes,
    }


def _flops(rows: list[dict], device: torch.device, name: str) -> dict:
    per_image = measure.flops_per_image()
    tf32 = device.type == "cuda" and report.conv_tf32()
    out = []
    for r in rows:
        precision = "bf16" if r["bf16"] else ("tf32" if tf32 else "fp32")
        achieved = per_image * r["images_per_s"] / 1e12
        peak = report.peak_tflops(device, name, precision)
        out.append({"name": r["name"], "augment": r["augment"], "precision": precision,
                    "achieved_tflops": achieved, "peak_tflops": peak,
                    "mfu": None if peak is None else achieved / peak})
    if device.type != "cuda":
        note = "No peak table for CPUs: MFU omitted."
    elif report.peak_key(name) is None:
        note = f"Unknown device {name!r} (no peak in the table): MFU omitted."
    else:
        note = (f"Peaks for {report.peak_key(name)} (dense, from NVIDIA data sheets); fp32 rows "
                f"use the {'TF32 rate, as cuDNN may run fp32 convolutions as TF32' if tf32 else 'fp32 rate (TF32 off)'}. "  # noqa: E501
                "Achieved = FLOPs per image × training images/s (data loading included).")
    return {"per_image": per_image, "conv_tf32": tf32, "rows": out, "note": note}


def write_results(res: dict, out: str | Path) -> tuple[Path, Path]:
    """``<out>/bench.json`` and ``<out>/bench.md``; returns their paths."""

    def clean(x):  # JSON has no NaN/inf
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "bench.json", out / "bench.md"
    js.write_text(json.dumps(clean(res), indent=2, allow_nan=False) + "\n")
    md.write_text(report.render(res))
    return js, md

