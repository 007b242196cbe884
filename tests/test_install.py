"""A non-editable install works as a user gets it: the wheel ships the Hydra configs and
the paper's numbers, ``import mbt.optim`` needs torch alone, and the console scripts either
run (train extra) or say in one line which extra to install (core only).

The wheel tests build the wheel from a copy of the tree and install it into a fresh venv.
Installing torch there would cost minutes and gigabytes, so the venv sees this
environment's distributions through a directory of symlinks holding only the requirement
closure it is meant to have: the wheel's core requirements, then (PYTHONPATH) the train
extra's. A package outside the closure is not importable there, as after `pip install mbt`."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from clirun import one_error_line
from mbt import cli, config_paths

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from (setup.py's DATA and MANIFEST.in name the data directories).
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "CITATION.cff",
           "CHANGELOG.md", "src", "conf", "results/paper"]
SCRIPTS = ["mbt-train", "mbt-find-lr", "mbt-toy", "mbt-report", "mbt-bench"]
HEAVY = ["hydra", "omegaconf", "wandb", "pandas", "matplotlib", "torchvision"]
TIMEOUT = 300  # seconds a subprocess may take: each imports torch on a busy 2-core machine


# -- the console scripts' missing-extra line and the data paths (in-process) -----------
def test_a_command_whose_extra_is_missing_ends_in_one_error_line(tmp_path, monkeypatch,
                                                                 capsys):
    (tmp_path / "needs_pandas.py").write_text("import pandas\nmain = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ModuleNotFoundError
    with pytest.raises(SystemExit) as exit_:
        cli._command("mbt-report", "needs_pandas")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and err.startswith("error: mbt-report ")
    assert "'pandas' is not installed" in err and cli.EXTRA_HINT in err  # -e form here


def test_a_missing_mbt_module_is_a_bug_not_a_missing_extra():
    with pytest.raises(ModuleNotFoundError):
        cli._command("mbt-train", "mbt.no_such_module")


def test_every_console_script_runs_its_command(monkeypatch):
    """pyproject's scripts are mbt.cli's functions, each importing the command's main."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(declared) == sorted(SCRIPTS)
    loaded = {}
    monkeypatch.setattr(cli, "_command", lambda script, module: lambda: loaded.setdefault(
        script, module))
    for target in declared.values():
        module, _, function = target.partition(":")
        assert module == "mbt.cli", target
        getattr(cli, function)()
    assert sorted(loaded) == sorted(SCRIPTS)
    for module in loaded.values():
        assert callable(importlib.import_module(module).main), module


def test_data_is_read_from_the_package_when_it_ships_there(tmp_path, monkeypatch):
    monkeypatch.setattr(config_paths, "PACKAGE_DIR", tmp_path / "mbt")
    monkeypatch.setattr(config_paths, "REPO_ROOT", tmp_path / "checkout")
    assert config_paths._shipped_or_checkout("conf", "conf") == tmp_path / "checkout" / "conf"
    (tmp_path / "mbt" / "conf").mkdir(parents=True)
    assert config_paths._shipped_or_checkout("conf", "conf") == tmp_path / "mbt" / "conf"


def test_a_checkout_reads_the_root_conf_and_paper_csvs():
    """No copies under src/mbt: an edit to conf/ or results/paper/ is what runs."""
    assert config_paths.CONF_DIR == ROOT / "conf"
    assert config_paths.PAPER_DIR == ROOT / "results" / "paper"


# -- the wheel in a fresh venv (integration) -------------------------------------------
def _closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (markers and extras
    evaluated here)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(Requirement(r), {""}) for r in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in done:
            continue
        done.add((name, frozenset(req.extras)))
        dist = found.setdefault(name, importlib.metadata.distribution(name))
        todo += [(Requirement(r), {"", *req.extras}) for r in dist.requires or []]
    return list(found.values())


def _link_dir(path: Path, requirements: list[str]) -> Path:
    """A directory of symlinks to the top-level entries (packages, modules, dist-info) of
    the closure of ``requirements``."""
    path.mkdir()
    for dist in _closure(requirements):
        assert dist.files is not None, f"{dist.metadata['Name']} lists no files"
        for top in {Path(str(f)).parts[0] for f in dist.files}:
            source = Path(str(dist.locate_file(top)))
            if top not in ("..", "__pycache__") and not top.endswith(".pth") and \
                    source.exists() and not (path / top).exists():
                (path / top).symlink_to(source)
    return path


def _wheel_requirements(wheel: Path, extra: str | None = None) -> list[str]:
    """The wheel's core requirements, or those ``extra`` adds (its marker dropped)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA")))
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in meta.decode().splitlines()
            if line.startswith("Requires-Dist:")]
    picked = [r for r in reqs if canonicalize_name(r.name) != "mbt" and (
        r.marker is None if extra is None else r.marker and r.marker.evaluate({"extra": extra}))]
    for r in picked:
        r.marker = None
    return [str(r) for r in picked]


class Venv:
    def __init__(self, root: Path, wheel: Path, tmp: Path):
        self.root, self.wheel, self.tmp = root, wheel, tmp
        self.bin = root / "bin"
        self.train_path = tmp / "train-extra"

    def run(self, args: list[str], *, train: bool = False) -> subprocess.CompletedProcess:
        """``args`` in a scratch cwd, this environment's PYTHON* variables (PYTHONPATH=src
        of a checkout) left out; ``train`` puts the train extra's closure on the path."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HYDRA_"))}
        env.update(PYTHONNOUSERSITE="1", MPLCONFIGDIR=str(self.tmp / "mpl"))
        if train:
            env["PYTHONPATH"] = str(self.train_path)
        cwd = self.tmp / "cwd"
        cwd.mkdir(exist_ok=True)
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    for name in SOURCES:
        source, target = ROOT / name, tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    setuptools = importlib.metadata.version("setuptools")
    assert Version(setuptools) >= Version("77"), (
        f"setuptools {setuptools} cannot build mbt offline (pyproject's build-system wants "
        ">=77; mbt[dev] installs it)")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp / "dist"), str(tree)], check=True, timeout=TIMEOUT)
    (wheel,) = (tmp / "dist").glob("mbt-*.whl")
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=TIMEOUT)
    subprocess.run([*pip, "--python", str(root / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, timeout=TIMEOUT)
    purelib = subprocess.run([str(root / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    core = _link_dir(tmp / "core", _wheel_requirements(wheel))
    Path(purelib, "mbt-test-core.pth").write_text(f"{core}\n")
    env = Venv(root, wheel, tmp)
    _link_dir(env.train_path, _wheel_requirements(wheel, "train"))
    return env


@pytest.mark.integration
def test_wheel_ships_the_configs_and_the_paper_numbers(venv):
    with zipfile.ZipFile(venv.wheel) as zf:
        names = set(zf.namelist())
    configs = {f"mbt/conf/{p.relative_to(ROOT / 'conf').as_posix()}"
               for p in (ROOT / "conf").rglob("*") if p.is_file()}  # every file Hydra may read
    paper = {f"mbt/paper_data/{p.name}" for p in (ROOT / "results" / "paper").glob("*.csv")}
    assert "mbt/conf/train.yaml" in configs and "mbt/paper_data/table1.csv" in paper
    assert configs | paper <= names, sorted((configs | paper) - names)
    assert "mbt/cli.py" in names and "mbt/py.typed" in names


@pytest.mark.integration
def test_wheel_core_install_runs_mbt_optim_with_torch_alone(venv):
    code = "\n".join([
        "import importlib.util, torch, mbt, mbt.optim",
        "torch.manual_seed(0)",
        "model, x, y = torch.nn.Linear(4, 1), torch.randn(32, 4), torch.randn(32, 1)",
        "closure = mbt.optim.make_closure(model, torch.nn.functional.mse_loss, x, y)",
        "opt = mbt.optim.BacktrackingGD(model.parameters())",
        "first = float(opt.step(closure))",
        "for _ in range(5): opt.step(closure)",
        "print(mbt.__file__)",
        f"print([m for m in {[*HEAVY, 'tqdm']!r} if importlib.util.find_spec(m)])",
        "print(float(closure(backward=False)) < first)",
        # The MBT finder too (its progress bar is tqdm's only where tqdm is installed).
        "report = mbt.optim.find_lr(model, torch.nn.functional.mse_loss, [(x, y)] * 3,",
        "                           dataset_size=96, batch_size=32, num_batches=3)",
        "print(report.lr > 0)",
    ])
    proc = venv.run([str(venv.bin / "python"), "-c", code])
    assert proc.returncode == 0, proc.stderr[-3000:]
    location, reachable, decreased, found = proc.stdout.splitlines()
    assert Path(location).is_relative_to(venv.root), location  # the wheel, not the checkout
    assert reachable == "[]", f"the core venv sees more than the core: {reachable}"
    assert decreased == "True" and found == "True"


@pytest.mark.integration
def test_wheel_console_scripts_without_the_train_extra_name_it(venv):
    for script in SCRIPTS:
        proc = venv.run([str(venv.bin / script), "--help"])
        assert proc.returncode == 2, (script, proc.stdout, proc.stderr[-2000:])
        line = one_error_line(proc)
        assert line.startswith(f"error: {script} ") and "pip install 'mbt[train]'" in line


@pytest.mark.integration
def test_wheel_console_scripts_and_reports_with_the_train_extra(venv):
    for script in SCRIPTS:
        proc = venv.run([str(venv.bin / script), "--help"], train=True)
        assert proc.returncode == 0, (script, proc.stderr[-2000:])
        assert proc.stdout.strip(), f"{script} --help printed nothing"
    proc = venv.run([str(venv.bin / "mbt-toy"), "function=quartic", "method=unbounded",
                     "max_iters=50"], train=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1])["function"] == "quartic"
    out = venv.tmp / "report"
    proc = venv.run([str(venv.bin / "mbt-report"), "table1", "--ledger",
                     str(ROOT / "results" / "ledger.jsonl"), "--out", str(out)], train=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The paper's column is read from the wheel's mbt/paper_data (no results/ here).
    assert not (venv.tmp / "cwd" / "results").exists()
    assert "0.0153" in (out / "table1.md").read_text()


def test_a_wheel_install_inside_a_git_repo_records_no_commit(tmp_path, monkeypatch):
    """A venv inside some checkout (a project's .venv) puts the wheel's mbt in that repo's
    tree: its commit is not the code that ran."""
    from mbt import runinfo

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    site = tmp_path / ".venv" / "lib" / "python3.11"  # REPO_ROOT of a wheel install
    site.mkdir(parents=True)
    monkeypatch.setattr(runinfo, "REPO_ROOT", site)
    assert runinfo.git_state.__wrapped__() == {"commit": "unknown", "dirty": False}
    if (ROOT / ".git").exists():  # a checkout still names its commit
        monkeypatch.setattr(runinfo, "REPO_ROOT", ROOT)
        assert runinfo.git_state.__wrapped__()["commit"] != "unknown"
