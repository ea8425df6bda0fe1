"""Graceful stop: SIGTERM / SIGINT ask the run to stop at the next step boundary, after a checkpoint.

The first signal sets a flag; the loop agrees on it across ranks (every rank stops after the same step), rank 0
commits a checkpoint, and :func:`~pmgaft.training.train` raises :class:`TrainingStopped` (the CLI prints the
resume command and exits with status 75, EX_TEMPFAIL: a SLURM job script can requeue on it). A second signal
stops at once (``KeyboardInterrupt``; the steps since the last checkpoint are lost). A second signal within
``DUPLICATE_S`` of the first counts as the same one: a terminal's Ctrl-C reaches the workers of ``torchrun``
both directly and forwarded by torchrun.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

DUPLICATE_S = 2.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(KeyboardInterrupt):
    """The run stopped on a signal after committing the checkpoint of ``step`` in ``run``.

    An interrupt (a ``KeyboardInterrupt``), so a caller that does not handle it stops as on Ctrl-C; ``pmgaft
    train`` turns it into exit status 75.
    """

    def __init__(self, run: Path, step: int, signal_name: str) -> None:
        super().__init__(f"{signal_name}: stopped after step {step} with a checkpoint in {run}")
        self.run, self.step, self.signal_name = run, step, signal_name


class StopSignals:
    """Context manager: while inside, SIGTERM/SIGINT set :attr:`requested` instead of killing the process.

    Handlers are installed only in the main thread (``signal`` allows nothing else) and restored on exit.
    """

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce
        self.name: str | None = None
        self._first = 0.0
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.name is not None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.name is None:
            self.name, self._first = name, time.monotonic()
            if self.announce:  # os.write: safe inside a signal handler, unlike print
                os.write(2, f"\npmgaft train: {name} received: stopping after this step with a checkpoint "
                            f"(send it again to stop at once).\n".encode())
        elif time.monotonic() - self._first >= DUPLICATE_S:
            self.__exit__()
            raise KeyboardInterrupt(name)
