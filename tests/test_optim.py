"""Hand-checked cases for the backtracking optimizers (paper Sec. 2.1, 3.1, 3.3, 3.4)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mbt.optim import (
    BacktrackingGD,
    BacktrackingMomentum,
    BacktrackingNAG,
    InexactBacktrackingGD,
    TwoWayBacktrackingGD,
    UnboundedBacktrackingGD,
    armijo_search,
    make_closure,
)
from mbt.optim.backtracking import condition_i
from quadratic import Quadratic, grid_answer, sin_quadratic


@pytest.mark.parametrize("L,alpha,beta,lr0", [(10.0, 0.5, 0.5, 1.0), (3.0, 0.4, 0.7, 5.0),
                                               (0.5, 1e-4, 0.5, 1.0)])
def test_backtracking_closed_form_on_quadratic(L, alpha, beta, lr0):
    q = Quadratic([1.0, -2.0], L=L)
    opt = BacktrackingGD([q.x], lr=lr0, alpha=alpha, beta=beta)
    opt.step(q.closure)
    expected, _ = grid_answer(lr0, beta, 2 * (1 - alpha) / L)
    assert opt.last_search["lr"] == pytest.approx(expected, rel=1e-12)
    # The point moved by exactly that step: x1 = x0 (1 - lr L).
    assert torch.allclose(q.x.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64)
                          * (1 - expected * L))
    n_shrinks = round(math.log(lr0 / expected) / math.log(1 / beta))
    assert opt.last_search["func_evals"] == n_shrinks + 2  # f0 + one per tried step


def test_two_way_shrinks_then_grows_back_to_lr0_but_not_past():
    q = Quadratic([1.0], L=10.0)
    opt = TwoWayBacktrackingGD([q.x], lr=1.0, alpha=0.4, beta=0.5)
    opt.step(q.closure)  # threshold 0.12 -> 1, .5, .25, .125 fail; 0.0625 passes
    assert opt.last_search["lr"] == 0.0625
    assert opt.last_search["shrinks"] == 4
    q.L = 0.9  # threshold 1.33: start at 0.0625 and grow, capped by lr0 = 1
    opt.step(q.closure)
    assert opt.last_search["start"] == 0.0625
    assert opt.last_search["lr"] == 1.0
    assert opt.last_search["grows"] == 4
    q.L = 10.0 / 3  # threshold 0.36: start at 1 (previous), shrink to 0.25
    opt.step(q.closure)
    assert opt.last_search["lr"] == 0.25


def test_two_way_start_fails_then_stays_without_grow():
    q = Quadratic([1.0], L=10.0)
    opt = TwoWayBacktrackingGD([q.x], lr=1.0, alpha=0.4, beta=0.5)
    opt.step(q.closure)
    opt.step(q.closure)  # 0.0625 passes, 0.125 fails -> stays, 2 trial evaluations
    assert opt.last_search["lr"] == 0.0625
    assert opt.last_search["grows"] == 0 and opt.last_search["func_evals"] == 3


def test_unbounded_grows_past_lr0_up_to_h():
    # L = 0.1, alpha = 0.4: Armijo threshold 12. ||g|| = 0.1 so h = 1/sqrt(0.1) = 3.16.
    q = Quadratic([1.0], L=0.1)
    opt = UnboundedBacktrackingGD([q.x], lr=1.0, alpha=0.4, beta=0.5)
    opt.step(q.closure)
    assert opt.last_search["lr"] == 2.0  # 4 > h(0.1)
    q2 = Quadratic([1.0], L=0.1)
    opt2 = UnboundedBacktrackingGD([q2.x], lr=1.0, alpha=0.4, beta=0.5, h=lambda t, lr0: 1e9)
    opt2.step(q2.closure)
    assert opt2.last_search["lr"] == 8.0  # 16 > 12 fails Armijo
    # Large gradient: h = lr0, so no growth at all.
    q3 = Quadratic([100.0], L=0.1)
    opt3 = UnboundedBacktrackingGD([q3.x], lr=1.0, alpha=0.4, beta=0.5)
    opt3.step(q3.closure)
    assert opt3.last_search["lr"] == 1.0


def test_unbounded_shrinks_like_backtracking_when_lr0_fails():
    q = Quadratic([1.0], L=10.0)
    opt = UnboundedBacktrackingGD([q.x], lr=1.0, alpha=0.4, beta=0.5)
    opt.step(q.closure)
    assert opt.last_search["lr"] == 0.0625


def test_search_is_bounded_and_never_ascends():
    # A "gradient" pointing uphill: no step can pass Armijo, the search must give up.
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def closure(backward=True):
        f = -x.sum()
        if backward:
            x.grad = torch.ones_like(x)  # wrong sign on purpose
        return f

    opt = BacktrackingGD([x], lr=1.0, beta=0.5, max_trials=7)
    opt.step(closure)
    last = opt.last_search
    assert last["bound_hit"] and last["lr"] == 0.0 and last["func_evals"] == 8
    assert torch.equal(x.detach(), torch.zeros(3, dtype=torch.float64))
    assert opt.search_state["bound_hits"] == 1
    # min_lr bound: 1, .5, .25 then 0.125 < 0.2 stops the loop.
    res = armijo_search(lambda lr: 1.0, 0.0, 1.0, 1.0, alpha=0.5, beta=0.5, min_lr=0.2)
    assert res.bound_hit and res.lr == 0.0 and res.evals == 3


def test_grow_bound_keeps_last_accepted_step():
    res = armijo_search(lambda lr: -1e9, 0.0, 1.0, 1.0, alpha=0.5, beta=0.5, grow=True,
                        max_trials=4)
    assert res.bound_hit and res.lr == 8.0 and res.grows == 3


def test_nonfinite_trial_is_rejected():
    res = armijo_search(lambda lr: math.nan if lr > 0.3 else -1.0, 0.0, 1.0, 1.0,
                        alpha=0.5, beta=0.5)
    assert res.lr == 0.25


@pytest.mark.parametrize("mode", ["standard", "two_way", "unbounded"])
def test_every_accepted_step_satisfies_armijo(mode):
    x, closure = sin_quadratic()

    opt = BacktrackingGD([x], lr=1.0, alpha=0.3, beta=0.6, mode=mode)
    for _ in range(50):
        f0 = float(closure().detach())
        g2 = float((x.grad**2).sum())
        opt.step(closure)
        lr = opt.last_search["lr"]
        f1 = float(closure(backward=False).detach())
        assert f1 - f0 <= -0.3 * lr * g2 + 1e-12


def reference_backtracking(f_grad, z, iters, lr0=1.0, alpha=0.5, beta=0.7):
    """The paper's Backtracking GD written out with Python floats, for comparison."""
    for _ in range(iters):
        f0, g = f_grad(z)
        g2 = sum(gi * gi for gi in g)
        k = 0
        while True:
            lr = lr0 * beta**k
            trial = [zi - lr * gi for zi, gi in zip(z, g)]
            if f_grad(trial)[0] - f0 <= -alpha * lr * g2:
                break
            k += 1
        z = trial
    return z


def test_matches_reference_implementation_for_100_steps():
    def f_grad(z):
        return sum(v**4 for v in z), [4 * v**3 for v in z]

    expected = reference_backtracking(f_grad, [0.1, 15.0], 100)
    q = Quadratic([0.1, 15.0])
    x = q.x

    def closure(backward=True):
        if backward:
            x.grad = None
        f = (x**4).sum()
        if backward:
            f.backward()
        return f

    opt = BacktrackingGD([x], lr=1.0, alpha=0.5, beta=0.7)
    for _ in range(100):
        opt.step(closure)
    assert torch.allclose(x.detach(), torch.tensor(expected, dtype=torch.float64),
                          rtol=1e-12, atol=0)


def test_inexact_uses_a_valid_direction_and_replaces_an_invalid_one():
    assert condition_i(1.0, 1.0, 1.0, 0.5, 2.0, 0.5)
    assert not condition_i(1.0, 3.0, 3.0, 0.5, 2.0, 0.5)  # too long
    assert not condition_i(1.0, 1.0, 0.1, 0.5, 2.0, 0.5)  # angle too wide
    q = Quadratic([1.0, 1.0], L=1.0)
    scale = torch.tensor([1.0, 0.8], dtype=torch.float64)  # a mild preconditioner
    opt = InexactBacktrackingGD([q.x], lr=1.0, alpha=0.4, beta=0.5,
                                direction=lambda g, p: [g[0] * scale])
    opt.step(q.closure)
    assert opt.search_state["condition_i_failures"] == 0
    assert torch.allclose(q.x.detach(), torch.tensor([0.0, 0.2], dtype=torch.float64))
    bad = InexactBacktrackingGD([q.x], lr=1.0, direction=lambda g, p: [-g[0]])
    bad.step(q.closure)  # ascent direction: falls back to the gradient
    assert bad.search_state["condition_i_failures"] == 1 and bad.last_search["lr"] > 0
    q = Quadratic([1.0, 1.0], L=1.0)
    strict = InexactBacktrackingGD([q.x], direction=lambda g, p: [-g[0]], on_violation="raise")
    with pytest.raises(ValueError, match="condition \\(i\\)"):
        strict.step(q.closure)


@pytest.mark.parametrize("cls", [BacktrackingMomentum, BacktrackingNAG])
def test_momentum_steps_satisfy_condition_i_and_armijo(cls):
    torch.manual_seed(1)
    H = torch.diag(torch.tensor([1.0, 10.0, 0.3], dtype=torch.float64))
    x = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)

    def closure(backward=True):
        if backward:
            x.grad = None
        f = 0.5 * x @ H @ x
        if backward:
            f.backward()
        return f

    opt = cls([x], lr=1.0, momentum=0.9, alpha=0.3, beta=0.5, A1=0.5, A2=2.0, mu=0.5)
    f_start = float(closure(backward=False).detach())
    for _ in range(30):
        x_before = x.detach().clone()
        f0 = float(closure().detach())
        g = x.grad.detach().clone()
        opt.step(closure)
        last = opt.last_search
        v = x_before - x.detach()  # v_n = (sigma delta') w, and w satisfies (i)
        if last["lr"] > 0:
            w = v / last["lr"]
            assert condition_i(float(g.norm()), float(w.norm()), float(g @ w), 0.5, 2.0, 0.5)
            assert float(closure(backward=False)) - f0 <= -0.3 * last["lr"] * float(g @ w) + 1e-12
        assert torch.allclose(opt.state[x]["momentum_buffer"], v)
    # sigma scales gamma too (gamma_n = sigma gamma'), so progress is modest but sure.
    assert float(closure(backward=False)) < 0.05 * f_start
    if cls is BacktrackingNAG:
        assert opt.search_state["grad_evals"] > 30  # look-ahead gradients were taken


def test_momentum_shrinks_gamma_when_the_direction_is_too_long():
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    q = Quadratic([1.0], L=1.0)
    x = q.x
    opt = BacktrackingMomentum([x], lr=0.1, momentum=0.9, alpha=0.1, beta=0.5,
                               A1=0.5, A2=1.5, mu=0.5)
    opt.state[x]["momentum_buffer"] = torch.tensor([1.0], dtype=torch.float64)
    opt.step(q.closure)
    # w = g + (gamma'/lr0) m = 1 + 9 gamma' must be <= 1.5: gamma' = 0.9 * 0.5^k <= 1/18.
    gamma_prime = opt.last_search["momentum"] / (opt.last_search["lr"] / 0.1)
    assert gamma_prime == pytest.approx(0.9 * 0.5**5)  # 0.05625 > 1/18 still fails


def test_momentum_zero_reduces_to_backtracking_gd():
    q1, q2 = Quadratic([1.0, -3.0], L=4.0), Quadratic([1.0, -3.0], L=4.0)
    a = BacktrackingMomentum([q1.x], lr=1.0, momentum=0.0)
    b = BacktrackingGD([q2.x], lr=1.0)
    for _ in range(10):
        a.step(q1.closure)
        b.step(q2.closure)
    assert torch.equal(q1.x, q2.x)


ALL = [
    lambda p: BacktrackingGD(p, lr=1.0, alpha=1e-4, beta=0.5),
    lambda p: TwoWayBacktrackingGD(p, lr=1.0, alpha=1e-4, beta=0.5),
    lambda p: UnboundedBacktrackingGD(p, lr=1.0, alpha=1e-4, beta=0.5),
    lambda p: InexactBacktrackingGD(p, lr=1.0, alpha=1e-4, beta=0.5),
    lambda p: BacktrackingMomentum(p, lr=1.0, alpha=1e-4, beta=0.5),
    lambda p: BacktrackingNAG(p, lr=1.0, alpha=1e-4, beta=0.5),
]
IDS = ["bt", "two_way", "unbounded", "inexact", "mmt", "nag"]


@pytest.mark.parametrize("make", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_training_loss_decreases(make, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model = model.to(dtype)
    x, y = torch.randn(64, 8, dtype=dtype), torch.randint(0, 3, (64,))
    opt = make(model.parameters())
    closure = make_closure(model, nn.functional.cross_entropy, x, y)
    model.eval()  # full-batch f must be one deterministic function (Remark 3.10)
    first = float(closure(backward=False))
    for _ in range(15):
        opt.step(closure)
    assert all(p.dtype == dtype for p in model.parameters())
    assert float(closure(backward=False)) < 0.9 * first


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_state_dict_round_trip_continues_identically(make):
    def setup():
        torch.manual_seed(0)
        model = nn.Linear(5, 1).double()
        return model, make(model.parameters())

    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    loss = nn.functional.mse_loss
    m1, o1 = setup()
    for _ in range(3):
        o1.step(make_closure(m1, loss, x, y))
    saved = o1.state_dict()
    m2, o2 = setup()
    m2.load_state_dict(m1.state_dict())
    o2.load_state_dict(saved)
    assert o2.search_state["func_evals"] == o1.search_state["func_evals"] > 0
    for _ in range(3):
        o1.step(make_closure(m1, loss, x, y))
        o2.step(make_closure(m2, loss, x, y))
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_plain_closure_without_backward_keyword_works():
    q = Quadratic([2.0], L=10.0)
    opt = BacktrackingGD([q.x], lr=1.0, alpha=0.5, beta=0.5)
    opt.step(lambda: q.closure())
    assert opt.last_search["lr"] == 0.0625


def test_param_groups_share_one_search_and_scale_the_direction():
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)

    def closure(backward=True):
        if backward:
            a.grad = b.grad = None
        f = 0.5 * (a**2 + b**2).sum()
        if backward:
            f.backward()
        return f

    opt = BacktrackingGD([{"params": [a]}, {"params": [b], "lr_scale": 0.0}], lr=1.0, beta=0.5)
    opt.step(closure)
    assert a.item() == 0.0 and b.item() == 1.0  # frozen group did not move
    with pytest.raises(ValueError, match="must share 'alpha'"):
        BacktrackingGD([{"params": [a]}, {"params": [b], "alpha": 0.1}])


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"beta": 1.0}, "beta"),
    ({"beta": -0.5}, "beta"), ({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"),
    ({"max_trials": 0}, "max_trials"), ({"mode": "sideways"}, "mode"),
])
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=f"Invalid {match}"):
        BacktrackingGD([torch.zeros(1, requires_grad=True)], **kwargs)


def test_invalid_momentum_constants_raise():
    p = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError, match="A2"):
        BacktrackingMomentum(p, A2=0.9)
    with pytest.raises(ValueError, match="momentum"):
        BacktrackingMomentum(p, momentum=-0.1)


def test_step_without_closure_raises():
    opt = BacktrackingGD([torch.zeros(1, requires_grad=True)])
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_cuda_matches_cpu(make):
    torch.manual_seed(0)
    cpu = nn.Linear(4, 2).double()
    gpu = nn.Linear(4, 2).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    oc, og = make(cpu.parameters()), make(gpu.parameters())
    for _ in range(5):
        oc.step(make_closure(cpu, nn.functional.mse_loss, x, y))
        og.step(make_closure(gpu, nn.functional.mse_loss, x.cuda(), y.cuda()))
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        assert torch.allclose(pc, pg.cpu(), rtol=1e-9, atol=1e-12)


def _ten_sgd_steps(optim: str, tweak=None) -> list[torch.Tensor]:
    """10 steps of conf/optim/<optim>.yaml's optimizer, built as mbt.train builds it, on a
    small conv net (float32, CPU); ``tweak(optimizer)`` may change it before the first."""
    from omegaconf import OmegaConf

    from mbt.config_paths import CONF_DIR
    from mbt.optim.factory import build_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10))
    opt, _ = build_optimizer(OmegaConf.load(CONF_DIR / "optim" / f"{optim}.yaml"),
                             model.parameters())
    assert not any(g["fused"] or g["foreach"] for g in opt.param_groups)  # CPU: untouched
    if tweak is not None:
        tweak(opt)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(10):
        opt.step(make_closure(model, nn.functional.cross_entropy, x, y))
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("optim", ["sgd", "nag", "mbt_nag", "sgd_cosine"])
def test_foreach_and_fused_kernels_give_the_default_numbers(optim):
    from mbt.optim.factory import use_fused_kernels

    def foreach(opt):
        for g in opt.param_groups:
            g["foreach"] = True

    default = _ten_sgd_steps(optim)
    for a, b in zip(default, _ten_sgd_steps(optim, foreach), strict=True):
        assert torch.equal(a, b)  # the same ops, grouped: bit for bit
    # The CUDA path of build_optimizer (fused kernel), run on the CPU's fused kernel.
    fused = _ten_sgd_steps(optim, lambda opt: use_fused_kernels(opt, ("cpu",)))
    for a, b in zip(default, fused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_kernels_only_where_asked_and_allowed():
    from mbt.optim.factory import use_fused_kernels

    p = [torch.zeros(3, requires_grad=True)]
    assert not use_fused_kernels(torch.optim.SGD(p, lr=0.1))  # CPU parameters
    assert not use_fused_kernels(torch.optim.SGD(p, lr=0.1, foreach=False), ("cpu",))
    assert not use_fused_kernels(torch.optim.Adam(p, lr=0.1), ("cpu",))  # SGD only
    assert not use_fused_kernels(BacktrackingGD(p), ("cpu",))
    assert use_fused_kernels(torch.optim.SGD(p, lr=0.1, momentum=0.9), ("cpu",))
