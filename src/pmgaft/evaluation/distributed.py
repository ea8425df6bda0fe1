"""Evaluation under ``torchrun``: every cell's images are split across the processes, results gathered on rank 0.

Each process joins the process group (:func:`pmgaft.distributed.init_distributed`) and takes every ``world``-th
sample of a (model, dataset) -- the same positions for the clean pass and every attack, so the work left is
balanced wherever the clean accuracy is similar -- and rank 0 gathers the per-sample results and alone writes
files. A collective that fails (a rank died, or hung past ``--dist-timeout``) becomes a PmgaftError naming the
silent rank. Single-process runs never import ``torch.distributed``.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pmgaft.distributed import Dist, collective_failure, init_distributed, is_collective_error, shutdown

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1800.0

__all__ = ["DEFAULT_TIMEOUT_S", "Dist", "barrier", "broadcast", "gather", "init_distributed", "shutdown"]


def _collective(d: Dist, where: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001  (only collective failures are translated)
        if is_collective_error(err):
            raise collective_failure(d, err, where) from None
        raise


def gather(obj: T, d: Dist) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without torchrun)."""
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    _collective(d, "gathering results", dist.all_gather_object, out, obj)
    return out


def broadcast(obj: T, d: Dist) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    _collective(d, "sharing rank 0's plan", dist.broadcast_object_list, box, 0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        _collective(d, "waiting for the other ranks", dist.barrier)
