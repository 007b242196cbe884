"""The wheel carries mbt's data files inside the package: ``conf/`` as ``mbt/conf`` and the
paper's numbers (``results/paper``) as ``mbt/paper_data``. They stay at the repository root
in the source tree, where the Makefile, docs, tests and other branches name them;
``mbt.config_paths`` looks in the package first, then in the checkout (an editable install
or ``PYTHONPATH=src`` reads the root's files, so nothing is copied for them)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# package subdirectory -> (source directory at the root, the files to ship)
DATA = {
    "conf": ("conf", ("**/*.yaml",)),
    "paper_data": ("results/paper", ("*.csv", "README.md")),
}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for dest, (source, patterns) in DATA.items():
            src = ROOT / source
            files = sorted({f for pattern in patterns for f in src.glob(pattern) if f.is_file()})
            if not files:  # e.g. an sdist made without MANIFEST.in: never a wheel without them
                raise SystemExit(f"error: no {'/'.join(patterns)} under {src} to ship as "
                                 f"mbt/{dest}")
            # A reused build/ (in-tree `pip install .`) must not ship a file deleted since.
            shutil.rmtree(Path(self.build_lib, "mbt", dest), ignore_errors=True)
            for f in files:
                target = Path(self.build_lib, "mbt", dest, f.relative_to(src))
                self.mkpath(str(target.parent))
                self.copy_file(str(f), str(target))


setup(cmdclass={"build_py": BuildPyWithData})
