"""Trial points leave no trace, any callable is a closure, the two-way cap follows the lr
(issue 24: mbt.optim.closure's contract)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from mbt.optim import (
    SLS,
    BacktrackingGD,
    BacktrackingMomentum,
    BacktrackingNAG,
    TwoWayBacktrackingGD,
    UnboundedBacktrackingGD,
    make_closure,
)

LR = 1e-3  # small enough that Armijo accepts the first trial at every step


def _net(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, 3))


def _batches(n: int = 5):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g))
            for _ in range(n)]


# Each builds a line search that, at LR, accepts LR at every step: it should equal SGD.
SGD_EQUIVALENT = {
    "backtracking_gd": lambda p: BacktrackingGD(p, lr=LR, alpha=1e-4),
    "two_way_gd": lambda p: TwoWayBacktrackingGD(p, lr=LR, alpha=1e-4),
    "unbounded_gd": lambda p: UnboundedBacktrackingGD(p, lr=LR, alpha=1e-4,
                                                      h=lambda t, lr0: lr0),
    "backtracking_mmt_gamma0": lambda p: BacktrackingMomentum(p, lr=LR, momentum=0.0,
                                                              alpha=1e-4),
    "sls_max": lambda p: SLS(p, lr=LR, c=1e-4, reset="max"),
}


def _run(make_opt, dropout: float, steps: int = 5):
    torch.manual_seed(123)
    model = _net(dropout)
    opt = make_opt(model.parameters())
    taken = []
    for x, y in _batches(steps):
        if isinstance(opt, torch.optim.SGD):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            opt.step(make_closure(model, nn.functional.cross_entropy, x, y))
            taken.append(opt.last_search["lr"])
    return model, taken, torch.get_rng_state()


@pytest.mark.parametrize("name", sorted(SGD_EQUIVALENT))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_search_accepting_lr_every_step_equals_sgd_params_buffers_and_rng(name, dropout):
    """Issue 24: BatchNorm statistics moved at every trial (num_batches_tracked 29 after 5
    steps); with dropout, trials also consumed random numbers. Now parameters, buffers
    and the random stream equal SGD's at the accepted lr."""
    ours, taken, rng = _run(SGD_EQUIVALENT[name], dropout)
    sgd, _, sgd_rng = _run(lambda p: torch.optim.SGD(p, lr=LR), dropout)
    assert taken == [LR] * 5
    bn = ours[1]
    assert int(bn.num_batches_tracked) == 5
    for (k, a), (_, b) in zip(ours.state_dict().items(), sgd.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
    assert torch.equal(rng, sgd_rng)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_nag_keep_only_the_starting_points_buffer_update(nesterov):
    """NAG's look-ahead gradients are trials too: after a step, BatchNorm holds what one
    train-mode forward at the step's starting point leaves."""
    model = _net()
    opt = (BacktrackingNAG if nesterov else BacktrackingMomentum)(
        model.parameters(), lr=0.05, momentum=0.9)
    for i, (x, y) in enumerate(_batches(4)):
        expected = copy.deepcopy(model)
        with torch.no_grad():
            expected(x)
        opt.step(make_closure(model, nn.functional.cross_entropy, x, y))
        assert opt.last_search["func_evals"] >= 2
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(model[1], name), getattr(expected[1], name),
                                       msg=f"step {i}: {name}")


def test_a_buffer_a_module_replaces_is_put_back():
    class Counter(nn.Module):  # replaces its buffer instead of updating it in place
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls = self.calls + 1
            return self.lin(x)

    torch.manual_seed(0)
    model = Counter()
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    opt = TwoWayBacktrackingGD(model.parameters(), lr=1.0)
    for _ in range(3):
        opt.step(make_closure(model, nn.functional.mse_loss, x, y))
    assert float(model.calls) == 3.0


# -- closures: any callable, no cross-call caching -------------------------------------

def _quadratic():
    torch.manual_seed(0)
    w = nn.Parameter(torch.tensor([2.0, -1.0]))
    return w


def _with_backward(w, calls, backward=True):
    calls.append(backward)
    if backward and w.grad is not None:
        w.grad = None
    loss = (w ** 2).sum()
    if backward:
        loss.backward()
    return loss


def _plain(w, calls):
    calls.append("plain")
    w.grad = None
    loss = (w ** 2).sum()
    loss.backward()
    return loss


@pytest.mark.parametrize("order", ["fast_first", "plain_first"])
def test_partial_closures_of_both_kinds_work_in_either_order(order):
    """Issue 24: the signature was cached per type for callables without __code__, so a
    partial of a plain closure after a partial of a fast one got backward= and crashed
    (and in the other order the fast path was silently lost)."""
    w = _quadratic()
    opt = TwoWayBacktrackingGD([w], lr=0.4)
    fast_calls: list = []
    plain_calls: list = []
    fast = functools.partial(_with_backward, w, fast_calls)
    plain = functools.partial(_plain, w, plain_calls)
    for closure in ((fast, plain) if order == "fast_first" else (plain, fast)):
        opt.step(closure)
    assert fast_calls[0] is True and False in fast_calls  # trials took the fast path
    assert plain_calls and set(plain_calls) == {"plain"}


def test_bound_methods_lambdas_and_callable_objects_are_closures():
    w = _quadratic()
    opt = TwoWayBacktrackingGD([w], lr=0.4)

    class Fast:
        def __init__(self):
            self.calls = []

        def __call__(self, backward=True):
            return _with_backward(w, self.calls, backward)

    class Plain:
        def __init__(self):
            self.calls = []

        def loss(self):
            return _plain(w, self.calls)

    fast, plain = Fast(), Plain()
    opt.step(fast)
    opt.step(plain.loss)
    kw = []
    opt.step(lambda **kwargs: _with_backward(w, kw, **kwargs))
    assert False in fast.calls and False in kw
    assert set(plain.calls) == {"plain"}
    assert float((w.detach() ** 2).sum()) < 5.0


def test_a_wrapped_closure_is_called_as_its_signature_says():
    w = _quadratic()
    calls: list = []

    def plain():
        return _plain(w, calls)

    @functools.wraps(plain)
    def logged(*args, **kwargs):
        return plain(*args, **kwargs)

    TwoWayBacktrackingGD([w], lr=0.4).step(logged)
    assert set(calls) == {"plain"}


# -- the two-way cap is the group's current lr -----------------------------------------

def test_two_way_cap_follows_a_scheduler_and_param_group_edits():
    """Issue 24: after StepLR halved lr to 0.5 the next step accepted 1.0."""
    w = nn.Parameter(torch.tensor([1.0, 1.0]))

    def closure(backward=True):
        if backward:
            w.grad = None
        loss = 0.1 * (w ** 2).sum()  # Armijo holds at 1.0 with alpha 0.5
        if backward:
            loss.backward()
        return loss

    opt = TwoWayBacktrackingGD([w], lr=1.0, alpha=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(closure)
    assert opt.last_search["lr"] == 1.0
    sched.step()
    opt.step(closure)
    assert opt.last_search["lr"] == 0.5
    opt.param_groups[0]["lr"] = 0.1
    opt.step(closure)
    assert opt.last_search["lr"] == pytest.approx(0.1)
    opt.param_groups[0]["lr"] = 0.8  # raising the cap lets the search grow back to it
    for _ in range(12):
        opt.step(closure)
    assert 0.1 < opt.last_search["lr"] <= 0.8
