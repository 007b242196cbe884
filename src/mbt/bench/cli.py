"""Command line of ``python -m mbt.bench``; see :mod:`mbt.bench` for what it measures."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from . import Settings, refresh_parity, run_bench, write_results


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_args(argv: list[str]) -> Settings:
    p = argparse.ArgumentParser(
        prog="python -m mbt.bench",
        description="Training throughput (reference vs fast pipeline) and MBT-NAG search "
                    "overhead of ResNet18; writes <out>/bench.json and <out>/bench.md. "
                    "Unset options take the device's default (CUDA: full run; CPU: reduced).")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    p.add_argument("--images", type=int, help="timed images per throughput row "
                   "(CUDA 10000, CPU 400)")
    p.add_argument("--batch-size", type=int, help="throughput batch size (200)")
    p.add_argument("--batch-sizes", type=_sizes, help="MBT overhead batch sizes "
                   "(CUDA 12,50,200,800; CPU 12,50,200)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast in the fast pipeline (CUDA: on; no effect on CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model in the fast pipeline (off)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last in the fast pipeline (on)")
    p.add_argument("--augments", type=_names, help="throughput augmentations "
                   "(CUDA paper,standard; CPU paper)")
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the device pipeline in fp32 NCHW (CUDA: on, CPU: off)")
    p.add_argument("--warmup", type=int, help="untimed steps before each window (CUDA 10, CPU 1)")
    p.add_argument("--steps", type=int, help="timed NAG steps per MBT batch size "
                   "(CUDA 50, CPU 2)")
    p.add_argument("--search-batches", type=int, help="mini-batches per timed MBT search, "
                   "scaled to 20 if fewer (CUDA 20, CPU 2)")
    p.add_argument("--repeats", type=int, help="interleaved repeats, medians reported "
                   "(CUDA 3, CPU 1)")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (2)")
    p.add_argument("--data-root", help="real CIFAR-10 root (default: a generated set in a "
                   "temp dir)")
    p.add_argument("--ledger", help="run ledger for the parity table ($MBT_RUNS/ledger.jsonl)")
    p.add_argument("--out", default="results", help="output folder (results)")
    p.add_argument("--parity-only", action="store_true",
                   help="only re-read the accuracy-parity table from --ledger into <out>/"
                        "bench.{json,md}; the timings already there stay as measured")
    p.add_argument("--smallest", action="store_true",
                   help="tiny setting for the tests: batch 12, 2 batches, 1-batch search")
    a = p.parse_args(argv)
    return Settings(
        device=a.device, images=a.images, batch_size=a.batch_size, batch_sizes=a.batch_sizes,
        bf16=a.bf16, compile=a.compile, channels_last=a.channels_last, augments=a.augments,
        ablation=a.ablation, warmup=a.warmup, steps=a.steps, search_batches=a.search_batches,
        repeats=a.repeats, workers=a.workers, data_root=a.data_root, ledger=a.ledger,
        out=a.out, smallest=a.smallest, parity_only=a.parity_only,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    settings = parse_args(argv)
    if settings.parity_only:
        try:
            js, md = refresh_parity(settings.out, settings.ledger)
        except ValueError as err:
            print(f"mbt.bench: {err}", file=sys.stderr)
            return 2
        print(f"wrote {md} and {js} (parity table only)")
        return 0
    try:
        res = run_bench(settings, command=shlex.join(["python", "-m", "mbt.bench", *argv]))
    except ValueError as err:
        print(f"mbt.bench: {err}", file=sys.stderr)
        return 2
    js, md = write_results(res, settings.out)
    tp = res["throughput"]["ratio"]
    print(f"wrote {md} and {js}")
    print("throughput fast/reference: " + ", ".join(f"{k} {v:.2f}x" for k, v in tp.items()))
    for r in res["mbt_overhead"]["rows"]:
        print(f"batch {r['batch_size']}: MBT-NAG/NAG epoch {r['ratio']:.3f}x, search "
              f"{r['search_vs_floor']:.2f}x 20 steps, {r['search_vs_floor_grad']:.2f}x 20 "
              "gradient passes")
    return 0
