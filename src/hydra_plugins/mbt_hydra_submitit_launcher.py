"""mbt's submitit launchers (``conf/hydra/launcher/slurm.yaml``, ``local_gpus.yaml``):
hydra-submitit-launcher's, without the cells of a sweep already in the ledger
(:mod:`mbt.launchers`).

Hydra instantiates only launcher classes that its plugin scan finds under the
``hydra_plugins`` namespace package, hence this module. Its name contains
``hydra_submitit_launcher`` so that a config naming these classes without the plugin
installed still gets ``mbt.entry``'s one-line hint (``pip install -e '.[slurm]'``).
"""

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin
except ImportError:  # the `slurm` extra is not installed: no launcher here
    _plugin = None

if _plugin is not None:
    from mbt.launchers import SkipFinished, SlurmSkipFinished

    class SlurmLauncher(SlurmSkipFinished, _plugin.SlurmLauncher):
        """hydra-submitit-launcher's SlurmLauncher; submits only unfinished cells."""

    class LocalLauncher(SkipFinished, _plugin.LocalLauncher):
        """hydra-submitit-launcher's LocalLauncher; submits only unfinished cells."""
