"""One rank of the DDP checks in ``tests/test_ddp.py``; run under ``torchrun``, gloo on the CPU.

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py
{gd|mbt|lr_range} OUT.json``: rank 0 writes what every rank saw to OUT.json. Each rank trains on
its own shard of one data set (``DistributedSampler``), and the shards differ on purpose:
the odd samples (rank 1's) have inputs on another scale and labels that follow another
rule, so per-rank losses along the common (DDP-averaged) gradient disagree about which
step passes Armijo's test.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

N, K, FEATURES, CLASSES = 64, 8, 6, 3


def dataset() -> TensorDataset:
    """Sample i goes to rank i % 2 (``DistributedSampler(shuffle=False)``)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    odd = torch.arange(N) % 2 == 1
    x[odd] = 4.0 * x[odd] + 1.0
    y[odd] = (CLASSES - 1) - (x[odd, 2] > 0).long()
    return TensorDataset(x, y)


def model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, CLASSES))


def loader(data: TensorDataset) -> DataLoader:
    return DataLoader(data, batch_size=K, sampler=DistributedSampler(data, shuffle=False))


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def same_on_all_ranks(t: torch.Tensor) -> bool:
    """Whether every rank holds exactly ``t`` (bit for bit)."""
    copies = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, t)
    return all(torch.equal(c, copies[0]) for c in copies)


def step_sizes(net: nn.Module, opt) -> list[float]:
    """3 epochs of line-search steps on the rank's shard; the step size of each."""
    loss_fn = nn.CrossEntropyLoss()
    lrs = []
    for _ in range(3):
        for x, y in loader(dataset()):
            def closure(backward=True, x=x, y=y):
                if backward:
                    opt.zero_grad()
                loss = loss_fn(net(x), y)
                if backward:
                    loss.backward()
                return loss

            opt.step(closure)
            lrs.append(opt.last_search["lr"])
    return lrs


def line_searches() -> dict:
    """Two-way Backtracking GD, and Backtracking NAG and SLS (the other users of
    ``Objective``): the step sizes taken, and whether the weights agree."""
    from mbt.optim import SLS, BacktrackingNAG, TwoWayBacktrackingGD

    out = {}
    for name, build in (("two_way", lambda p: TwoWayBacktrackingGD(p, lr=1.0, beta=0.5)),
                        ("nag", lambda p: BacktrackingNAG(p, lr=1.0, beta=0.5)),
                        ("sls", lambda p: SLS(p, lr=1.0, n_batches_per_epoch=4))):
        net = DDP(model())
        lrs = step_sizes(net, build(net.parameters()))
        out[name] = {"lrs": lrs, "params_equal": same_on_all_ranks(flat(net))}
    return out


def report_dict(report) -> dict:
    return {"per_batch": report.per_batch, "f0": report.f0, "lr": report.lr,
            "scale": report.scale}


def mbt() -> dict:
    from mbt.optim import MBTFinder, build_mbt

    data, loss_fn = dataset(), nn.CrossEntropyLoss()
    bare = model()
    net = DDP(bare)
    before = flat(bare).clone()
    finder = MBTFinder(num_batches=6)
    out = {"wrapped": report_dict(finder.find(net, loss_fn, loader(data), lr=0.5)),
           "bare": report_dict(finder.find(bare, loss_fn, loader(data), lr=0.5)),
           "unchanged": torch.equal(flat(bare), before)}
    # One-shot iterators that run out after 3 mini-batches on rank 0 and 2 on rank 1.
    mine = list(loader(data))[:3 - dist.get_rank()]
    out["ragged"] = finder.find(bare, loss_fn, iter(mine), lr=0.5, dataset_size=N // 2,
                                batch_size=K).num_batches

    # The MBT-MMT policy over two epochs of DDP training: same lr, same weights everywhere.
    optimizer, controller = build_mbt("mmt", net.parameters(), lr=0.5, num_batches=3)
    lrs = []
    for epoch in range(2):
        train = loader(data)
        train.sampler.set_epoch(epoch)
        controller.on_epoch_start(epoch, net, loss_fn, train)
        lrs.append(optimizer.param_groups[0]["lr"])
        for x, y in train:
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        controller.on_epoch_end(loss.item())
    out["controller"] = {"lrs": lrs, "params_equal": same_on_all_ranks(flat(net))}

    # The plateau rule's inputs differ per rank (rank 1 does not evaluate): one verdict.
    _, plateau = build_mbt("gd", bare.parameters())
    first = dist.get_rank() == 0
    plateau.on_epoch_end(1.0, 0.5 if first else None)
    plateau.on_epoch_end(0.9 if first else 1.3, 0.4 if first else None)
    out["plateau"] = [plateau.best_loss, plateau.best_acc, plateau.epochs_no_loss_gain,
                      plateau.epochs_no_acc_gain]
    return out


def lr_range() -> dict:
    """The LR-range test on each rank's shard, of the DDP wrapper and of the bare module
    (the ranks' losses differ: only their mean gives one curve); the weights after it."""
    from mbt.optim import lr_range_test

    bare = model()
    before = flat(bare).clone()
    out = {}
    for name, net in (("wrapped", DDP(bare)), ("bare", bare)):
        swept: list[torch.Tensor] = []  # the weights after each step of the sweep

        class Recorded(torch.optim.SGD):
            def step(self, closure=None, swept=swept):
                loss = super().step(closure)
                swept.append(flat(bare).clone())
                return loss

        result = lr_range_test(
            net, nn.CrossEntropyLoss(), loader(dataset()), lr_min=1e-3, lr_max=10.0,
            num_steps=24, optimizer_factory=lambda p: Recorded(p, lr=0.1, momentum=0.9))
        out[name] = {"losses": result.losses, "smoothed": result.smoothed,
                     "lr": result.suggested_lr, "stopped": result.stopped_early,
                     "weights_agree": same_on_all_ranks(torch.stack(swept))}
    out["unchanged"] = torch.equal(flat(bare), before)
    return out


def main() -> None:
    check, out = sys.argv[1], sys.argv[2]
    # A rank left waiting in a collective gives up within a minute instead of hanging.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    result = {"gd": line_searches, "mbt": mbt, "lr_range": lr_range}[check]()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, result)
    if dist.get_rank() == 0:
        with open(out, "w") as fh:
            json.dump(gathered, fh)
    dist.barrier()
    dist.destroy_process_group()
    # Gloo's worker threads can still be joinable while the interpreter finalizes, and
    # std::terminate then aborts a rank that had finished (about 1 run in 20 on a loaded
    # 2-core machine; "terminate called without an active exception", no Python frame).
    # Everything this check reports is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
