"""``python -m mbt.bench``: see :mod:`mbt.bench`."""

from .cli import main

raise SystemExit(main())
