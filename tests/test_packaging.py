"""pyproject.toml is the one list of what mbt needs: every import under src/mbt is in it,
environment.yml and the Makefile's torch pin agree with it, and the package ships its
version, ``py.typed`` and licence."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import mbt

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mbt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# Import name -> distribution name, where the two differ.
DIST_OF_IMPORT = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "hydra": "hydra-core",
    "hydra_plugins": "hydra-submitit-launcher",
    "dog": "dog-optimizer",
    "sklearn": "scikit-learn",
}


def _dist(import_name: str) -> str:
    return canonicalize_name(DIST_OF_IMPORT.get(import_name, import_name))


def _requirements(extras: Iterable[str] = ()) -> dict[str, Requirement]:
    """pyproject's core requirements plus ``extras``, self-references (mbt[x]) expanded."""
    found: dict[str, Requirement] = {}
    todo, done = [*PROJECT["dependencies"]], set()
    todo_extras = list(extras)
    while todo or todo_extras:
        if todo_extras:
            extra = todo_extras.pop()
            if extra not in done:
                done.add(extra)
                todo += PROJECT["optional-dependencies"][extra]
            continue
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == canonicalize_name(PROJECT["name"]):
            todo_extras += sorted(req.extras)
        else:
            found[canonicalize_name(req.name)] = req
    return found


def _environment() -> tuple[list[str], list[str]]:
    """environment.yml's conda entries and its pip section."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [entry for d in env["dependencies"] if isinstance(d, dict) for entry in d["pip"]]
    return conda, pip


def _env_pip() -> tuple[dict[str, Requirement], set[str]]:
    """environment.yml's pip requirements by name, and the extras of its ``-e .[...]``."""
    _, pip = _environment()
    reqs: dict[str, Requirement] = {}
    extras: set[str] | None = None
    for entry in pip:
        editable = re.fullmatch(r"-e\s+\.(?:\[([\w,\s-]*)\])?", entry.strip())
        if editable:
            extras = {e.strip() for e in (editable.group(1) or "").split(",") if e.strip()}
            continue
        req = Requirement(entry)
        reqs[canonicalize_name(req.name)] = req
    assert extras is not None, "environment.yml's pip section must install mbt (`-e .[dev]`)"
    return reqs, extras


def _third_party_imports(module_level: bool = False,
                         paths: Iterable[Path] | None = None) -> dict[str, set[str]]:
    """Top-level names imported under src/mbt (or in ``paths``) -> files: anywhere, or
    (``module_level``) only by statements that run on import (an extra's package may be
    imported inside the function that needs it, never at module level)."""
    stdlib = set(sys.stdlib_module_names)
    seen: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py") if paths is None else paths):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in (tree.body if module_level else ast.walk(tree)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top != "mbt" and top != "__future__":
                    seen.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return seen


# -- imports ---------------------------------------------------------------------------
def _optim_files() -> list[Path]:
    """The files that ``import mbt.optim`` runs: the package and every mbt module it
    imports at module level, transitively."""
    graph, todo, seen = _module_imports(), ["mbt.optim"], set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
            todo += [module.rpartition(".")[0]] if "." in module else []  # parents run too
    files = []
    for module in seen:
        path = SRC.parent.joinpath(*module.split("."))
        files.append(path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
    return files


def test_mbt_optim_needs_only_the_core_and_the_core_only_what_it_imports():
    """`pip install mbt` is torch and what mbt.optim imports: the optimizers drop into any
    PyTorch code without Hydra, W&B, pandas or torchvision."""
    files = _optim_files()
    assert SRC / "optim" / "mbt_finder.py" in files and SRC / "__init__.py" in files
    imports = {_dist(name) for name in _third_party_imports(module_level=True, paths=files)}
    assert imports == set(_requirements()), (
        f"mbt.optim imports {sorted(imports)} at module level; pyproject's core "
        f"dependencies are {sorted(_requirements())}")


def test_every_module_level_import_is_core_or_in_the_train_extra():
    """The console scripts (mbt.cli) name the train extra for any missing import."""
    imports = _third_party_imports(module_level=True)
    assert {"torch", "numpy", "PIL", "hydra", "pandas"} <= imports.keys()  # the scan works
    stack = _requirements({"train"})
    missing = {name: sorted(files) for name, files in imports.items() if _dist(name) not in stack}
    assert not missing, (f"imported on import of src/mbt but neither core nor in the train "
                         f"extra: {missing}")


def test_dev_installs_the_train_stack():
    """`make install` (mbt[dev]) runs every target: the tests, the sweeps, the reports."""
    dev = _requirements({"dev"})
    assert _requirements({"train"}).keys() <= dev.keys()


def test_every_import_is_declared_by_core_or_an_extra():
    imports = _third_party_imports()
    declared = _requirements(set(PROJECT["optional-dependencies"]))
    missing = {n: sorted(f) for n, f in imports.items() if _dist(n) not in declared}
    assert not missing, f"imported under src/mbt but declared nowhere in pyproject: {missing}"


def test_import_name_map_matches_installed_distributions():
    """DIST_OF_IMPORT agrees with the metadata of what is installed."""
    installed = importlib.metadata.packages_distributions()
    for name in _third_party_imports():
        dists = {canonicalize_name(d) for d in installed.get(name, [])}
        if dists:
            assert _dist(name) in dists, f"import {name!r} comes from {dists}, not {_dist(name)}"


def test_config_targets_are_declared():
    """A Hydra ``_target_`` in conf/ imports its module: core or an extra must declare it."""
    declared = _requirements(set(PROJECT["optional-dependencies"]))
    targets: dict[str, set[str]] = {}
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        for top in re.findall(r"_target_:\s*([A-Za-z_]\w*)", path.read_text()):
            if top not in sys.stdlib_module_names and top != "mbt":
                targets.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    assert "torch" in targets
    missing = {t: sorted(f) for t, f in targets.items() if _dist(t) not in declared}
    assert not missing, f"conf/ targets whose package pyproject does not declare: {missing}"


# -- environment.yml -------------------------------------------------------------------
def test_environment_lists_every_pyproject_dependency_with_the_same_range():
    env, extras = _env_pip()
    assert "dev" in extras
    wanted = _requirements(extras)
    problems = []
    for name, req in wanted.items():
        got = env.get(name)
        if got is None:
            problems.append(f"{req} is missing from environment.yml's pip section")
            continue
        if got.marker != req.marker:
            problems.append(f"{name}: marker {got.marker} in environment.yml, {req.marker} "
                            "in pyproject")
        pins = [s for s in got.specifier if s.operator == "=="]
        if pins:  # a pin must lie inside pyproject's range
            if not req.specifier.contains(pins[0].version, prereleases=True):
                problems.append(f"{name}: environment.yml pins {got.specifier}, outside "
                                f"pyproject's {req.specifier}")
        elif got.specifier != req.specifier:
            problems.append(f"{name}: {got.specifier} in environment.yml, {req.specifier} "
                            "in pyproject")
    extra_names = sorted(set(env) - set(wanted))
    if extra_names:
        problems.append(f"environment.yml lists what pyproject does not declare: {extra_names}")
    assert not problems, "\n".join(problems)


def test_environment_torch_pins_match_the_makefile():
    env, _ = _env_pip()
    spec = re.search(r"^TORCH_SPEC \?= *(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert spec, "the Makefile no longer sets a default TORCH_SPEC"
    make = {canonicalize_name(r.name): r for r in map(Requirement, spec.group(1).split())}
    assert set(make) == {"torch", "torchvision"}
    for name, req in make.items():
        assert str(env[name].specifier) == str(req.specifier), (name, env[name], req)


def test_environment_python_satisfies_requires_python():
    conda, _ = _environment()
    python = [c for c in conda if re.fullmatch(r"python\s*=+\s*[\d.]+", c)]
    assert len(python) == 1, conda
    version = python[0].split("=")[-1].strip()
    assert Version(version) in Requirement(f"python{PROJECT['requires-python']}").specifier


# -- what the package ships ------------------------------------------------------------
def test_version_matches_pyproject():
    assert mbt.__version__ == PROJECT["version"]


def test_version_fallback_matches_pyproject(monkeypatch):
    """Outside an installed tree ``__version__`` falls back to a literal: keep it in step."""

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    try:
        importlib.reload(mbt)
        assert mbt.__version__ == PROJECT["version"]
    finally:
        monkeypatch.undo()
        importlib.reload(mbt)


def test_py_typed_is_shipped():
    assert (Path(mbt.__file__).parent / "py.typed").is_file()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data.get("mbt", [])


def test_license_file_matches_pyproject():
    license_text = (ROOT / "LICENSE").read_text()
    declared = PROJECT["license"]
    declared = declared["text"] if isinstance(declared, dict) else declared
    assert declared == "MIT"
    assert license_text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in license_text


@pytest.mark.parametrize("name", ["LRRangeController", "LRRangeResult", "lr_range_test"])
def test_lr_range_test_is_exported(name):
    import mbt.optim

    assert name in mbt.optim.__all__
    assert getattr(mbt.optim, name) is getattr(importlib.import_module("mbt.optim.lr_range"), name)


@pytest.mark.integration
def test_entrypoints_import_no_torchvision_before_data_is_read():
    # `import torchvision` costs ~2 s (its ops import torch._dynamo); a config error, --help
    # or a toy run must not pay it, so mbt.data imports it where data is read.
    import subprocess

    code = ("import sys, mbt.train, mbt.find_lr, mbt.toy.__main__, mbt.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


# Layers of src/mbt, lowest first (longest module prefix wins). A module imports, at module
# level, only from lower layers or its own package: data flows config -> train loop ->
# ledger + W&B -> report, and the report reads only the ledger (DEVELOPERS.md).
LAYERS = {
    "mbt": 0, "mbt.config_paths": 0, "mbt.settle": 0, "mbt.ledger": 0, "mbt.tracking": 0,
    "mbt.checkpoint": 0,
    "mbt.runinfo": 1, "mbt.optim": 1, "mbt.models": 1, "mbt.data": 1, "mbt.report": 1,
    "mbt.loop": 2, "mbt.config": 2, "mbt.toy": 2,
    "mbt.run": 3,
    "mbt.entry": 4,
    "mbt.train": 5, "mbt.find_lr": 5, "mbt.launchers": 5, "mbt.ledger_migrate": 5,
    "mbt.bench": 5, "mbt.toy.__main__": 5, "mbt.report.__main__": 5,
    "mbt.cli": 6,
}


def _module_imports() -> dict[str, set[str]]:
    """Module -> the mbt modules it imports at module level (TYPE_CHECKING blocks and
    imports inside functions excluded: they do not run at import time)."""
    graph: dict[str, set[str]] = {}
    modules = {".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(
        ".__init__") for p in SRC.rglob("*.py")}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        package = name.removesuffix(".__init__") if path.name == "__init__.py" \
            else name.rpartition(".")[0]
        name = name.removesuffix(".__init__")
        out = graph.setdefault(name, set())
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for n in node.body if isinstance(node, ast.Try) else [node]:
                if isinstance(n, ast.Import):
                    out |= {a.name for a in n.names if a.name.split(".")[0] == "mbt"}
                elif isinstance(n, ast.ImportFrom):
                    base = package.split(".")[:len(package.split(".")) - n.level + 1] \
                        if n.level else []
                    target = ".".join([*base, *([n.module] if n.module else [])])
                    if target.split(".")[0] != "mbt":
                        continue
                    subs = {f"{target}.{a.name}" for a in n.names} & modules
                    out |= subs or {target}
    return graph


def _layer(module: str) -> tuple[str, int]:
    key = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return key, LAYERS[key]


def test_imports_go_down_the_layers_and_have_no_cycle():
    graph = _module_imports()
    upward = []
    for src, targets in graph.items():
        (src_key, src_rank) = _layer(src)
        for dst in targets:
            dst_key, dst_rank = _layer(dst)
            same_package = dst_key == src_key or dst.startswith(src_key + ".") or \
                src.startswith(dst_key + ".") and dst_key != "mbt"
            if not same_package and dst_rank >= src_rank and dst != "mbt":
                upward.append(f"{src} -> {dst}")
    assert not upward, upward
    # The report never re-trains: it reads the ledger (and W&B), not the training code
    # (config_paths: where the paper's CSVs are).
    report_reads = {f"{m} -> {t}" for m, ts in graph.items() if m.startswith("mbt.report")
                    for t in ts if _layer(t)[0] not in ("mbt.report", "mbt.report.__main__",
                                                        "mbt.ledger", "mbt.settle",
                                                        "mbt.tracking", "mbt.config_paths",
                                                        "mbt")}
    assert not report_reads, report_reads
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


# -- citation and changelog ------------------------------------------------------------
def test_citation_cff_agrees_with_pyproject():
    """CITATION.cff (CFF 1.2.0) names this version and licence, and cites the paper whose
    DOI pyproject's Paper URL resolves."""
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= cff.keys() and cff["type"] == "software"
    assert str(cff["version"]) == PROJECT["version"] and cff["license"] == PROJECT["license"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and isinstance(paper["year"], int)
    assert [a["family-names"] for a in paper["authors"]] == ["Truong", "Nguyen"]
    assert PROJECT["urls"]["Paper"] == f"https://doi.org/{paper['doi']}"
    assert re.fullmatch(r"10\.\d{4,9}/[A-Za-z0-9:/_;\-.()\[\]]+", paper["doi"])


def test_changelog_has_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "\n## [Unreleased]\n" in text


def test_install_hints_name_the_form_that_works_for_this_install(monkeypatch, tmp_path):
    """A wheel install has no checkout to install ``-e .`` from: its hints name the package."""
    from mbt import config_paths

    assert config_paths.install_hint("slurm") == "pip install -e '.[slurm]'"  # this checkout
    monkeypatch.setattr(config_paths, "REPO_ROOT", tmp_path)  # site-packages' parent
    assert config_paths.install_hint("slurm") == "pip install 'mbt[slurm]'"
