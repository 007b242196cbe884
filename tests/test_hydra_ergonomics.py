"""Hydra as Hydra users expect: the job directory and runs/<run_key>/ point at each other,
the job's log holds the per-epoch lines, --help lists the groups and presets, and the
mistakes Hydra reports obscurely (``+experiment=``, a missing extra) say what to do.
Each test runs the real entrypoint in a subprocess, as a user does."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from clirun import one_error_line, plumbing, run_module
from mbt import ledger
from mbt.config import ConfigError, validate
from mbt.config_paths import CONF_DIR

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- one place per run ---------------------------------------------------------------------
@pytest.mark.integration
def test_job_dir_and_run_dir_link_and_the_job_log_holds_the_epochs(cifar10_root, tmp_path):
    over = [o for o in plumbing(cifar10_root, tmp_path / "runs", epochs=2)
            if not o.startswith("trainer.progress=")]
    proc = run_module("mbt.train", *over, "trainer.progress=line", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = ledger.read(tmp_path / "runs" / "ledger.jsonl")
    key = record["run_key"]
    run_dir = tmp_path / "runs" / key
    # Without --json the last stdout line is a summary naming the run folder, which the
    # first stderr line already named; the 4 KB record is in the ledger only.
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(f"{key}: finished, 2/2 epochs, best test ") and not last.startswith("{")
    assert last.endswith(f"; ledger {tmp_path / 'runs' / 'ledger.jsonl'}; run folder {run_dir}")
    assert proc.stderr.splitlines()[0] == f"{key}: run folder {run_dir}"
    # A finished run keeps one checkpoint (prev.pt, the fallback while training, is gone).
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["last.pt"]

    (job_dir,) = [p.parent for p in (tmp_path / "outputs").glob("*/*/.hydra")]
    assert (job_dir / "run_key").read_text().strip() == key
    assert (job_dir / "run_dir").is_symlink()
    assert (job_dir / "run_dir").resolve() == run_dir.resolve()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "trainer.progress=line" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert (run_dir / "hydra_jobs.txt").read_text().splitlines() == [str(job_dir.resolve())]

    # The console line reads as before (bare); the job's log has it with time and level.
    epochs = [line for line in proc.stdout.splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in epochs] == [f"{key} epoch 1/2", f"{key} epoch 2/2"]
    log = (job_dir / "train.log").read_text()
    assert re.search(rf"\]\[mbt\.train\]\[INFO\] - {re.escape(key)} epoch 2/2: loss ", log)


def test_a_run_without_hydra_links_nothing(compose, cifar10_root, tmp_path):
    from mbt.train import train

    record = train(compose(*plumbing(cifar10_root, tmp_path)))
    run_dir = tmp_path / record["run_key"]
    assert not (run_dir / ".hydra").exists() and not (run_dir / "hydra_jobs.txt").exists()


# --- --help --------------------------------------------------------------------------------
_GROUPS = ("model", "data", "optim", "logger", "protocol", "experiment", "hydra/launcher")


@pytest.mark.integration
def test_help_lists_every_user_facing_option_once_and_no_internal_one(tmp_path):
    proc = run_module("mbt.train", "--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert not list(tmp_path.iterdir()), "--help must not write anything"
    words = re.findall(r"[\w/]+", text)
    for group in _GROUPS:
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            assert option.stem in words, f"{group}={option.stem} is not in --help"
    # experiment/protocols holds what protocol=... changes in a preset: not for users.
    assert "protocols" not in text and "table2_smoke" not in text
    preset_lines = [line for line in text.splitlines() if re.match(r"  table2_mbt +\S", line)]
    assert len(preset_lines) == 1


# --- errors that say what to do --------------------------------------------------------------
@pytest.mark.integration
def test_plus_experiment_says_to_drop_the_plus(tmp_path):
    proc = run_module("mbt.train", "+experiment=table2", "logger=none", cwd=tmp_path,
                      timeout=120)
    assert proc.returncode == 2
    assert "write experiment=table2, without the +" in one_error_line(proc)


_BLOCKER = '''
import sys

class _Missing:
    """Import of these modules fails as if they were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Missing())
'''


def _without(tmp_path: Path, *modules: str, hide_plugins: bool = False) -> dict:
    """An environment where ``modules`` cannot be imported (a sitecustomize on PYTHONPATH);
    ``hide_plugins``: a regular ``hydra_plugins`` package shadows the installed namespace
    package, so Hydra finds no plugin at all (hydra-submitit-launcher not installed)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER.format(blocked=set(modules)))
    if hide_plugins:
        (site / "hydra_plugins").mkdir()
        (site / "hydra_plugins" / "__init__.py").write_text("")
    return {"PYTHONPATH": str(site), "HYDRA_FULL_ERROR": None}


@pytest.mark.integration
@pytest.mark.parametrize(("launcher", "hide_plugins"), [
    ("slurm", True),        # Hydra: could not load hydra/launcher/submitit_slurm
    ("local_gpus", True),   # Hydra: unknown plugin class ...submitit_launcher.LocalLauncher
    ("slurm", False),       # the plugin is there, submitit is not
])
def test_launcher_without_its_extra_names_the_extra(tmp_path, cifar10_root, launcher, hide_plugins):
    env = _without(tmp_path, "submitit", hide_plugins=hide_plugins)
    proc = run_module("mbt.train", "-m", f"hydra/launcher={launcher}", *plumbing(cifar10_root,
                      tmp_path / "runs"), cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install -e '.[slurm]'" in one_error_line(proc)
    assert not (tmp_path / "runs").exists()  # no job ran, no data was loaded


@pytest.mark.integration
def test_optimizer_without_its_extra_names_the_extra_before_any_data(tmp_path):
    env = _without(tmp_path, "prodigyopt")
    proc = run_module("mbt.train", "optim=prodigy", f"data.root={tmp_path}/nowhere",
                      f"paths.runs={tmp_path}/runs", "logger=none", cwd=tmp_path, env=env,
                      timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "optim=prodigy needs 'prodigyopt'" in line and "pip install -e '.[autolr]'" in line
    assert "nowhere" not in line


def test_optimizer_check_in_process(compose, monkeypatch):
    """The same check through mbt.config.validate, for each autolr optimizer's module."""
    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"dog", "schedulefree"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    for name in [m for m in sys.modules if m.split(".")[0] in {"dog", "schedulefree"}]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Missing(), *sys.meta_path])
    for optim, module in (("dog", "dog"), ("adamw_schedulefree", "schedulefree")):
        with pytest.raises(ConfigError, match=re.escape(
                f"optim={optim} needs '{module}', which is not installed: "
                f"pip install -e '.[autolr]'")):
            validate(compose(f"optim={optim}"))


# --- near misses ------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "hint"), [
    ("trainer.epoch=3", "(did you mean trainer.epochs=3?)"),
    ("optim.lrr=0.1", "(did you mean optim.lr=0.1?)"),
    ("trainer.zzz=1", ""),  # nothing close: no guess
])
def test_a_near_miss_key_suggests_the_schemas_name(compose, override, hint):
    from hydra.errors import HydraException

    from mbt.entry import _condense, _hint

    with pytest.raises(HydraException) as info:
        compose(override)
    assert _hint(info.value) == (f" {hint}" if hint else "")
    assert "Could not override" in _condense(info.value)  # Hydra's text stays before it


def test_a_near_miss_added_with_plus_is_named_too(compose):
    with pytest.raises(ConfigError, match=re.escape(
            "unknown config key(s) trainer.epoch (did you mean trainer.epochs?)")):
        validate(compose("+trainer.epoch=3"))


def test_the_toy_schema_gets_near_misses_too():
    from mbt.config import near_miss
    from mbt.toy.__main__ import ToyConfig

    assert near_miss("fuction", ToyConfig) == "function"
    assert near_miss("data.rot") == "data.root" and near_miss("nope.x") is None


def test_the_search_progress_lines_print_bare_like_the_epoch_lines():
    from omegaconf import OmegaConf

    from mbt.optim import mbt_finder

    loggers = OmegaConf.load(CONF_DIR / "hydra" / "job_logging" / "mbt.yaml").loggers
    assert loggers[mbt_finder.logger.name].handlers == loggers["mbt.train"].handlers
    assert loggers[mbt_finder.logger.name].level == "INFO"
