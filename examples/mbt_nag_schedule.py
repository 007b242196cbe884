"""MBT-NAG (paper Sec. 3.5.2) in a plain loop: Nesterov SGD whose lr an MBT search sets at
the start of every epoch, with the plateau switch (alpha 0.5, momentum off) driven by the
training loss and test accuracy.

    python examples/mbt_nag_schedule.py [--epochs 4] [--steps 8] [--search-batches 20]

``--steps``: training steps per epoch. Tiny synthetic data: runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mbt.optim import build_mbt


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return TensorDataset(x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long())


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    model.train()
    return hits / len(loader.dataset)


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="training steps per epoch")
    parser.add_argument("--search-batches", type=int, default=20, help="per MBT search")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    train = DataLoader(data(512, 0), batch_size=16, shuffle=True, drop_last=True)
    test = DataLoader(data(256, 1), batch_size=64)
    loss_fn = nn.CrossEntropyLoss()
    # lr: each search's start eta (Table 2: 1e-2); num_batches: 20 as the paper.
    optimizer, controller = build_mbt("nag", model.parameters(), lr=1e-2,
                                      num_batches=args.search_batches)
    lrs = []
    for epoch in range(args.epochs):
        report = controller.on_epoch_start(epoch, model, loss_fn, train)  # search, set lr
        lrs.append(optimizer.param_groups[0]["lr"])
        total = 0.0
        for x, y in itertools.islice(train, args.steps):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        acc = accuracy(model, test)
        controller.on_epoch_end(total / args.steps, acc)
        print(f"epoch {epoch}: lr {lrs[-1]:.4g} ({report.func_evals} trial forwards), "
              f"loss {total / args.steps:.4f}, test acc {acc:.3f}, "
              f"plateaued {controller.plateaued}")
    return lrs


if __name__ == "__main__":
    main()
