"""Hand-checked cases for SLS (Vaswani et al. 2019), the LR-range test and the auto-lr configs."""

from __future__ import annotations

import copy
import importlib
import logging
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mbt.config_paths import CONF_DIR
from mbt.optim import SLS, BacktrackingGD
from mbt.optim.factory import build_optimizer
from mbt.optim.lr_range import (
    LRRangeController,
    build_lr_range_sgd,
    lr_range_test,
    suggest_lr,
)
from mbt.optim.step_size import step_size
from quadratic import Quadratic, grid_answer, sin_quadratic

DTYPES = [torch.float32, torch.float64]


# -- SLS ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a,c,beta,lr0", [(3.0, 0.1, 0.9, 1.0), (10.0, 0.5, 0.5, 1.0),
                                          (0.5, 0.1, 0.9, 1.0)])
def test_sls_first_step_closed_form(dtype, a, c, beta, lr0):
    q = Quadratic(L=a, dtype=dtype)
    opt = SLS([q.x], lr=lr0, c=c, beta=beta, n_batches_per_epoch=4)
    opt.step(q.closure)
    expected, k = grid_answer(lr0, beta, 2 * (1 - c) / a)
    last = opt.last_search
    assert last["start"] == lr0  # paper: the reset returns eta_max at k = 0
    assert last["lr"] == pytest.approx(expected, rel=1e-12)
    assert last["shrinks"] == k and last["func_evals"] == k + 2
    assert q.x.item() == pytest.approx(1 - expected * a, rel=1e-6)
    # The first step is plain Backtracking GD (Armijo's rule) with alpha = c.
    q2 = Quadratic(L=a, dtype=dtype)
    ref = BacktrackingGD([q2.x], lr=lr0, alpha=c, beta=beta)
    ref.step(q2.closure)
    assert torch.equal(q.x, q2.x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sls_grow_reset_then_backtracks(dtype):
    # a = 3, c = 0.1: threshold 0.6. Step 1: 0.9^5 = 0.59049. Step 2 starts at
    # 0.59049 * 2^(1/4) = 0.702 (fails), 0.632 (fails), 0.569 (passes).
    q = Quadratic(L=3.0, dtype=dtype)
    opt = SLS([q.x], lr=1.0, c=0.1, beta=0.9, gamma=2.0, n_batches_per_epoch=4)
    opt.step(q.closure)
    first = opt.last_search["lr"]
    opt.step(q.closure)
    start = first * 2.0**0.25
    assert opt.last_search["start"] == pytest.approx(start, rel=1e-12)
    assert opt.last_search["lr"] == pytest.approx(start * 0.9**2, rel=1e-12)
    assert opt.search_state["step_size"] == opt.last_search["lr"]


def test_sls_grow_reset_multiplies_by_gamma_to_the_b_over_n():
    # A flat quadratic accepts every first trial, so eta_k = lr * gamma^(k / n).
    q = Quadratic(L=0.01)
    opt = SLS([q.x], lr=1.0, gamma=2.0, n_batches_per_epoch=4)
    for k in range(9):
        opt.step(q.closure)
        assert opt.last_search["lr"] == pytest.approx(2.0 ** (k / 4), rel=1e-12)
        assert opt.last_search["func_evals"] == 2
    assert opt.search_state["func_evals"] == 18 and opt.search_state["grad_evals"] == 9


@pytest.mark.parametrize("reset,second_start", [("keep", 0.59049), ("max", 1.0)])
def test_sls_keep_and_max_resets(reset, second_start):
    q = Quadratic(L=3.0)
    opt = SLS([q.x], lr=1.0, c=0.1, beta=0.9, reset=reset)
    opt.step(q.closure)
    opt.step(q.closure)
    assert opt.last_search["start"] == pytest.approx(second_start, rel=1e-12)
    assert opt.last_search["lr"] == pytest.approx(0.59049, rel=1e-12)


def test_sls_missing_batches_per_epoch_falls_back_to_code_default(caplog):
    q = Quadratic(L=0.01)
    opt = SLS([q.x], lr=1.0)
    with caplog.at_level(logging.WARNING, logger="mbt.optim.sls"):
        for _ in range(3):
            opt.step(q.closure)
    assert opt.last_search["lr"] == pytest.approx(2.0 ** (2 / 500), rel=1e-12)
    assert sum("n_batches_per_epoch" in r.message for r in caplog.records) == 1
    opt.param_groups[0]["n_batches_per_epoch"] = 2  # read lazily, at every step
    opt.step(q.closure)
    assert opt.last_search["lr"] == pytest.approx(2.0 ** (2 / 500) * 2.0**0.5, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_sls_step_satisfies_armijo(dtype):
    x, closure = sin_quadratic(dtype)
    c = 0.1
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    opt = SLS([x], lr=1.0, c=c, beta=0.9, n_batches_per_epoch=5)
    accepted = 0
    for _ in range(40):
        x0 = x.detach().clone()
        f0 = float(closure().detach())
        g = x.grad.detach().clone()
        opt.step(closure)
        last = opt.last_search
        if last["bound_hit"]:  # float32 near the minimum: f no longer resolves the decrease
            continue
        accepted += 1
        assert torch.equal(x.detach(), torch.add(x0, g, alpha=-last["lr"]))
        f1 = float(closure(backward=False).detach())
        g2 = float((g.double() ** 2).sum())
        assert f1 <= f0 - c * last["lr"] * g2 + tol * max(1.0, abs(f0))
    assert accepted >= 20


def test_sls_failed_search_takes_the_codes_tiny_step():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def closure(backward=True):  # a "gradient" of the wrong sign: no step passes
        f = -x.sum()
        if backward:
            x.grad = torch.ones_like(x)
        return f

    opt = SLS([x], lr=1.0, beta=0.5, max_trials=5, n_batches_per_epoch=4)
    opt.step(closure)
    last = opt.last_search
    assert last["bound_hit"] and last["lr"] == 1e-6 and math.isnan(last["f_new"])
    assert last["func_evals"] == 6
    assert torch.allclose(x.detach(), torch.full((3,), -1e-6, dtype=torch.float64))
    assert opt.search_state["step_size"] == 0.5**5  # the trial that would come next
    opt.step(closure)
    assert opt.last_search["start"] == pytest.approx(0.5**5 * 2.0**0.25, rel=1e-12)
    stay = SLS([x], lr=1.0, beta=0.5, max_trials=3, fail_lr=0.0, reset="max")
    before = x.detach().clone()
    stay.step(closure)
    assert torch.equal(x.detach(), before) and stay.last_search["lr"] == 0.0


def test_sls_zero_gradient_skips_the_search():
    q = Quadratic(x0=[0.0])
    opt = SLS([q.x], lr=1.0, n_batches_per_epoch=4)
    opt.step(q.closure)
    assert q.x.item() == 0.0 and opt.last_search["func_evals"] == 1
    assert opt.search_state["step_size"] == 1.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(c=0.0), "c"), (dict(c=1.0), "c"), (dict(beta=1.0), "beta"), (dict(lr=0.0), "lr"),
    (dict(gamma=0.5), "gamma"), (dict(reset="sometimes"), "reset"),
    (dict(n_batches_per_epoch=0), "n_batches_per_epoch"),
    (dict(n_batches_per_epoch=2.5), "n_batches_per_epoch"), (dict(fail_lr=-1.0), "fail_lr"),
    (dict(grad_tol=math.nan), "grad_tol"), (dict(max_trials=0), "max_trials"),
])
def test_sls_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"Invalid {match}"):
        SLS([torch.zeros(2, requires_grad=True)], **kwargs)


def test_sls_groups_must_share_the_search():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="share 'gamma'"):
        SLS([{"params": [a]}, {"params": [b], "gamma": 3.0}])


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g)
    y = X @ torch.randn(5, 1, generator=g) + 0.01 * torch.randn(64, 1, generator=g)
    return [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]


def _train_sls(model, opt, batches, epochs):
    for _ in range(epochs):
        for xb, yb in batches:
            def closure(backward=True, xb=xb, yb=yb):
                loss = nn.functional.mse_loss(model(xb), yb)
                if backward:
                    opt.zero_grad()
                    loss.backward()
                return loss

            opt.step(closure)


def test_sls_state_dict_round_trip():
    batches = _regression()
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    opt = SLS(model.parameters(), n_batches_per_epoch=4)
    _train_sls(model, opt, batches, 1)
    clone = copy.deepcopy(model)
    opt2 = SLS(clone.parameters(), n_batches_per_epoch=4)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.search_state["step_size"] == opt.search_state["step_size"]
    _train_sls(model, opt, batches, 1)
    _train_sls(clone, opt2, batches, 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), clone.parameters()))
    assert opt2.search_state["func_evals"] == opt.search_state["func_evals"]


def test_sls_trains_a_tiny_module():
    batches = _regression()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))

    def full_loss():
        with torch.no_grad():
            return sum(float(nn.functional.mse_loss(model(x), y)) for x, y in batches)

    before = full_loss()
    opt = SLS(model.parameters(), n_batches_per_epoch=len(batches))
    _train_sls(model, opt, batches, 5)
    assert full_loss() < 0.2 * before


# -- LR-range test ------------------------------------------------------------------


def _classification(n_batches=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(16 * n_batches, 4, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    return [(X[i:i + 16], y[i:i + 16]) for i in range(0, len(X), 16)]


def _sgd(momentum=0.9):
    return lambda params: torch.optim.SGD(params, lr=1.0, momentum=momentum)


def test_suggest_lr_hand_checked():
    lrs = [10.0**k for k in range(-5, 5)]
    smoothed = [1.0, 1.0, 1.0, 0.9, 0.5, 0.3, 0.28, 0.29, 2.0, 5.0]
    # Slopes per decade: 0, 0, -.1, -.4, -.2, -.02, .01, 1.71, 3 -> steepest at index 3.
    assert suggest_lr(lrs, smoothed, rule="steepest", skip_end=0) == lrs[3]
    assert suggest_lr(lrs, smoothed, rule="min_div10", skip_end=0) == pytest.approx(lrs[6] / 10)
    # fastai's trimming (first num_it // 10, last 5) and the cut at the first NaN.
    assert suggest_lr(lrs, smoothed, rule="min_div10") == pytest.approx(lrs[4] / 10)
    assert suggest_lr(lrs, smoothed, rule="min_div10", skip_start=7, skip_end=0) == lrs[7] / 10
    # Too few points left after trimming: the whole finite curve is used.
    assert suggest_lr(lrs, smoothed, rule="min_div10", skip_start=7) == pytest.approx(lrs[6] / 10)
    cut = smoothed[:4] + [math.nan] + smoothed[5:]
    assert suggest_lr(lrs, cut, rule="steepest", skip_end=0) == lrs[2]
    with pytest.raises(ValueError, match="finite"):
        suggest_lr(lrs[:2], [math.nan, 1.0])


def test_lr_range_test_restores_the_model_and_follows_the_schedule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_range_test(model, nn.CrossEntropyLoss(), _classification(), optimizer_factory=_sgd(),
                        lr_min=1e-4, lr_max=1.0, num_steps=30)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert len(res.lrs) == 30 and not res.stopped_early
    assert res.lrs == pytest.approx([1e-4 * 1e4 ** (i / 30) for i in range(30)], rel=1e-12)
    assert 1e-4 <= res.suggested_lr <= 1.0 and res.suggested_lr in res.lrs
    # Bias-corrected EMA, recomputed by hand.
    avg = 0.0
    for i, (loss, sm) in enumerate(zip(res.losses, res.smoothed)):
        avg = 0.98 * avg + 0.02 * loss
        assert sm == pytest.approx(avg / (1 - 0.98 ** (i + 1)), rel=1e-12)
    assert res.smoothed[0] == pytest.approx(res.losses[0])
    assert res.mean_lr == res.lr == res.suggested_lr and res.func_evals == 30


def test_lr_range_test_stops_on_divergence():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 4, generator=g)
    batches = [(X[i:i + 16], X[i:i + 16].sum(1, keepdim=True)) for i in range(0, 64, 16)]
    res = lr_range_test(model, nn.MSELoss(), batches, optimizer_factory=_sgd(0.0),
                        lr_min=1e-3, lr_max=1e3, num_steps=100, rule="min_div10")
    assert res.stopped_early and len(res.lrs) < 100
    last = res.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(res.smoothed)
    assert res.suggested_lr < 2.0 / 10  # below the divergence point of SGD on this loss


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr_min=1.0, lr_max=1.0), "range"), (dict(num_steps=1), "num_steps"),
    (dict(smooth=1.0), "smooth"), (dict(rule="valley"), "rule"),
    (dict(diverge_factor=1.0), "diverge_factor"),
])
def test_lr_range_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_range_test(nn.Linear(2, 1), nn.MSELoss(), [], optimizer_factory=_sgd(), **kwargs)


def test_lr_range_controller_hooks_and_resume():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    batches = _classification()
    opt, ctrl = build_lr_range_sgd(model.parameters(), lr=0.01, momentum=0.9, lr_min=1e-4,
                                   lr_max=10.0, num_steps=20)
    assert opt.param_groups[0]["momentum"] == 0.9 and not ctrl.should_stop
    report = ctrl.on_epoch_start(0, model, nn.CrossEntropyLoss(), batches,
                                 dataset_size=96, batch_size=16)
    assert opt.param_groups[0]["lr"] == report.lr and report.func_evals == len(report.lrs)
    assert report.seconds >= 0 and ctrl.last_report is report
    ctrl.on_epoch_end(1.0, 50.0)
    assert ctrl.on_epoch_start(1, model, nn.CrossEntropyLoss(), batches) is None
    opt2, ctrl2 = build_lr_range_sgd(model.parameters(), lr=0.01)
    ctrl2.load_state_dict(copy.deepcopy(ctrl.state_dict()))
    assert opt2.param_groups[0]["lr"] == report.lr and ctrl2.last_report == report
    assert ctrl2.on_epoch_start(1, model, nn.CrossEntropyLoss(), batches) is None
    with pytest.raises(ValueError, match="optimizer_factory"):
        LRRangeController(torch.optim.Adam(model.parameters()))


# -- configs ------------------------------------------------------------------------

# config name -> module its builder needs (None: this package only)
NEW_CONFIGS = {
    "sls": None, "lr_range_sgd": None, "prodigy": "prodigyopt", "dadapt_sgd": "dadaptation",
    "dadapt_adam": "dadaptation", "sgd_schedulefree": "schedulefree",
    "adamw_schedulefree": "schedulefree", "dog": "dog",
}


@pytest.mark.parametrize("name", sorted(NEW_CONFIGS))
def test_new_optim_config_builds_and_steps(name):
    if NEW_CONFIGS[name]:
        pytest.importorskip(NEW_CONFIGS[name])
    cfg = OmegaConf.load(CONF_DIR / "optim" / f"{name}.yaml")
    assert cfg.name == name
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer, controller = build_optimizer(cfg, model.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr)
    assert isinstance(controller, LRRangeController) == (name == "lr_range_sgd")
    loss_fn = nn.CrossEntropyLoss()
    batches = _classification(n_batches=2)
    controller.prepare(batches)
    controller.on_epoch_start(0, model, loss_fn, batches)
    controller.train_mode()  # schedule-free: the y-sequence for steps
    x, y = batches[0]

    def closure(backward=True):
        loss = loss_fn(model(x), y)
        if backward:
            optimizer.zero_grad()
            loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step(closure)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if callable(getattr(optimizer, "eval", None)):
        optimizer.eval()  # schedule-free: x-sequence for evaluation and checkpoints
    importlib.import_module(cfg.builder._target_.rsplit(".", 1)[0])


def _one_step(name: str):
    cfg = OmegaConf.load(CONF_DIR / "optim" / f"{name}.yaml")
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer, _ = build_optimizer(cfg, model.parameters())
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()
    x, y = _classification(n_batches=1)[0]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    optimizer.step()
    return optimizer, before, grads, list(model.parameters())


def test_step_size_is_dogs_actual_step():
    pytest.importorskip("dog")
    optimizer, before, grads, after = _one_step("dog")
    eta = step_size(optimizer)
    # DoG's update is p -= eta * g: the logged step must be that eta, not the lr (1.0).
    for b, g, a in zip(before, grads, after):
        torch.testing.assert_close(b - a, eta * g.to(b.dtype), rtol=1e-4, atol=1e-7)
    assert eta != optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("name", ["prodigy", "dadapt_sgd", "dadapt_adam"])
def test_step_size_of_d_adapted_methods_is_d_times_lr(name):
    pytest.importorskip(NEW_CONFIGS[name])
    optimizer, *_ = _one_step(name)
    group = optimizer.param_groups[0]
    # They start from d0 = 1e-6 with lr = 1: the group lr says 1, the step is tiny.
    assert step_size(optimizer) == pytest.approx(group["d"] * group["lr"])
    assert 0 < step_size(optimizer) < 1e-3 < group["lr"]


def test_step_size_of_schedule_free_follows_its_warmup():
    pytest.importorskip("schedulefree")
    import schedulefree

    model = nn.Linear(4, 3)
    optimizer = schedulefree.SGDScheduleFree(model.parameters(), lr=0.5, warmup_steps=4)
    optimizer.train()
    x, y = _classification(n_batches=1)[0]
    for k in range(1, 3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        assert step_size(optimizer) == pytest.approx(0.5 * k / 4)


def test_every_optimizer_gets_the_controller_it_needs():
    """The loop calls one interface; the factory picks the adapter (no name checks)."""
    from mbt.optim import EpochController, ModeSwitchController, SLSController, controller_for

    w = [torch.zeros(3, requires_grad=True)]
    sgd = torch.optim.SGD(w, lr=0.1)
    assert type(controller_for(sgd)) is EpochController
    sls = SLS(w, lr=1.0)
    ctl = controller_for(sls)
    assert isinstance(ctl, SLSController)
    ctl.prepare([0] * 7)  # a loader of 7 batches
    assert sls.param_groups[0]["n_batches_per_epoch"] == 7
    schedulefree = pytest.importorskip("schedulefree")
    sf = schedulefree.SGDScheduleFree(w, lr=0.1)
    ctl = controller_for(sf)
    assert isinstance(ctl, ModeSwitchController)
    ctl.eval_mode()
    assert not sf.param_groups[0]["train_mode"]
    ctl.train_mode()
    assert sf.param_groups[0]["train_mode"]
