"""PyTorch Lightning with mbt (docs/lightning.md), on tiny synthetic data:

1. Two-way Backtracking GD (paper Sec. 3.3), one line search per step, under manual
   optimization (``LineSearchMixin``): trial points are forward-only and never reach
   ``training_step`` or ``self.log``; ``train/lr`` is the step taken.
2. MBT-GD (Sec. 3.5.2) with ``MBTCallback``: an MBT search at the first epoch's start
   sets the SGD's lr, logged as ``mbt/lr`` (with momentum, or Nesterov, the optimizer
   makes it MBT-MMT / MBT-NAG: a search at every epoch start).

    pip install lightning
    python examples/lightning_two_way.py [--steps 32] [--search-batches 20]
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mbt.integrations.lightning import LineSearchMixin, MBTCallback
from mbt.optim import TwoWayBacktrackingGD


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, batch) -> torch.Tensor:
        """The mini-batch loss, and nothing else (line searches and MBT call it)."""
        x, y = batch
        return F.cross_entropy(self(x), y)

    def training_step(self, batch, batch_idx):
        loss = self.compute_loss(batch)
        self.log("train/loss", loss, on_epoch=True)
        return loss

    def configure_optimizers(self):  # MBT-GD (momentum 0); the callback sets the lr
        return torch.optim.SGD(self.parameters(), lr=1e-2)


class TwoWayClassifier(LineSearchMixin, Classifier):  # the mixin's training_step wins
    def configure_optimizers(self):
        return TwoWayBacktrackingGD(self.parameters(), lr=1.0, alpha=0.5, beta=0.7)


def loader(n: int = 256) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


def fit(model: pl.LightningModule, steps: int, callbacks=()) -> dict[str, float]:
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                         callbacks=list(callbacks), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader())
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def main(argv: list[str] | None = None) -> tuple[dict, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=32, help="training steps per run")
    parser.add_argument("--search-batches", type=int, default=20, help="per MBT search")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    two_way = fit(TwoWayClassifier(), args.steps)
    print(f"two-way: last step {two_way['train/lr']:.4g}, loss {two_way['train/loss']:.4f}")
    mbt = fit(Classifier(), args.steps, [MBTCallback(num_batches=args.search_batches)])
    print(f"MBT-GD: lr {mbt['mbt/lr']:.4g}, loss {mbt['train/loss']:.4f}")
    return two_way, mbt


if __name__ == "__main__":
    main()
