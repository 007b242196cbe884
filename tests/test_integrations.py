"""PyTorch Lightning integration (mbt.integrations.lightning): MBTCallback searches as a
direct MBTFinder search, per-step line searches run no backward and log nothing at trial
points. Tiny CPU models and data; Lightning is an optional test dependency."""

from __future__ import annotations

import copy
import importlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")
# Lightning 2.6 on torch 2.14: its own pytree code, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated")

from mbt.integrations.lightning import LineSearchMixin, MBTCallback  # noqa: E402
from mbt.optim import SLS, BacktrackingNAG, MBTFinder, TwoWayBacktrackingGD  # noqa: E402


class Memory(pl.loggers.Logger):
    """Every row Lightning logs, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    name = "memory"
    version = 0

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def series(self, key: str) -> list[float]:
        return [row[key] for row in self.rows if key in row]


def dataset(n=64, seed=0, as_dict=False):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    if as_dict:
        return [{"x": x[i], "y": y[i]} for i in range(n)]  # default_collate -> dict batches
    return TensorDataset(x, y)


class Net(pl.LightningModule):
    def __init__(self, make_optimizer, as_dict=False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        self.make_optimizer, self.as_dict = make_optimizer, as_dict
        self.steps = self.grad_losses = self.trial_losses = 0

    def forward(self, x):
        return self.net(x)

    def compute_loss(self, batch):
        x, y = (batch["x"], batch["y"]) if self.as_dict else batch
        if torch.is_grad_enabled():
            self.grad_losses += 1
        else:
            self.trial_losses += 1
        return F.cross_entropy(self(x), y)

    def training_step(self, batch, batch_idx):
        self.steps += 1
        loss = self.compute_loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


class LineSearchNet(LineSearchMixin, Net):
    def training_step(self, batch, batch_idx):
        self.steps += 1
        return super().training_step(batch, batch_idx)


def trainer(logger=None, callbacks=(), **kw):
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(accelerator="cpu", devices=1, logger=logger or False,
                      callbacks=list(callbacks), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      log_every_n_steps=1, **kw)


class TakenSteps(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.f0s: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.lrs.append(trainer.optimizers[0].last_search["lr"])
        self.f0s.append(trainer.optimizers[0].last_search["f0"])


def two_way(params):
    return TwoWayBacktrackingGD(params, lr=1.0, alpha=0.5, beta=0.5)


def test_line_search_step_runs_no_backward_and_logs_nothing_at_trials():
    model, memory, taken = LineSearchNet(two_way), Memory(), TakenSteps()
    loader = DataLoader(dataset(), batch_size=4)  # 16 steps
    trainer(memory, [taken]).fit(model, loader)

    assert model.steps == 16 == len(taken.lrs)
    assert model.trainer.global_step == 16  # Lightning still counts the manual steps
    assert model.grad_losses == 16  # one forward+backward per step, at the start point
    state = model.trainer.optimizers[0].search_state
    assert model.trial_losses == state["func_evals"] - 16 > 16  # trials: forward only
    assert memory.series("train/lr") == pytest.approx(taken.lrs)  # the step taken, not lr0
    # the step's starting loss, not a trial's
    assert memory.series("train/loss_step") == pytest.approx(taken.f0s, rel=1e-6)
    assert len(set(taken.lrs)) > 1 and max(taken.lrs) <= 1.0


@pytest.mark.parametrize("make", [
    lambda p: BacktrackingNAG(p, lr=1.0),  # a gradient at the look-ahead point too
    lambda p: SLS(p, lr=1.0, n_batches_per_epoch=8),
], ids=["nag", "sls"])
def test_line_search_step_runs_any_line_search(make):
    model = LineSearchNet(make)
    trainer(max_steps=8).fit(model, DataLoader(dataset(), batch_size=8))
    state = model.trainer.optimizers[0].search_state
    assert model.steps == model.trainer.global_step == 8
    assert model.grad_losses == state["grad_evals"]  # backward only where a gradient is used
    assert model.trial_losses > 0


def test_automatic_optimization_runs_training_step_at_every_trial():
    """What docs/lightning.md warns of: Lightning's closure is training_step + backward."""
    model, taken = Net(two_way), TakenSteps()
    trainer(callbacks=[taken]).fit(model, DataLoader(dataset(), batch_size=4))
    state = model.trainer.optimizers[0].search_state
    assert len(taken.lrs) == 16
    assert model.steps == model.grad_losses == state["func_evals"] > 16
    assert model.trial_losses == 0


def sgd(momentum=0.0, nesterov=False):
    return lambda params: torch.optim.SGD(params, lr=0.5, momentum=momentum, nesterov=nesterov)


def test_callback_search_equals_a_direct_finder_search_and_is_logged():
    model, memory = Net(sgd()), Memory()
    start = copy.deepcopy(model.net)
    loader = DataLoader(dataset(), batch_size=8)
    callback = MBTCallback(num_batches=3)
    trainer(memory, [callback], max_epochs=2).fit(model, loader)

    direct = MBTFinder(num_batches=3).find(start, F.cross_entropy, loader, lr=1e-2)
    report = callback.last_report
    assert callback.controller.variant == "gd" and callback.controller.num_searches == 1
    assert report.per_batch == direct.per_batch and report.lr == direct.lr
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == report.lr
    assert memory.series("mbt/lr") == pytest.approx([report.lr] * 2, rel=1e-6)
    assert model.steps == 16  # the search never calls training_step
    # the plateau rule reads the logged epoch loss
    assert callback.controller.best_loss == pytest.approx(min(memory.series("train/loss")))


def test_callback_state_resumes_the_policy():
    """MBT-GD searches once: a callback restored from a checkpointed state does not search
    again and trains at the saved lr (Lightning loads callback states before the
    optimizer exists)."""
    loader = DataLoader(dataset(), batch_size=8)
    first = MBTCallback(num_batches=2)
    trainer(callbacks=[first]).fit(Net(sgd()), loader)
    resumed, model = MBTCallback(num_batches=2), Net(sgd())
    resumed.load_state_dict(first.state_dict())
    trainer(callbacks=[resumed]).fit(model, loader)
    assert resumed.controller.num_searches == 1
    assert model.trial_losses == 0 and model.grad_losses == model.steps  # no search ran
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == first.last_report.lr


def test_a_reused_callback_sets_the_new_fits_optimizer():
    callback, loader = MBTCallback(num_batches=2), DataLoader(dataset(), batch_size=8)
    trainer(callbacks=[callback], max_steps=1).fit(Net(sgd()), loader)
    model = Net(sgd())
    trainer(callbacks=[callback], max_steps=1).fit(model, loader)
    assert callback.controller.optimizer is model.trainer.optimizers[0]
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == callback.last_report.lr


def test_callback_nag_searches_every_epoch():
    model = Net(sgd(momentum=0.9, nesterov=True))
    callback = MBTCallback(num_batches=2)
    trainer(callbacks=[callback], max_epochs=3).fit(model, DataLoader(dataset(), batch_size=8))
    assert callback.controller.variant == "nag" and callback.controller.num_searches == 3
    assert callback.controller.last_search_epoch == 2


def test_callback_dict_batches_and_accumulation_search_as_plain_batches():
    plain = Net(sgd())
    cb_plain = MBTCallback(num_batches=2)
    trainer(callbacks=[cb_plain], max_steps=1).fit(plain, DataLoader(dataset(), batch_size=8))

    dicts = Net(sgd(), as_dict=True)
    cb_dict = MBTCallback(num_batches=2, accumulate=2)
    trainer(callbacks=[cb_dict], max_steps=1).fit(
        dicts, DataLoader(dataset(as_dict=True), batch_size=4))
    assert cb_dict.last_report.scale == cb_plain.last_report.scale
    assert cb_dict.last_report.lr == pytest.approx(cb_plain.last_report.lr, rel=1e-5)


def test_callback_without_a_loss_is_a_clear_error():
    class NoLoss(Net):
        compute_loss = None

    with pytest.raises(ValueError, match="compute_loss"):
        trainer(callbacks=[MBTCallback(num_batches=1)]).fit(
            NoLoss(sgd()), DataLoader(dataset(), batch_size=8))


def test_missing_lightning_says_how_to_install(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "mbt.integrations.lightning")
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("mbt.integrations.lightning")
