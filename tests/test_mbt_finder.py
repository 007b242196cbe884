"""MBT finder and MBT-GD/-MMT/-NAG policy (paper Sec. 3.5; published code lr_backtrack.py).

Tiny CPU models and synthetic tensors only; the whole file runs in a few seconds.
"""

from __future__ import annotations

import copy
import io
import logging
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mbt.optim import (
    MBTController,
    MBTFinder,
    MBTSearchConfig,
    SearchReport,
    build_mbt,
    find_lr,
    rescale_factor,
)

ALPHA, BETA = 1e-4, 0.5


def mlp(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)
    ).to(dtype)


def convnet(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.3),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 3),
    ).to(dtype)


def make_batches(n_batches=4, bs=8, shape=(6,), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(bs, *shape, generator=g, dtype=dtype), torch.randint(0, 3, (bs,), generator=g))
        for _ in range(n_batches)
    ]


LOSS = nn.CrossEntropyLoss()
SIZES = {"dataset_size": 400, "batch_size": 8}  # rho = 1/50


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(before, model):
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert v.dtype == after[k].dtype and torch.equal(v, after[k]), k


def search_mode_copy(model, bn_train=True):
    """A copy in the finder's default mode: train, BN batch stats, dropout off."""
    m = copy.deepcopy(model).train()
    for mod in m.modules():
        if isinstance(mod, nn.modules.dropout._DropoutNd):
            mod.eval()
        if isinstance(mod, nn.modules.batchnorm._NormBase):
            mod.train(bn_train)
    return m


def loss_at(model, x, y, grads=None, lr=0.0):
    """f(w - lr g) on a throw-away copy (so BN buffers are not an issue)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        if grads is not None:
            for p, g in zip(m.parameters(), grads, strict=True):
                p.add_(g, alpha=-lr)
        return LOSS(m(x), y).item()


def gap(report, k, eta, f, alpha=ALPHA):
    return f - report.f0[k] + alpha * eta * report.grad_sq_norms[k]


# ---------------------------------------------------------------- the search itself


@pytest.mark.parametrize("make_model,shape", [(mlp, (6,)), (convnet, (2, 5, 5))])
@pytest.mark.parametrize("initially_train", [True, False])
def test_search_leaves_model_bit_identical(make_model, shape, initially_train):
    model = make_model()
    batches = make_batches(shape=shape)
    model.train(initially_train)
    with torch.no_grad():  # give BN non-trivial statistics first
        model.train()(batches[0][0])
    model.train(initially_train)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    grads = [p.grad for p in model.parameters()]
    flags = [m.training for m in model.modules()]
    before = snapshot(model)

    report = find_lr(model, LOSS, batches, lr=1e-2, num_batches=6, **SIZES)

    assert_bit_identical(before, model)  # params, running stats, num_batches_tracked
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))
    assert all(torch.all(p.grad == 7.0) for p in model.parameters())
    assert report.num_batches == 6 and report.grad_evals == 6
    assert math.isfinite(report.lr) and report.lr > 0


def test_accepted_eta_satisfies_armijo_and_eta_over_beta_does_not_recomputed():
    """One mini-batch, checked against an independent plain-PyTorch recomputation."""
    model = mlp()
    x, y = make_batches(1)[0]
    report = find_lr(model, LOSS, [(x, y)], lr=1e-2, num_batches=1, rescale="none")
    assert not report.bound_hits[0]
    eta = report.per_batch[0]

    ref = search_mode_copy(model)
    loss = LOSS(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    f0 = loss.item()
    gsq = sum(float(g.pow(2).sum()) for g in grads)
    assert report.f0[0] == pytest.approx(f0, rel=1e-12)
    assert report.grad_sq_norms[0] == pytest.approx(gsq, rel=1e-10)
    assert loss_at(ref, x, y, grads, eta) - f0 + ALPHA * eta * gsq <= 1e-12
    assert loss_at(ref, x, y, grads, eta / BETA) - f0 + ALPHA * eta / BETA * gsq > 0


def test_armijo_holds_on_every_batch_from_the_trace():
    model = mlp()
    report = find_lr(model, LOSS, make_batches(5), lr=1.0, num_batches=5, **SIZES)
    cfg = MBTSearchConfig()
    for k, eta in enumerate(report.per_batch):
        tried = dict(report.trials[k])
        assert eta in tried  # the accepted step was evaluated on its own batch
        assert cfg.lr_min <= eta <= cfg.lr_max
        if report.bound_hits[k]:
            continue
        assert gap(report, k, eta, tried[eta]) <= 0.0
        up = eta / BETA
        assert up in tried and not gap(report, k, up, tried[up]) <= 0.0
    assert report.func_evals == sum(len(t) for t in report.trials)


def test_first_batch_starts_at_lr_later_ones_at_the_running_mean():
    model = mlp()
    report = find_lr(model, LOSS, make_batches(6), lr=3e-3, num_batches=6, **SIZES)
    assert report.starts[0] == 3e-3
    for k in range(1, 6):
        expect = max(0.99e-6, sum(report.per_batch[:k]) / k)
        assert report.starts[k] == pytest.approx(expect, rel=1e-15)
    assert [t[0][0] for t in report.trials] == report.starts  # first trial = start
    assert report.mean_lr == pytest.approx(sum(report.per_batch) / 6, rel=1e-15)


def test_upper_bound_grow_stops_at_lr_max():
    """A loss linear in w: Armijo holds for every eta, so the grow loop runs into lr_max."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    batches = [(torch.randn(8, 4, dtype=torch.float64), torch.zeros(8))] * 3

    def linear_loss(out, _):
        return out.mean()

    report = find_lr(model, linear_loss, batches, lr=1e-2, num_batches=3, rescale="none")
    largest = 1e-2 * 2**13  # 81.92 <= 100 < 163.84
    assert report.per_batch == [largest] * 3
    assert report.bound_hits == [True] * 3
    # One evaluation past the cap, then one step back (the code's behaviour).
    assert [t[-1][0] for t in report.trials] == [2 * largest] * 3


def test_lower_bound_and_stop_tol():
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)

    def steep(out, target):  # curvature ~1e6: Armijo needs eta ~1e-6
        return 1e6 * ((out - target) ** 2).mean()

    report = find_lr(model, steep, [(x, y)], lr=1e-1, num_batches=1, lr_min=1e-2,
                     lr_max=1.0, rescale="none")
    eta = report.per_batch[0]
    assert report.bound_hits == [True]
    assert BETA * 1e-2 <= eta < 1e-2  # code: the first value below lr_min is kept
    assert gap(report, 0, eta, dict(report.trials[0])[eta]) > 0  # ... without Armijo

    def flat(out, target):  # ||g||^2 tiny: eta ||g||^2 <= stop_tol at the first trial
        return 1e-6 * ((out - target) ** 2).mean()

    report = find_lr(model, flat, [(x, y)] * 4, lr=1e-2, num_batches=4, rescale="none")
    assert report.func_evals == 4 and report.bound_hits == [True] * 4
    assert report.per_batch == [1e-2] * 4


@pytest.mark.parametrize("rescale,factor", [("code", 0.1), ("none", 1.0)])
def test_rescale_factors(rescale, factor):
    assert rescale_factor(rescale, 1000, 10) == pytest.approx(factor, rel=1e-15)
    model = mlp()
    batches = make_batches(3)
    report = find_lr(model, LOSS, batches, lr=1e-2, num_batches=3, rescale=rescale,
                     dataset_size=1000, batch_size=10)
    assert report.scale == pytest.approx(factor, rel=1e-15)
    assert report.lr == report.mean_lr * report.scale
    # The first batch is searched at w0 whatever the rescaling: same eta.
    ref = find_lr(model, LOSS, batches, lr=1e-2, num_batches=1, rescale="none")
    assert report.per_batch[0] == ref.per_batch[0]


def test_sizes_inferred_from_dataloader_and_required_otherwise():
    model = mlp()
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    report = find_lr(model, LOSS, loader, num_batches=2)
    assert report.scale == pytest.approx(math.sqrt(16 / 64), rel=1e-15)
    with pytest.raises(ValueError, match="dataset_size"):
        find_lr(model, LOSS, list(loader), num_batches=2)
    with pytest.raises(ValueError, match="exceeds"):
        find_lr(model, LOSS, loader, num_batches=2, dataset_size=8, batch_size=16)


def test_walk_between_batches_uses_the_rescaled_eta():
    """After batch k the search moves to w_k - s eta_k g_k (the code's 'official update')."""
    model = mlp()
    batches = make_batches(2)
    report = find_lr(model, LOSS, batches, lr=1e-2, num_batches=2, **SIZES)
    ref = search_mode_copy(model)
    x, y = batches[0]
    grads = torch.autograd.grad(LOSS(ref(x), y), list(ref.parameters()))
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads, strict=True):
            p.add_(g, alpha=-report.per_batch[0] * report.scale)
    assert report.f0[1] == pytest.approx(loss_at(ref, *batches[1]), rel=1e-12)


def test_carry_start_bug_changes_the_second_search_start():
    model = mlp()
    batches = make_batches(3)
    fixed = MBTFinder(num_batches=3)
    a1 = fixed.find(model, LOSS, batches, lr=1e-2, **SIZES)
    a2 = fixed.find(model, LOSS, batches, lr=1e-2, **SIZES)
    assert a2.starts[0] == 1e-2 and a2.per_batch == a1.per_batch  # model unchanged

    buggy = MBTFinder(num_batches=3, carry_start_bug=True)
    b1 = buggy.find(model, LOSS, batches, lr=1e-2, **SIZES)
    b2 = buggy.find(model, LOSS, batches, lr=1e-2, **SIZES)
    assert b1.starts[0] == 1e-2
    assert b2.starts[0] == b1.per_batch[-1] * b1.scale != 1e-2


def test_trials_run_without_autograd_and_gradients_once_per_batch():
    model = mlp()
    modes = []
    model[0].register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
    report = find_lr(model, LOSS, make_batches(4), lr=1e-2, num_batches=4, **SIZES)
    assert report.grad_evals == 4 == modes.count(True)
    assert report.func_evals == modes.count(False) == sum(len(t) for t in report.trials)
    assert report.seconds > 0


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_consistent_layer_modes_during_search(bn_mode):
    model = mlp().eval()
    seen = {"bn": set(), "drop": set()}
    model[1].register_forward_hook(lambda m, *_: seen["bn"].add(m.training))
    model[3].register_forward_hook(lambda m, *_: seen["drop"].add(m.training))
    find_lr(model, LOSS, make_batches(2), num_batches=2, bn_mode=bn_mode, **SIZES)
    assert seen["bn"] == {bn_mode == "train"} and seen["drop"] == {False}
    assert not model.training and not model[1].training  # flags restored

    seen["drop"].clear()
    find_lr(model, LOSS, make_batches(2), num_batches=1, dropout_off=False, **SIZES)
    assert seen["drop"] == {True}


def test_short_loader_cycles_and_one_shot_iterator_stops(caplog):
    model = mlp()
    batches = make_batches(3)
    order = []
    model[0].register_forward_hook(
        lambda m, inp, out: order.append(next(i for i, b in enumerate(batches)
                                              if torch.equal(b[0], inp[0])))
        if torch.is_grad_enabled() else None)
    report = find_lr(model, LOSS, batches, num_batches=7, **SIZES)
    assert report.num_batches == 7 and order == [0, 1, 2, 0, 1, 2, 0]

    with caplog.at_level(logging.WARNING, logger="mbt.optim.mbt_finder"):
        report = find_lr(model, LOSS, iter(batches), num_batches=7, **SIZES)
    assert report.num_batches == 3 and "ran out" in caplog.text
    with pytest.raises(ValueError, match="no mini-batch"):
        find_lr(model, LOSS, [], num_batches=2, **SIZES)


@pytest.mark.parametrize("kwargs", [
    {"num_batches": 0}, {"num_batches": 2.0}, {"alpha": 1.0}, {"alpha": 0.0}, {"beta": 1.5},
    {"lr_min": 1.0, "lr_max": 0.5}, {"lr_min": -1.0}, {"stop_tol": -1.0},
    {"rescale": "linear"}, {"bn_mode": "frozen"}, {"carry_start_bug": 1},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        MBTSearchConfig(**kwargs)


def test_find_argument_validation():
    model = mlp()
    batches = make_batches(1)
    for lr in (0.0, 1e-7, 1e3, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            find_lr(model, LOSS, batches, lr=lr, **SIZES)
    with pytest.raises(ValueError, match="pairs"):
        find_lr(model, LOSS, [torch.zeros(8, 6)], **SIZES)
    with pytest.raises(ValueError, match="scalar"):
        find_lr(model, nn.CrossEntropyLoss(reduction="none"), batches, **SIZES)
    with pytest.raises(ValueError, match="alpha"):
        MBTFinder().find(model, LOSS, batches, alpha=2.0, **SIZES)


# ---------------------------------------------------------------- the epoch policy


def fake_epoch(model, optimizer, batches):
    """A couple of real SGD steps, so momentum buffers exist."""
    model.train()
    for x, y in batches[:2]:
        optimizer.zero_grad()
        LOSS(model(x), y).backward()
        optimizer.step()


def run_epochs(variant, losses, accs, **kw):
    model = mlp()
    batches = make_batches(3)
    opt, ctrl = build_mbt(variant, model.parameters(), lr=1e-2, num_batches=2, **kw)
    searched, cleared = [], []
    for epoch, (loss, acc) in enumerate(zip(losses, accs, strict=True)):
        report = ctrl.on_epoch_start(epoch, model, LOSS, batches, **SIZES)
        searched.append(report is not None)
        if report is not None:
            cleared.append(len(opt.state) == 0)
            assert all(g["lr"] == report.lr for g in opt.param_groups)
        fake_epoch(model, opt, batches)
        ctrl.on_epoch_end(loss, acc)
    return model, opt, ctrl, searched, cleared


IMPROVING = ([3.0, 2.0, 1.0], [10.0, 20.0, 30.0])


@pytest.mark.parametrize("variant,momentum,nesterov", [("mmt", 0.9, False), ("nag", 0.9, True)])
def test_mmt_nag_search_every_epoch_and_clear_momentum(variant, momentum, nesterov):
    _, opt, ctrl, searched, cleared = run_epochs(variant, *IMPROVING)
    assert searched == [True, True, True] and all(cleared)
    assert ctrl.num_searches == 3 and ctrl.last_search_epoch == 2
    assert opt.param_groups[0]["momentum"] == momentum
    assert opt.param_groups[0]["nesterov"] is nesterov
    assert opt.param_groups[0]["weight_decay"] == 0
    assert ctrl.last_report.alpha == ALPHA


@pytest.mark.parametrize("variant", ["mmt", "nag"])
def test_reset_momentum_false_keeps_the_buffers_across_searches(variant):
    _, opt, ctrl, searched, cleared = run_epochs(variant, *IMPROVING, reset_momentum=False)
    assert searched == [True, True, True]
    assert cleared == [True, False, False]  # none before the first epoch, then kept
    assert all("momentum_buffer" in s for s in opt.state.values())
    assert ctrl.reset_momentum is False
    with pytest.raises(ValueError, match="reset_momentum"):
        build_mbt(variant, mlp().parameters(), reset_momentum="no")


def test_gd_searches_once():
    _, opt, ctrl, searched, _ = run_epochs("gd", *IMPROVING)
    assert searched == [True, False, False]
    assert opt.param_groups[0]["momentum"] == 0
    assert opt.param_groups[0]["lr"] == ctrl.last_report.lr


def test_plateau_switch_after_more_than_five_stalled_epochs():
    # Loss rises and accuracy is flat after epoch 0; both recover at epoch 9.
    losses = [1.0 + 0.1 * e for e in range(9)] + [0.5, 0.6]
    accs = [50.0] * 9 + [60.0, 60.0]
    _, opt, ctrl, searched, _ = run_epochs("gd", losses, accs)
    # Patience at the start of epoch e is e - 1 (e >= 1): > 5 from epoch 7 on; after
    # epoch 9 improved, epoch 10 starts with patience 0 and GD stops searching.
    assert searched == [True] + [False] * 6 + [True, True, True, False]
    assert ctrl.plateaued and ctrl.alpha == 0.5 and ctrl.last_report.alpha == 0.5
    assert opt.param_groups[0]["momentum"] == 0  # sticky: stays after the recovery

    _, opt, ctrl, searched, cleared = run_epochs("nag", losses[:8], accs[:8])
    assert all(searched) and all(cleared)
    assert ctrl.plateaued and ctrl.last_report.alpha == 0.5
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[0]["nesterov"] is False

    _, _, ctrl, _, _ = run_epochs("mmt", losses[:7], accs[:7])  # patience 5 at epoch 6
    assert not ctrl.plateaued and ctrl.last_report.alpha == ALPHA


def test_improvement_rules_and_early_stop():
    model = mlp()
    _, ctrl = build_mbt("mmt", model.parameters(), early_stop_patience=2)
    ctrl.on_epoch_end(1.0, 0.0)  # accuracy 0 is no gain over the code's best_acc = 0
    assert (ctrl.epochs_no_loss_gain, ctrl.epochs_no_acc_gain) == (0, 1)
    ctrl.on_epoch_end(1.0, 5.0)  # an equal loss counts as a gain (code: loss > best)
    assert (ctrl.epochs_no_loss_gain, ctrl.epochs_no_acc_gain) == (0, 0)
    for _ in range(2):
        ctrl.on_epoch_end(float("nan"), 5.0)
    assert (ctrl.epochs_no_loss_gain, ctrl.epochs_no_acc_gain) == (2, 2)
    assert not ctrl.should_stop  # the code reads patience at the next epoch start
    ctrl.patience = min(ctrl.epochs_no_loss_gain, ctrl.epochs_no_acc_gain)
    assert ctrl.should_stop
    _, ctrl = build_mbt("gd", model.parameters())
    ctrl.patience = 10**6
    assert not ctrl.should_stop  # off by default
    ctrl.on_epoch_end(2.0)  # no test accuracy: the loss alone decides
    ctrl.on_epoch_end(3.0)
    assert ctrl.epochs_no_acc_gain == ctrl.epochs_no_loss_gain == 1


def test_controller_state_dict_round_trip_resumes_exactly():
    losses = [1.0 + 0.1 * e for e in range(8)]
    model, opt, ctrl, _, _ = run_epochs("nag", losses, [50.0] * 8, carry_start_bug=True)
    buf = io.BytesIO()
    torch.save({"ctrl": ctrl.state_dict(), "opt": opt.state_dict(),
                "model": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    model2 = mlp()
    model2.load_state_dict(ckpt["model"])
    opt2, ctrl2 = build_mbt("nag", model2.parameters(), lr=1e-2, num_batches=2,
                            carry_start_bug=True)
    ctrl2.load_state_dict(ckpt["ctrl"])
    opt2.load_state_dict(ckpt["opt"])
    assert ctrl2.state_dict() == ctrl.state_dict()
    assert isinstance(ctrl2.last_report, SearchReport)
    assert opt2.param_groups[0]["momentum"] == 0  # plateau switch re-applied

    batches = make_batches(3, seed=5)
    r1 = ctrl.on_epoch_start(8, model, LOSS, batches, **SIZES)
    r2 = ctrl2.on_epoch_start(8, model2, LOSS, batches, **SIZES)
    assert r1.starts == r2.starts and r1.per_batch == r2.per_batch and r1.lr == r2.lr
    assert r1.starts[0] != 1e-2  # the carried start came back from the checkpoint
    s1, s2 = ctrl.state_dict(), ctrl2.state_dict()
    s1["last_report"].pop("seconds"), s2["last_report"].pop("seconds")  # wall time differs
    assert s1 == s2
    with pytest.raises(ValueError, match="variant"):
        build_mbt("gd", mlp().parameters())[1].load_state_dict(ctrl.state_dict())


def test_controller_validation():
    params = list(mlp().parameters())
    with pytest.raises(ValueError, match="variant"):
        build_mbt("adam", params)
    with pytest.raises(ValueError, match="SGD"):
        MBTController(torch.optim.Adam(params), "gd")
    with pytest.raises(ValueError, match="gd"):
        MBTController(torch.optim.SGD(params, lr=0.1, momentum=0.9), "gd")
    with pytest.raises(ValueError, match="nag"):
        MBTController(torch.optim.SGD(params, lr=0.1, momentum=0.9), "nag")
    with pytest.raises(ValueError, match="mmt"):
        MBTController(torch.optim.SGD(params, lr=0.1), "mmt")
    with pytest.raises(ValueError, match="plateau_patience"):
        build_mbt("mmt", params, plateau_patience=-1)
    with pytest.raises(ValueError, match="lr"):
        build_mbt("mmt", params, lr=1e3)
    with pytest.raises(ValueError):
        build_mbt("mmt", params, rescale="bogus")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_is_exact_and_syncs_once_per_evaluation():
    import warnings

    model = convnet(torch.float32).cuda()
    batches = make_batches(4, shape=(2, 5, 5), dtype=torch.float32)
    before = snapshot(model)
    find_lr(model, LOSS, batches, num_batches=4, **SIZES)  # warm-up
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            report = find_lr(model, LOSS, batches, num_batches=4, **SIZES)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert_bit_identical(before, model)
    # One sync per mini-batch (f0 and ||g||^2 together) and one per trial, at most.
    assert len(syncs) <= report.grad_evals + report.func_evals


def test_text_rescale_is_gone_because_text_and_code_agree():
    # Sec. 3.5.1's "rho = k/N" is a typo for N/k (docs/fidelity.md): no separate mode.
    from mbt.optim.mbt_finder import rescale_factor

    with pytest.raises(ValueError, match="Invalid rescale"):
        rescale_factor("text", 50000, 200)
    assert rescale_factor("code", 50000, 200) == pytest.approx((200 / 50000) ** 0.5)


def test_bn_slices_evaluate_batchnorm_per_slice_like_dataparallel():
    """bn_slices=k: each trial's forward normalises over batch/k images (DataParallel on k
    GPUs); a model without BatchNorm gives the same search either way."""
    from mbt.optim.mbt_finder import _forward

    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    x = torch.randn(16, 4)
    whole, sliced = _forward(bn, x, 1), _forward(bn, x, 2)
    halves = torch.cat([bn(x[:8]), bn(x[8:])])
    assert torch.equal(sliced, halves) and not torch.allclose(whole, sliced)
    batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(3)]
    plain = nn.Sequential(nn.Linear(4, 3))
    a = find_lr(plain, LOSS, batches, lr=1e-2, num_batches=3, rescale="none")
    b = find_lr(plain, LOSS, batches, lr=1e-2, num_batches=3, rescale="none", bn_slices=4)
    assert a.per_batch == b.per_batch
    with pytest.raises(ValueError, match="bn_slices"):
        find_lr(plain, LOSS, batches, lr=1e-2, bn_slices=0)


def test_search_shows_per_batch_progress_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    model = nn.Sequential(nn.Linear(4, 3))
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    find_lr(model, LOSS, batches, lr=1e-2, num_batches=3, rescale="none")
    assert "MBT search" in tty.getvalue() and "3/3" in tty.getvalue()
    quiet = io.StringIO()  # not a terminal: no bar (find() logs one summary line)
    monkeypatch.setattr("sys.stderr", quiet)
    find_lr(model, LOSS, batches, lr=1e-2, num_batches=3, rescale="none")
    assert "MBT search" not in quiet.getvalue()


def test_search_logs_a_progress_line_every_few_batches_without_a_terminal(caplog):
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    model = nn.Sequential(nn.Linear(4, 3))
    with caplog.at_level(logging.INFO, logger="mbt.optim.mbt_finder"):
        report = find_lr(model, LOSS, batches, lr=1e-2, num_batches=12, rescale="none")
    progress = [r.getMessage() for r in caplog.records
                if "mini-batches, mean eta" in r.getMessage()]
    assert [m.split(",")[0] for m in progress] == ["MBT search: 5/12 mini-batches",
                                                   "MBT search: 10/12 mini-batches"]
    assert f"mean eta so far {sum(report.per_batch[:5]) / 5:.4g} (" in progress[0]
