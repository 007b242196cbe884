"""``python -m mbt.bench``: see :mod:`mbt.bench`."""

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. an import scan) must not run the bench
    raise SystemExit(main())
