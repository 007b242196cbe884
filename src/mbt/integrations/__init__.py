"""Integrations of :mod:`mbt.optim` with training frameworks.

Each lives in its own module and imports its framework only when imported itself
(``import mbt.optim`` never imports Lightning):

* :mod:`mbt.integrations.lightning` - PyTorch Lightning: ``MBTCallback`` (MBT-GD/MMT/NAG,
  paper Sec. 3.5) and ``line_search_step`` / ``LineSearchMixin`` (the per-step line
  searches of Sec. 2-3 under manual optimization). See docs/lightning.md.
"""
