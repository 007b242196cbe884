"""Device peaks, the accuracy-parity table from the run ledger, and results/bench.md."""

from __future__ import annotations

import copy
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from mbt import ledger

__all__ = ["PEAK_TFLOPS", "conv_tf32", "parity", "peak_tflops", "render"]

# Dense peak TFLOP/s from NVIDIA's data sheets (their tensor-core figures "with sparsity"
# halved). "tf32" is what fp32 convolutions run at when cuDNN may use TF32 (torch's
# default for convolutions); "fp32" is the CUDA-core rate with TF32 off.
PEAK_TFLOPS = {
    "H100 SXM": {"bf16": 989.0, "tf32": 494.5, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0},
    "H200": {"bf16": 989.0, "tf32": 494.5, "fp32": 67.0},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
_SPEED_KEYS = ("amp_bf16", "channels_last", "compile")  # trainer keys that should not
# change accuracy; the parity table compares records that differ only in these


def peak_key(device_name: str) -> str | None:
    """The PEAK_TFLOPS row of a ``torch.cuda.get_device_name`` string, None if unknown."""
    name = device_name.upper()
    if "H200" in name:  # "NVIDIA H200", "NVIDIA GH200 ..."
        return "H200"
    if "H100" in name:
        if "PCIE" in name:
            return "H100 PCIe"
        if "NVL" in name:  # other clocks and memory; not in the table
            return None
        return "H100 SXM"  # "NVIDIA H100 80GB HBM3"
    if "A100" in name:
        return "A100"
    return None


def conv_tf32() -> bool:
    """Whether fp32 convolutions may run as TF32 on CUDA (new and legacy torch flags)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    precision = getattr(conv, "fp32_precision", None)
    if precision in ("tf32", "ieee"):
        return precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


def peak_tflops(device: torch.device, device_name: str, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    key = peak_key(device_name)
    return None if key is None else PEAK_TFLOPS[key][precision]


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def parity(ledger_path: Path) -> dict:
    """Best test accuracy of bf16 runs against fp32 runs of the same cell, from the ledger.

    A cell is a run's device type (cpu, cuda) and config without the speed keys
    (``trainer.amp_bf16``, ``channels_last``, ``compile``) and the seed: a CPU pair never
    stands in for a CUDA one (bf16 kernels differ). Rows only for cells with both bf16 and
    fp32 records.
    """
    cells: dict[str, dict[bool, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in ledger.read(ledger_path):
        cfg = rec.get("config")
        if (rec.get("kind") != "train" or rec.get("status") not in ledger.FINAL_STATUSES
                or not isinstance(cfg, dict) or rec.get("best_test_acc") is None):
            continue
        base = copy.deepcopy(cfg)
        trainer = base.get("trainer", {})
        bf16 = bool(trainer.get("amp_bf16"))
        for key in _SPEED_KEYS:
            trainer.pop(key, None)
        base["seed"] = 0
        try:
            data = (rec.get("data") or {}).get("fingerprint") or {}
            dev = str(rec.get("device", "")).split(":")[0] or "?"
            cell = f"{dev}: " + ledger.run_key(base, data).replace("-s0-", "-")
        except (KeyError, TypeError):
            continue
        cells[cell][bf16].append(rec)
    rows = []
    for cell, by in sorted(cells.items()):
        if not (by[True] and by[False]):
            continue
        acc = {b: [float(r["best_test_acc"]) for r in by[b]] for b in (False, True)}
        rows.append({
            "cell": cell,
            "fp32_n": len(acc[False]), "fp32_best_acc": acc[False],
            "bf16_n": len(acc[True]), "bf16_best_acc": acc[True],
            "delta": statistics.mean(acc[True]) - statistics.mean(acc[False]),
            "bf16_fast_keys": sorted({f"{k}={r['config']['trainer'].get(k)}"
                                      for r in by[True] for k in _SPEED_KEYS}),
        })  # fmt: skip
    return {"ledger": str(ledger_path), "status": "measured" if rows else "not yet measured",
            "rows": rows}


def _f(x: float | None, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def _intro(res: dict) -> list[str]:
    """Title, device, command, data, the CPU caveat and what was measured."""
    s, dev = res["settings"], res["device"]
    git = res["git"]
    out = [
        "# Benchmark: training throughput and MBT search overhead",
        "",
        f"Device: **{dev['name']}** · torch {res['torch_version']} · commit "
        f"`{git['commit'][:12]}`{' (dirty tree)' if git['dirty'] else ''} · "
        f"{res['timestamp']}",
        "",
        f"Command: `{res['command']}`",
        "",
        f"Model {res['model']} (CIFAR-10 shapes) on a {res['data']['kind']} CIFAR-layout set of "
        f"{res['data']['num_train']} images (speed does not depend on the content; the MBT "
        "search's number of trials does, a little).",
    ]
    if dev["type"] == "cpu":
        cut = (f", MBT searches cut to {s['search_batches']} of 20 mini-batches (extrapolated "
               "to 20: the first mini-batch, which starts from the fixed start lr and needs "
               "more trials, once, the mean of the later ones 19 times)"
               if s["search_batches"] < 20 else "")
        out += ["", f"**Reduced CPU run**: {s['images']} timed images per throughput row, "
                f"{s['steps']} timed steps per batch size{cut}, {s['repeats']} repeat(s), "
                f"augmentation {', '.join(s['augments'])} only. {dev['cpu_count']} cores shared "
                f"with other jobs (1-minute load average {dev['load_avg_start']:.1f} at the "
                f"start, {dev['load_avg_end']:.1f} at the end), so single timings can be off "
                "by tens of percent. The numbers show the method and the rough size of each "
                "cost; the CUDA defaults (10 000 timed images, full 20-mini-batch searches, "
                "paper and standard augmentation, 3 repeats) give the numbers to quote."]
    out += ["", "Measured: seconds per training step over the timed window (warm-up steps "
            "excluded, device synchronised around it), seconds per MBT search (\"(from n)\": "
            "n of its 20 mini-batches measured, the rest extrapolated), and inside it per "
            "gradient pass and per trial. Extrapolated: everything per 50 000-image epoch, as "
            "`steps_per_epoch × step time` (+ the search for MBT). Medians over the repeats."]
    return out


def _throughput(tp: dict) -> list[str]:
    """Section 1: images/s of each input pipeline."""
    out: list[str] = []
    out += ["", f"## 1. Training throughput (batch {tp['batch_size']}, NAG steps)", "",
            "| pipeline | augment | data | layout | precision | compile | timed images "
            "| images/s | epoch of 50k (s, extrapolated) | vs reference |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in tp["rows"]:
        out.append(
            f"| {r['name']} | {r['augment']} | {r['data']} | "
            f"{'channels_last' if r['channels_last'] else 'NCHW'} | "
            f"{'bf16 autocast' if r['bf16'] else 'fp32'} | {'yes' if r['compile'] else 'no'} | "
            f"{r['timed_images']} | {r['images_per_s']:.1f} | {r['epoch_50k_s']:.1f} | "
            f"{r['vs_reference']:.2f}× |")
    out += ["", "Ratio fast / reference (images/s): " + ", ".join(
        f"{aug} augmentation **{v:.2f}×**" for aug, v in tp["ratio"].items()) + "."]
    return out


def _mbt_overhead(mo: dict, dev: dict) -> list[str]:
    """Section 2: MBT-NAG against NAG, the split of the search, the target."""
    out: list[str] = []
    out += ["", "## 2. MBT-NAG against NAG (same pipeline: the fast one)", "",
            "MBT-NAG's epoch = one search (20 mini-batches: per mini-batch one gradient pass "
            "and 2 or more no-grad trial forwards of the two-way Armijo search) + the same "
            "Nesterov SGD steps as NAG. **Floor** (the issue's definition): 20 gradient "
            "evaluations, i.e. 20 / steps-per-epoch of an epoch (*floor share*); shown against "
            "20 training steps (the target's yardstick) and against 20 of the search's own "
            "gradient passes (timed inside the search, so immune to load drifting between "
            "the two measurements). The search cannot make fewer than 2 trials per "
            "mini-batch, so even a perfect implementation costs `20 × (gradient pass + 2 "
            "trials)` (*least possible*): the floor is not reachable; that bound is.",
            "",
            "| batch | steps/epoch (50k) | step (s) | gradient pass (s) | trial (s) | trials / "
            "mini-batch | search (s, 20 mini-batches) | search / 20 steps | search / 20 "
            "gradient passes | least possible / 20 gradient passes | floor share | NAG epoch "
            "(s, extrap.) | MBT-NAG epoch (s, extrap.) | MBT/NAG |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in mo["rows"]:
        n = r["search_batches_measured"]
        scaled = f" (from {n})" if r["search_scaled"] else ""
        out.append(
            f"| {r['batch_size']} | {r['steps_per_epoch_50k']} | {r['step_s']:.4g} | "
            f"{r['grad_pass_s']:.4g} | {r['trial_s']:.4g} | {r['trials_per_batch']:.2f} | "
            f"{r['search_s']:.4g}{scaled} | {r['search_vs_floor']:.2f}× | "
            f"{r['search_vs_floor_grad']:.2f}× | {r['least_vs_floor_grad']:.2f}× | "
            f"{100 * r['floor_share']:.1f}% | {r['nag_epoch_50k_s']:.1f} | "
            f"{r['mbt_epoch_50k_s']:.1f} | {r['ratio']:.3f}× |")
    out += ["", "Split of the search (s, per 20 mini-batches), timed inside the search from "
            "the start of each forward to the next event (the finder syncs the host once per "
            "gradient pass and once per trial): gradient passes (forward, `autograd.grad`, "
            "||g||², sync); trials (weight copies, no-grad forward, buffer restore, sync; the "
            "walk step); other (the search's own data batches, set-up and final restore). "
            "Step, gradient pass and trial above are medians of single ones.", "",
            "| batch | search | gradient passes | trials | other | training part of the "
            "MBT-NAG epoch (s, extrap.) |", "|---|---|---|---|---|---|"]
    for r in mo["rows"]:
        sp = r["split_s"]
        out.append(f"| {r['batch_size']} | {r['search_s']:.4g} | {sp['grad_passes']:.4g} | "
                   f"{sp['trials']:.4g} | {sp['other']:.4g} | {r['mbt_train_50k_s']:.1f} |")
    tgt = mo.get("target")
    if tgt is not None:
        out += ["", f"Target at batch {tgt['batch_size']}: search ≤ 1.3 × 20 training steps "
                f"(MBT-NAG epoch ≤ 1.10 × NAG). Measured: search = {tgt['search_vs_floor']:.2f} "
                f"× 20 steps ({tgt['search_vs_floor_grad']:.2f} × 20 gradient passes), "
                f"MBT-NAG / NAG = {tgt['ratio']:.3f} → **{'met' if tgt['met'] else 'not met'}**."
                f" Least possible for this search here: {tgt['least_vs_floor_grad']:.2f} × 20 "
                "gradient passes."]
        if dev["type"] == "cpu":
            out += ["", "On this shared CPU the steps and the search are timed minutes apart "
                    "under changing load; the ratios to 20 gradient passes, timed inside the "
                    "search, are the steadier reading."]
    return out


def _flops(fl: dict) -> list[str]:
    """Section 3: FLOPs per image and MFU."""
    out: list[str] = []
    out += ["", "## 3. FLOPs and MFU", "",
            f"Model FLOPs per image (forward + backward, FlopCounterMode; convolutions and "
            f"matrix products only): **{fl['per_image'] / 1e9:.3f} GFLOP**.", "",
            "| pipeline | augment | precision of the peak | achieved TFLOP/s | peak TFLOP/s "
            "| MFU |", "|---|---|---|---|---|---|"]
    for r in fl["rows"]:
        mfu = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        out.append(f"| {r['name']} | {r['augment']} | {r['precision']} | "
                   f"{r['achieved_tflops']:.3g} | {_f(r['peak_tflops'])} | {mfu} |")
    out += ["", fl["note"]]
    return out


def _parity(par: dict) -> list[str]:
    """Section 4: bf16 against fp32 from the ledger."""
    out: list[str] = []
    out += ["", "## 4. Accuracy parity (bf16 / channels_last / compile against fp32)", ""]
    if par["rows"]:
        out += [f"From `{par['ledger']}` (best test accuracy, mean ± std over seeds; a "
                "cell is device type + run key without the seed):", "",
                "| cell | fp32 (n) | bf16 (n) | Δ (bf16 − fp32) | bf16 runs' speed keys |",
                "|---|---|---|---|---|"]
        for r in par["rows"]:
            out.append(f"| {r['cell']} | {_mean_std(r['fp32_best_acc'])} ({r['fp32_n']}) | "
                       f"{_mean_std(r['bf16_best_acc'])} ({r['bf16_n']}) | "
                       f"{r['delta']:+.2f} | {', '.join(r['bf16_fast_keys'])} |")
    else:
        out += [f"Not yet measured: `{par['ledger']}` holds no pair of runs of one cell "
                "with `trainer.amp_bf16` true and false. Until it does, training keeps fp32 "
                "(`amp_bf16: false` in conf/trainer/default.yaml)."]
    return out


def render(res: dict) -> str:
    """results/bench.md from the bench.json dict, one section per helper."""
    out = [*_intro(res), *_throughput(res["throughput"]),
           *_mbt_overhead(res["mbt_overhead"], res["device"]), *_flops(res["flops"]),
           *_parity(res["parity"])]
    if res.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(out) + "\n"
