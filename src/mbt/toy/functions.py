"""Analytic test functions of the paper's Sec. 3, written for autograd in float64.

Each takes a tensor ``z`` of shape (2,) and returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["FUNCTIONS", "get_function", "mexican_hat", "quartic", "rosenbrock", "x3sin"]


def x3sin(z: torch.Tensor) -> torch.Tensor:
    """Example 3.6: f(x, y) = x^3 sin(1/x) + y^3 sin(1/y) (non-degenerate local minima)."""
    return (z**3 * torch.sin(1.0 / z)).sum()


def quartic(z: torch.Tensor) -> torch.Tensor:
    """Example 3.7: f(x, y) = x^4 + y^4, a degenerate global minimum at the origin."""
    return (z**4).sum()


def rosenbrock(z: torch.Tensor) -> torch.Tensor:
    """(1 - x)^2 + 100 (y - x^2)^2: a curved valley, minimum at (1, 1)."""
    x, y = z[0], z[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


# Below this margin from the unit circle exp(-1/(1 - r^2)) underflows to exactly 0 in
# float64 anyway; clamping keeps 1/(1 - r^2) finite so autograd never sees inf * 0.
_HAT_EDGE = 1e-3


def mexican_hat(z: torch.Tensor) -> torch.Tensor:
    """Example 3.3 (Absil et al. 2005, eq. 2.8), in polar coordinates (r, theta).

    f = [1 - 4r^4 / (4r^4 + (1 - r^2)^4) sin(theta - 1/(1 - r^2))] exp(-1/(1 - r^2))
    for r < 1, and f = 0 for r >= 1.
    """
    r2 = (z**2).sum()
    theta = torch.atan2(z[1], z[0])
    inside = r2 < 1.0
    s = 1.0 - torch.clamp(r2, max=1.0 - _HAT_EDGE)  # 1 - r^2, kept away from 0
    r4 = torch.clamp(r2, max=1.0 - _HAT_EDGE) ** 2
    value = (1.0 - 4 * r4 / (4 * r4 + s**4) * torch.sin(theta - 1.0 / s)) * torch.exp(-1.0 / s)
    return torch.where(inside, value, torch.zeros_like(value))


FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "x3sin": x3sin,
    "quartic": quartic,
    "mexican_hat": mexican_hat,
    "rosenbrock": rosenbrock,
}


def get_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown function {name!r}; choose one of: {', '.join(FUNCTIONS)}"
        ) from None
