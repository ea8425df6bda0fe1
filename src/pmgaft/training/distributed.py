"""Multi-GPU training with ``torch.distributed`` when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

Joining the process group and naming a failed rank live in :mod:`pmgaft.distributed`. Under torchrun every
process trains its shard of each global batch (see :class:`~pmgaft.training.data.BatchPlan`), the image tower is
wrapped in ``DistributedDataParallel`` (gradients averaged), and rank 0 alone writes checkpoints, logs and runs
validation.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from pmgaft.distributed import (Dist, collective_failure, env_rank, init_distributed, is_collective_error,
                                shutdown)
from pmgaft.models import ZeroShotClassifier

__all__ = ["Dist", "collective_failure", "env_rank", "init_distributed", "is_collective_error", "reduce_mean",
           "shutdown", "tower", "wrap_tower"]


def wrap_tower(visual: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """``visual`` in DDP when distributed (gradients averaged across processes), else itself."""
    if not d.enabled:
        return visual
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(visual, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def tower(model: ZeroShotClassifier, wrapped: nn.Module, sync: bool = True) -> Iterator[ZeroShotClassifier]:
    """``model`` with its image tower temporarily replaced by ``wrapped`` (DDP); no gradient all-reduce when
    ``sync`` is False (the first micro-batches of an accumulated step). The attack never goes through DDP."""
    original = model.clip.visual
    if wrapped is original:
        yield model
        return
    no_sync = wrapped.no_sync() if not sync else contextlib.nullcontext()
    model.clip.visual = wrapped
    try:
        with no_sync:
            yield model
    finally:
        model.clip.visual = original


def reduce_mean(values: dict[str, float], d: Dist, device: torch.device) -> dict[str, float]:
    """Average logged scalars over processes (every rank gets the same numbers)."""
    if not d.enabled or not values:
        return values
    import torch.distributed as dist

    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / d.world for k, v in zip(values, t.tolist())}
