"""Evaluation under ``torchrun``: every cell's images are split across the processes, results gathered on rank 0.

Launched by torchrun (``WORLD_SIZE`` > 1), each process joins the process group (NCCL on CUDA, gloo on CPU) and
takes every ``world``-th sample of a (model, dataset) -- the same positions for the clean pass and every attack,
so the work left is balanced wherever the clean accuracy is similar -- and rank 0 gathers the per-sample
results and alone writes files. Single-process runs never import ``torch.distributed``.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

from pmgaft.errors import PmgaftError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: (rank, world size, local rank); (0, 1, 0) without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's interleaved share of ``items``."""
        return list(items[self.rank::self.world])


def launched_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Ranks:
    """Join torchrun's process group (its env vars), or a single-process :class:`Ranks`."""
    world = launched_world()
    if world <= 1:
        return Ranks(timeout_s=timeout_s)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, timeout_s)


def leave(ranks: Ranks) -> None:
    if ranks.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _collective(ranks: Ranks, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RuntimeError as err:  # DistBackendError & co: a peer died, hung past the timeout, or left early
        raise PmgaftError(f"rank {ranks.rank}/{ranks.world}: {what} failed -- another rank died or did not answer "
                          f"within {ranks.timeout_s:g} s ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
                          f"Its own log names the cause; rerun with --skip-existing to resume.") from None


def gather(obj: T, ranks: Ranks) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without torchrun)."""
    if not ranks.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ranks.world
    _collective(ranks, "gathering results", dist.all_gather_object, out, obj)
    return out


def broadcast(obj: T, ranks: Ranks) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not ranks.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    _collective(ranks, "sharing rank 0's plan", dist.broadcast_object_list, box, 0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.enabled:
        import torch.distributed as dist

        _collective(ranks, "waiting for the other ranks", dist.barrier)
