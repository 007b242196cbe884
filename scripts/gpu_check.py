"""``make gpu-check``: on one GPU, everything this project could only prepare without one.

About 8 minutes on one H100/H200; ``--dry`` runs the same code paths on the CPU with tiny
sizes for the tests (seconds): model ``tiny`` everywhere (the bench's ResNet18 too), 1-2
steps, generated data, and torch.compile with dynamo's ``eager`` backend (traced, but no
Inductor code generation, which alone takes minutes on 2 CPU cores).
Writes ``<out>/gpu_check.json`` (every number) and ``<out>/gpu_check.md``:

1. environment: torch, CUDA, cuDNN, the device, bf16 support, TF32 flags, the commit;
2. training: ResNet18 + MBT-NAG for 2 epochs on the real partial CIFAR-10 copy
   (``../shared/data/cifar-head``, ``data.allow_partial=true``) with the device pipeline,
   channels_last and bf16 autocast, ``trainer.compile`` off and on: :func:`mbt.train.train`
   in this process on the composed config (the command each run equals is in the report),
   with a throwaway ``paths.runs`` / ``paths.ledger``; seconds per epoch (the first holds
   cuDNN's algorithm search and torch.compile's compilations), search seconds, test
   accuracy;
3. the MBT search on CPU and GPU: one MBT-NAG search (conf/optim/mbt_nag.yaml, 20
   mini-batches) from the same initial weights on the same batches on both devices; the
   accepted eta per mini-batch and the relative gaps of eta, f(w) and ||g||^2;
4. the bench's GPU half (``python -m mbt.bench``'s CUDA defaults, :mod:`mbt.bench`):
   throughput of the reference and fast pipelines, MBT-NAG / NAG epoch ratio, MFU.

A section that fails is recorded with its error and the others still run; the exit status
is then 1. Usage::

    python scripts/gpu_check.py [--out results] [--data-root ../shared/data/cifar-head]
                                [--skip train,search,bench] [--dry]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from mbt.bench import Settings, measure, run_bench
from mbt.bench import report as bench_report
from mbt.config_paths import CONF_DIR, REPO_ROOT
from mbt.data import build_loaders
from mbt.data.synthetic import write_cifar
from mbt.loop import cpu_bf16_supported
from mbt.models import build_model
from mbt.optim.mbt_finder import MBTSearchConfig, find_lr
from mbt.runinfo import device_name, git_state

HEAD = REPO_ROOT.parent / "shared" / "data" / "cifar-head"
SECTIONS = ("train", "search", "bench")
EPOCHS = 2
SEARCH_BATCHES = 20  # conf/optim/mbt_nag.yaml's num_batches
BATCH = 200  # the paper's batch size (conf/trainer/default.yaml)
# mbt.train's first search draws its batches from this shuffle (train._SEARCH_EPOCH_OFFSET).
SEARCH_EPOCH = 1_000_003


def environment(device: torch.device) -> dict:
    env = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device), "device_name": device_name(device),
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_bf16_supported(), "git": git_state(),
    }  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1),
                   bf16=torch.cuda.is_bf16_supported(), conv_tf32=bench_report.conv_tf32(),
                   matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        env["bf16"] = env["cpu_bf16"]
    return env


def _train_overrides(root: Path, device: torch.device, tmp: Path, *, compile_: bool,
                     dry: bool) -> list[str]:
    bf16 = device.type == "cuda" or cpu_bf16_supported()  # validate refuses it otherwise
    over = [
        f"data.root={root}", "data.allow_partial=true", "data.pipeline=device",
        "optim=mbt_nag", "trainer.channels_last=true", f"trainer.amp_bf16={str(bf16).lower()}",
        f"trainer.compile={str(compile_).lower()}", f"trainer.epochs={EPOCHS}",
        f"trainer.device={device}", "trainer.progress=none", "logger=none",
        f"paths.runs={tmp / 'runs'}", f"paths.ledger={tmp / 'ledger.jsonl'}",
    ]  # fmt: skip
    if dry:
        over += ["model=tiny", "trainer.batch_size=16", "trainer.max_steps_per_epoch=1",
                 "optim.builder.num_batches=2", "data.test_batch_size=32"]
    else:
        over += ["model=resnet18", f"trainer.batch_size={BATCH}"]
    return over


@contextlib.contextmanager
def _eager_compile():
    """``--dry``: torch.compile with dynamo's eager backend (mbt.train's call, traced)."""
    real = torch.compile
    torch.compile = functools.partial(real, backend="eager")
    try:
        yield
    finally:
        torch.compile = real


def training(root: Path, device: torch.device, tmp: Path, *, dry: bool) -> dict:
    """ResNet18 + MBT-NAG through :func:`mbt.train.train`, compile off then on."""
    from hydra import compose, initialize_config_dir

    from mbt.train import train

    runs = []
    for compile_ in (False, True):
        over = _train_overrides(root, device, tmp, compile_=compile_, dry=dry)
        row = {"compile": compile_, "command": "python -m mbt.train " + shlex.join(over)}
        print(f"gpu-check: training, compile {'on' if compile_ else 'off'}", file=sys.stderr,
              flush=True)
        t0 = time.perf_counter()
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(config_name="train", overrides=over)
            with _eager_compile() if dry and compile_ else contextlib.nullcontext():
                rec = train(cfg)
        except Exception as err:  # recorded; the other run still goes
            traceback.print_exc()
            row["error"] = f"{type(err).__name__}: {err}"
            runs.append(row)
            continue
        row["process_s"] = round(time.perf_counter() - t0, 2)
        hist = rec["history"]
        row.update(status=rec["status"], run_key=rec["run_key"], epochs=rec["epochs_completed"],
                   num_train=rec["data"]["num_train"], steps=hist["steps"],
                   epoch_s=hist["epoch_time"], search_s=hist["search_time"],
                   test_acc=hist["test_acc"], train_loss=hist["train_loss"], lr=hist["lr"],
                   best_test_acc=rec["best_test_acc"], wall_time=rec["wall_time"],
                   amp_bf16=rec["config"]["trainer"]["amp_bf16"])
        runs.append(row)
    return {"runs": runs, "epochs": EPOCHS}


def _rel(a: float, b: float) -> float:
    """|a - b| / |b| (0 when equal, inf when only b is 0)."""
    if a == b:
        return 0.0
    return abs(a - b) / abs(b) if b != 0 else math.inf


def search_parity(root: Path, device: torch.device, *, dry: bool) -> dict:
    """One MBT-NAG search on the CPU and on ``device`` (the CPU again when dry): same initial
    weights, same mini-batches (the device pipeline's, drawn on the CPU), same settings."""
    optim = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "optim" / "mbt_nag.yaml"))
    fields = {f.name for f in dataclasses.fields(MBTSearchConfig)}
    search = {k: v for k, v in optim["builder"].items() if k in fields}
    batch = 16 if dry else BATCH
    search["num_batches"] = 2 if dry else SEARCH_BATCHES
    loader, _, info = build_loaders("cifar10", root, batch_size=batch, augment="paper",
                                    pipeline="device", device="cpu", allow_partial=True,
                                    test_batch_size=None)
    loader.set_epoch(SEARCH_EPOCH)
    batches = [b for b, _ in zip(loader, range(search["num_batches"]), strict=False)]
    model_name = "tiny" if dry else "resnet18"
    torch.manual_seed(0)
    model = build_model(model_name, 10)
    reports = {}
    for side, where in (("cpu", torch.device("cpu")), ("device", device)):
        m = copy.deepcopy(model).to(where)
        on = [(x.to(where), y.to(where)) for x, y in batches]
        if where.type == "cuda":  # as mbt.train runs it there: channels_last model and data
            m = m.to(memory_format=torch.channels_last)
            on = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in on]
        rep = find_lr(m, nn.CrossEntropyLoss(), on, lr=float(optim["lr"]),
                      dataset_size=info["num_train"], batch_size=batch, **search)
        reports[side] = {"device": str(where), "per_batch": rep.per_batch, "f0": rep.f0,
                         "grad_sq_norms": rep.grad_sq_norms, "mean_lr": rep.mean_lr,
                         "lr": rep.lr, "trials": [len(t) for t in rep.trials],
                         "seconds": rep.seconds}
    c, d = reports["cpu"], reports["device"]
    eta_rel = [_rel(b, a) for a, b in zip(c["per_batch"], d["per_batch"], strict=True)]
    same = [r == 0.0 for r in eta_rel]
    return {
        "model": model_name, "batch_size": batch, "settings": search, "lr0": optim["lr"],
        "num_train": info["num_train"], "cpu": c, "device": d,
        "eta_rel": eta_rel, "eta_same": sum(same), "first_differing": (
            same.index(False) if not all(same) else None),
        "f0_rel_max": max(_rel(b, a) for a, b in zip(c["f0"], d["f0"], strict=True)),
        "grad_sq_rel_max": max(_rel(b, a) for a, b in
                               zip(c["grad_sq_norms"], d["grad_sq_norms"], strict=True)),
        "lr_rel": _rel(d["lr"], c["lr"]),
    }  # fmt: skip


def bench(device: torch.device, tmp: Path, *, dry: bool) -> dict:
    """``python -m mbt.bench`` with the device's defaults (dry: ``--smallest``, model tiny,
    no DataLoader workers)."""
    if not dry:
        return run_bench(Settings(device=str(device)),
                         command="python scripts/gpu_check.py (section 4: mbt.bench)")
    model, measure.MODEL = measure.MODEL, "tiny"
    try:
        return run_bench(Settings(device=str(device), smallest=True, workers=0,
                                  ledger=str(tmp / "ledger.jsonl")),
                         command="python scripts/gpu_check.py --dry (section 4: mbt.bench)")
    finally:
        measure.MODEL = model


# ---------------------------------------------------------------- report


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _md_env(env: dict) -> list[str]:
    git = env["git"]
    rows = [("device", env["device_name"]), ("torch", env["torch"]), ("CUDA", env["cuda"]),
            ("cuDNN", env["cudnn"]), ("bf16", env["bf16"]),
            ("compute capability", env.get("capability")), ("memory (GiB)", env.get("memory_gib")),
            ("TF32 convolutions / matmuls", f"{env.get('conv_tf32')} / {env.get('matmul_tf32')}"
             if "conv_tf32" in env else None),
            ("CPU bf16 (oneDNN)", env["cpu_bf16"]), ("CPUs", env["cpu_count"]),
            ("python", env["python"]),
            ("commit", f"{str(git['commit'])[:12]}{' (dirty)' if git['dirty'] else ''}")]
    return ["| | |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in rows if v is not None)]


def _md_train(sec: dict) -> list[str]:
    out = ["| compile | status | epoch s (per epoch) | search s | test acc % | best % "
           "| run s |", "|---|---|---|---|---|---|---|"]
    for r in sec["runs"]:
        on = "on" if r["compile"] else "off"
        if "error" in r:
            out.append(f"| {on} | **error**: {r['error'][:300]} | | | | | |")
            continue
        out.append(" | ".join([
            f"| {on}", r["status"], ", ".join(f"{v:.1f}" for v in r["epoch_s"]),
            ", ".join(f"{v:.1f}" for v in r["search_s"]),
            ", ".join(_fmt(v, 4) for v in r["test_acc"]), _fmt(r["best_test_acc"], 4),
            f"{r['process_s']:.0f} |"]))
    cmds = [f"- compile {'on' if r['compile'] else 'off'}: `{r['command']}`" for r in sec["runs"]]
    return [*out, "", "Run in this process; each equals the command (a throwaway runs "
            "directory and ledger):", "", *cmds]


def _md_search(sec: dict) -> list[str]:
    c, d = sec["cpu"], sec["device"]
    head = [f"{sec['model']}, batch {sec['batch_size']}, {len(c['per_batch'])} mini-batches, "
            f"start eta {sec['lr0']}, alpha {sec['settings'].get('alpha')}, beta "
            f"{sec['settings'].get('beta')}; {c['device']} against {d['device']}: the same eta "
            f"on **{sec['eta_same']} of {len(c['per_batch'])}** mini-batches (first difference: "
            f"{_fmt(sec['first_differing'])}); largest relative gap of f(w) "
            f"{sec['f0_rel_max']:.2e}, of ||g||^2 {sec['grad_sq_rel_max']:.2e}; rescaled lr "
            f"{c['lr']:.6g} vs {d['lr']:.6g} (relative gap {sec['lr_rel']:.2e}); search "
            f"{c['seconds']:.1f} s vs {d['seconds']:.1f} s.", "",
            "| mini-batch | eta CPU | eta device | relative gap | trials CPU / device |",
            "|---|---|---|---|---|"]
    rows = [f"| {i + 1} | {a:.6g} | {b:.6g} | {r:.2e} | {tc} / {td} |"
            for i, (a, b, r, tc, td) in enumerate(zip(c["per_batch"], d["per_batch"],
                                                      sec["eta_rel"], c["trials"], d["trials"],
                                                      strict=True))]
    return head + rows


def render(res: dict) -> str:
    env = res["environment"]
    dry = " (dry run on the CPU: code paths only, not results)" if res["dry"] else ""
    lines = [f"# GPU check{dry}", "",
             f"{env['device_name']} · torch {env['torch']} · CUDA {env['cuda']} · commit "
             f"`{str(env['git']['commit'])[:12]}` · {res['timestamp']} · `{res['command']}`", "",
             "Seconds per section: "
             + ", ".join(f"{k} {v:.0f}" for k, v in res["seconds"].items()),
             "", "## 1. Environment", "", *_md_env(env), ""]
    sections = [("train", "2. Training: ResNet18 + MBT-NAG, device pipeline, channels_last, "
                          "bf16, compile off / on", _md_train),
                ("search", "3. MBT search: CPU against the device", _md_search)]
    for key, title, fn in sections:
        lines += [f"## {title}", ""]
        sec = res.get(key)
        if sec is None:
            lines += ["Skipped.", ""]
        elif "error" in sec:
            lines += [f"**Failed**: {sec['error']}", ""]
        else:
            lines += [*fn(sec), ""]
    lines += ["## 4. Bench (`mbt.bench`)", ""]
    b = res.get("bench")
    if b is None:
        lines += ["Skipped.", ""]
    elif "error" in b:
        lines += [f"**Failed**: {b['error']}", ""]
    else:  # the bench's own report, its headings two levels down
        lines += [("##" + ln if ln.startswith("#") else ln)
                  for ln in bench_report.render(b).splitlines()]
    return "\n".join(lines).rstrip() + "\n"


def _clean(x):  # JSON has no NaN/inf
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


# ---------------------------------------------------------------- main


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = set(names) - set(SECTIONS)
    if bad:
        raise argparse.ArgumentTypeError(f"unknown section(s) {sorted(bad)}; choose from "
                                         f"{', '.join(SECTIONS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", help="output folder (results; with --dry: a new temp folder)")
    p.add_argument("--data-root", default=str(HEAD),
                   help="CIFAR-10 root, partial copies allowed (../shared/data/cifar-head)")
    p.add_argument("--skip", type=_sections, default=(), help="sections to leave out: "
                   + ",".join(SECTIONS))
    p.add_argument("--dry", action="store_true", help="the same code paths on the CPU, tiny "
                   "sizes, generated data: checks the script, measures nothing")
    a = p.parse_args(argv)
    if not a.dry and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; this check needs one GPU (--dry runs its code "
              "paths on the CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu") if a.dry else torch.device("cuda", torch.cuda.current_device())
    out = Path(a.out or (tempfile.mkdtemp(prefix="mbt-gpu-check-") if a.dry else "results"))
    res = {"schema": 1, "dry": a.dry,
           "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": shlex.join(["python", "scripts/gpu_check.py", *argv]),
           "environment": environment(device), "seconds": {}}
    failed = False
    with tempfile.TemporaryDirectory(prefix="mbt-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        root = Path(a.data_root).resolve()
        if a.dry:  # a generated CIFAR-layout set: the check must not need the real copy
            root = tmp / "data"
            write_cifar(root, "cifar10", n_train=64, n_test=32, seed=0)
        elif not (root / "cifar-10-batches-py").is_dir():
            print(f"gpu-check: no CIFAR-10 under {root} (--data-root)", file=sys.stderr)
            return 2
        # Cheapest first: a slow torch.compile (last) cannot starve the other sections.
        steps = [("search", lambda: search_parity(root, device, dry=a.dry)),
                 ("bench", lambda: bench(device, tmp, dry=a.dry)),
                 ("train", lambda: training(root, device, tmp, dry=a.dry))]
        for name, step in steps:
            if name in a.skip:
                continue
            print(f"gpu-check: {name}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                res[name] = step()
            except Exception as err:  # recorded; the other sections still run
                traceback.print_exc()
                res[name] = {"error": f"{type(err).__name__}: {err}"}
            res["seconds"][name] = round(time.perf_counter() - t0, 1)
            failed |= "error" in res[name] or any(
                "error" in r for r in res[name].get("runs", []))
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "gpu_check.json", out / "gpu_check.md"
    js.write_text(json.dumps(_clean(res), indent=2, allow_nan=False) + "\n")
    md.write_text(render(res))
    print(f"wrote {md} and {js}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
