"""Deterministic fault injection, for the crash tests: ``PMGAFT_FAULT=POINT@N[:hang]``.

The training code calls :func:`point` at the places a real crash can hit (after each file of a checkpoint write,
after the commit, after an optimizer step, ...). When ``PMGAFT_FAULT`` names that point, its ``N``-th hit in
this process kills the process with SIGKILL (as ``kill -9`` would), or with ``:hang`` blocks it (a hung rank; for
``HANG_S`` at most, so that a test never leaves one behind). ``PMGAFT_FAULT_RANK=R`` limits the fault to the
process whose ``RANK`` is R. Unset (always, outside the tests), a point costs one environment lookup.
"""
from __future__ import annotations

import os
import signal
import time

ENV, RANK_ENV = "PMGAFT_FAULT", "PMGAFT_FAULT_RANK"
POINTS = ("step", "checkpoint-file", "checkpoint-commit", "publish")
HANG_S = 300.0
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Count a hit of fault point ``name`` and crash here if ``PMGAFT_FAULT`` says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, rest = spec.partition("@")
    if target != name:
        return
    if os.environ.get(RANK_ENV, os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        return
    count, _, action = rest.partition(":")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(count):
        return
    os.write(2, f"pmgaft fault: {'hang' if action == 'hang' else 'kill -9'} at {name}@{count} "
                f"(rank {os.environ.get('RANK', '0')})\n".encode())
    if action == "hang":  # unresponsive to SIGTERM, like a rank stuck in a kernel; gone after HANG_S at most
        time.sleep(HANG_S)
        os._exit(1)
    os.kill(os.getpid(), signal.SIGKILL)
