"""Joining ``torchrun``'s process group, shared by training and evaluation (``WORLD_SIZE`` > 1).

Single-process is the default and never imports ``torch.distributed`` nor creates a process group. Under
torchrun each process joins the group (NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``; gloo on CPU);
rank 0 alone writes files. How the work is split is the caller's business (:mod:`pmgaft.training.distributed`,
:mod:`pmgaft.evaluation.distributed`).

Failures: every collective waits at most ``dist_timeout`` seconds. When one fails (a rank died, so its sockets
closed, or hangs, so the timeout expired) each surviving rank reports on the rendezvous store, waits
``REPORT_GRACE_S`` for the others' reports, and raises a :class:`~pmgaft.errors.PmgaftError` naming the ranks
that did not report -- the dead or hung ones. torchrun then stops the remaining workers (SIGTERM, SIGKILL 30 s
later) and prints its own report with every rank's exit status.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence, TypeVar

import torch

from pmgaft.errors import PmgaftError

T = TypeVar("T")
REPORT_GRACE_S = 3.0
# what gloo / NCCL put in the RuntimeError of a collective whose peer died or timed out
_BACKEND_WORDS = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout", "broken pipe")


@dataclass(frozen=True)
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    timeout_s: float = 600.0
    store: Any = field(default=None, compare=False, repr=False)  # pmgaft's keys on the rendezvous store

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's interleaved share of ``items`` (rank r takes r, r + world, ...)."""
        return list(items[self.rank::self.world])

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank (one tiny all-reduce)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without a launcher); readable before any process group."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device, timeout_s: float) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (env vars), or a single-process ``Dist``; with the device this
    process trains on (under torchrun, CUDA means ``cuda:LOCAL_RANK``: one GPU per process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(timeout_s=timeout_s), device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None:
            raise PmgaftError(f"--device {device} under torchrun: each process takes the GPU of its LOCAL_RANK; "
                              f"pass --device cuda (or auto) and pick GPUs with CUDA_VISIBLE_DEVICES.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # NCCL's collectives run on the current device
    timeout = timedelta(seconds=timeout_s)
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank,
                                world_size=world, timeout=timeout)
    run = f"pmgaft/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return Dist(world, rank, local_rank, timeout_s, dist.PrefixStore(run, store)), device


def shutdown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def is_collective_error(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because a peer died, hung, or the network broke."""
    import torch.distributed as dist

    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError)
                                                and any(w in str(err).lower() for w in _BACKEND_WORDS))


def collective_failure(d: Dist, err: BaseException, where: str) -> PmgaftError:
    """The error to raise after a collective failed at ``where``: names the ranks that did not report failing."""
    silent: list[int] | None = None
    try:
        d.store.set(f"failed/{d.rank}", where)
        deadline = time.monotonic() + REPORT_GRACE_S
        while True:
            silent = [r for r in range(d.world) if not d.store.check([f"failed/{r}"])]
            if not silent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    except Exception:  # the store is gone too (its host died): say what this rank knows
        silent = None
    first = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(err).split()))[:200]  # without gloo's source path
    if silent:
        who = (f"rank {silent[0]} did not reach it: it died or hangs" if len(silent) == 1 else
               f"ranks {', '.join(map(str, silent))} did not reach it: they died or hang")
    elif silent == []:
        who = "every rank saw it fail: a network or backend problem, not a missing rank"
    else:
        who = "the rendezvous store is unreachable too, so the failed rank is unknown (see torchrun's report)"
    return PmgaftError(f"rank {d.rank}: a collective {where} failed ({first}); {who}. A hung rank is given up "
                       f"after --dist-timeout {d.timeout_s:g} s; torchrun's report lists each rank's exit status. "
                       f"What was already written is intact (checkpoints, finished result cards): fix the failed "
                       f"node and resume (train: --resume; eval: --skip-existing).")
