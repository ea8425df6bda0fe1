"""Multi-GPU training with ``torch.distributed`` when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

Single-process is the default. Under torchrun every process trains its shard of each global batch (see
:class:`~pmgaft.training.data.BatchPlan`), the image tower is wrapped in ``DistributedDataParallel`` (gradients
averaged), and rank 0 alone writes checkpoints, logs and runs validation. Backend: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from pmgaft.models import ZeroShotClassifier


@dataclass(frozen=True)
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_kind: str) -> Dist:
    """Join the process group torchrun set up (env vars), or a single-process ``Dist``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


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
    """Average logged scalars over processes."""
    if not d.enabled or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / d.world for k, v in zip(values, t.tolist())}
