"""What the line searches need from ``torch.distributed``: every rank must take the same
decision from the same numbers, or the replicas' weights drift apart. Without a process
group (one process) each helper is the identity and costs nothing."""

from __future__ import annotations

import torch

__all__ = ["all_ranks", "averaged", "mean_over_ranks", "world_size"]


def world_size() -> int:
    """The process group's size; 1 without one."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_ranks(loss: torch.Tensor, world: int) -> float:
    """The scalar ``loss`` averaged over ``world`` ranks: one all-reduce in float64 on its
    own device (NCCL reduces CUDA tensors only); ``float(loss)`` when ``world`` is 1."""
    if world == 1:
        return float(loss)
    t = loss.detach().to(torch.float64).reshape(1).clone()
    torch.distributed.all_reduce(t)
    return float(t) / world


def all_ranks(flag: bool, world: int, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank (one all-reduce; ``flag`` itself alone)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


def averaged(grads: tuple[torch.Tensor, ...], world: int) -> tuple[torch.Tensor, ...]:
    """``grads`` averaged over the ranks: one all-reduce per dtype, of the grads flattened
    into one buffer (DDP's bucketing, in one bucket)."""
    if world == 1:
        return grads
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, g in enumerate(grads):
        by_dtype.setdefault(g.dtype, []).append(i)
    out = list(grads)
    for index in by_dtype.values():
        flat = torch.cat([grads[i].reshape(-1) for i in index])
        torch.distributed.all_reduce(flat)
        flat.div_(world)
        for i, part in zip(index, flat.split([grads[i].numel() for i in index]), strict=True):
            out[i] = part.view_as(grads[i])
    return tuple(out)
