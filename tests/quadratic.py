"""The hand-checkable test function shared by the optimizer tests."""

from __future__ import annotations

import torch


class Quadratic:
    """f(x) = L/2 ||x||^2. Armijo along -grad (paper eq. (7); SLS eq. (1) with c = alpha)
    holds iff lr <= 2 (1 - alpha) / L, so every search's answer is known in closed form."""

    def __init__(self, x0=(1.0,), L=10.0, dtype=torch.float64):
        self.x = torch.tensor(list(x0), dtype=dtype, requires_grad=True)
        self.L = L

    def closure(self, backward: bool = True):
        if backward:
            self.x.grad = None
        f = 0.5 * self.L * (self.x**2).sum()
        if backward:
            f.backward()
        return f


def grid_answer(lr0, beta, threshold) -> tuple[float, int]:
    """Largest lr0 beta^k <= threshold, and k: Backtracking GD's answer on the quadratic."""
    k = 0
    while lr0 * beta**k > threshold:
        k += 1
    return lr0 * beta**k, k


def sin_quadratic(dtype=torch.float64, n: int = 6, seed: int = 0):
    """f(x) = x'Hx/2 + sum(sin x), H positive definite: smooth, not a quadratic, so the
    accepted steps vary from one iterate to the next. Returns ``(x, closure)``."""
    torch.manual_seed(seed)
    A = torch.randn(n, n, dtype=torch.float64)
    H = (A @ A.T + 0.1 * torch.eye(n, dtype=torch.float64)).to(dtype)
    x = torch.randn(n, dtype=dtype, requires_grad=True)

    def closure(backward: bool = True):
        if backward:
            x.grad = None
        f = 0.5 * x @ H @ x + torch.sin(x).sum()
        if backward:
            f.backward()
        return f

    return x, closure
