"""find_lr on dict / multi-input batches, a user batch_loss and gradient accumulation
(mbt.optim.batches): each must search exactly as the equivalent (inputs, targets) pairs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mbt.optim import MBTFinder, find_lr
from mbt.optim.batches import batch_len, split_batch

LOSS = nn.CrossEntropyLoss()
SIZES = {"dataset_size": 64, "batch_size": 8}


class TwoInputs(nn.Module):
    """f(a, b) = net(cat(a, b)): the same function as ``net`` on the concatenated input."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.3),
                         nn.Linear(16, 3)).double()


def pairs(n=4, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 6, generator=g, dtype=torch.float64),
             torch.randint(0, 3, (bs,), generator=g)) for _ in range(n)]


def reference(model, batches, **kw):
    return MBTFinder(num_batches=4).find(model, LOSS, batches, lr=1e-2, **SIZES, **kw)


def test_multi_input_tuples_search_as_pairs():
    model = net()
    ref = reference(model, pairs())
    split = [(x[:, :2], x[:, 2:], y) for x, y in pairs()]
    report = find_lr(TwoInputs(model), LOSS, split, lr=1e-2, num_batches=4, **SIZES)
    assert report.per_batch == ref.per_batch and report.lr == ref.lr
    assert report.func_evals == ref.func_evals


def test_dict_batches_with_target_key_search_as_pairs():
    model = net()
    ref = reference(model, pairs())
    dicts = [{"a": x[:, :2], "b": x[:, 2:], "label": y} for x, y in pairs()]
    report = find_lr(TwoInputs(model), LOSS, dicts, lr=1e-2, num_batches=4,
                     target_key="label", **SIZES)
    assert report.per_batch == ref.per_batch and report.lr == ref.lr


def test_batch_loss_replaces_loss_fn_and_formats():
    model = net()
    ref = reference(model, pairs())
    records = [{"x": x, "y": y} for x, y in pairs()]
    report = find_lr(model, None, records, lr=1e-2, num_batches=4,
                     batch_loss=lambda m, b: LOSS(m(b["x"]), b["y"]), **SIZES)
    assert report.per_batch == ref.per_batch and report.lr == ref.lr


def test_accumulated_micro_batches_search_as_the_whole_batch():
    """k=2 micro-batches of 4 per search mini-batch == batches of 8 (no BatchNorm: it
    would normalise per micro-batch), rescaled with k = 4 * 2 from the loader."""
    model = net()
    x = torch.cat([b[0] for b in pairs()])
    y = torch.cat([b[1] for b in pairs()])
    data = TensorDataset(x, y)
    ref = MBTFinder(num_batches=4).find(model, LOSS, DataLoader(data, batch_size=8), lr=1e-2)
    report = find_lr(model, LOSS, DataLoader(data, batch_size=4), lr=1e-2, num_batches=4,
                     accumulate=2)
    assert report.scale == ref.scale  # sqrt(8 / 32), not sqrt(4 / 32)
    assert report.per_batch == pytest.approx(ref.per_batch, rel=1e-12)
    assert report.lr == pytest.approx(ref.lr, rel=1e-12)


def test_accumulation_recomputes_micro_batches_in_the_gradient_pass():
    """The gradient pass checkpoints each micro-batch (peak memory: one micro-batch):
    2 forwards per micro-batch there, 1 per micro-batch and trial."""
    model = net()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    report = find_lr(model, LOSS, pairs(n=4, bs=4), lr=1e-2, num_batches=2, accumulate=2,
                     dataset_size=64, batch_size=8)
    assert len(calls) == 2 * (2 * 2) + 2 * report.func_evals


def test_accumulated_search_leaves_batchnorm_statistics_as_they_were():
    """Checkpointing runs each micro-batch's forward twice in the gradient pass; the
    finder still restores every buffer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    find_lr(model, LOSS, pairs(bs=4), lr=1e-2, num_batches=2, accumulate=2, **SIZES)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unknown_formats_are_clear_errors():
    model = net()
    with pytest.raises(ValueError, match="target_key"):
        find_lr(model, LOSS, [{"x": torch.zeros(2, 6), "y": torch.zeros(2)}], rescale="none")
    with pytest.raises(ValueError, match="batches must yield"):
        find_lr(model, LOSS, [torch.zeros(2, 6)], rescale="none")
    with pytest.raises(ValueError, match="bn_slices"):
        find_lr(model, LOSS, pairs(), bn_slices=2, accumulate=2, rescale="none")


def test_split_batch_and_batch_len():
    x, y = torch.zeros(5, 2), torch.zeros(5)
    assert split_batch((x, y)) == ((x,), {}, y)
    args, kwargs, t = split_batch({"a": x, "t": y}, "t")
    assert args == () and kwargs == {"a": x} and t is y
    assert batch_len({"a": [x, y]}) == 5 and batch_len(("text",)) == 1


def test_import_mbt_optim_does_not_import_lightning():
    """Lightning is optional: only mbt.integrations.lightning may import it (fresh process:
    this one may have imported it already)."""
    import subprocess
    import sys

    code = ("import sys, mbt.optim, mbt.optim.batches, mbt.integrations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
