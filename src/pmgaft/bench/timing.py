"""Wall-clock timing (warm-up, repeats, median) and peak memory of one call, on CPU or CUDA.

Peak memory is what the device holds at its highest during the timed calls:

* CUDA: ``torch.cuda.max_memory_allocated`` (tensors only), reset before the call.
* CPU: the process's peak resident set (``VmHWM``), reset before the call by writing ``5`` to
  ``/proc/self/clear_refs`` after ``malloc_trim`` hands freed heap back to the OS, so each call's peak is its own
  (Linux). Where the reset is not possible the lifetime peak (``ru_maxrss``) is reported and ``memory_reset`` is
  False in the result.

``baseline_bytes`` is what was held just before the call (weights, optimizer state, ...), so
``peak - baseline`` is the call's own working memory.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from pmgaft.errors import PmgaftError

_STATUS = "/proc/self/status"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds of each timed call (warm-up calls excluded) and the peak memory seen over them."""

    samples: list[float] = field(default_factory=list)
    warmup_seconds: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)  # this process's CPU seconds (all threads) per call
    peak_bytes: int = 0
    baseline_bytes: int = 0
    memory_reset: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples)


def _proc_kib(key: str) -> int | None:
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _trim_heap() -> None:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_cpu_peak() -> bool:
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_memory(device: torch.device) -> int:
    """Bytes held now: tensors allocated on CUDA, the resident set (after a heap trim) on CPU."""
    if device.type == "cuda":
        synchronize(device)
        return torch.cuda.memory_allocated(device)
    _trim_heap()
    return 1024 * (_proc_kib("VmRSS") or 0)


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_bytes``, ``m.baseline_bytes``, ``m.reset``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = self.baseline_bytes = 0
        self.reset = True

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self.reset = _reset_cpu_peak()
            self.baseline_bytes = current_memory(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _proc_kib("VmHWM") if self.reset else None
            self.peak_bytes = 1024 * (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            self.reset = hwm is not None


def timed_call(fn: Callable[[], object], device: torch.device, timing: Timing, *, warmup: bool = False) -> None:
    """Run ``fn`` once, synchronized, and add its seconds (and, unless warm-up, its peak memory) to ``timing``."""
    with PeakMemory(device) as memory:
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if warmup:
        timing.warmup_seconds.append(seconds)
        return
    timing.samples.append(seconds)
    timing.cpu_samples.append(cpu_seconds)
    if memory.peak_bytes >= timing.peak_bytes:
        timing.peak_bytes, timing.baseline_bytes = memory.peak_bytes, memory.baseline_bytes
    timing.memory_reset = timing.memory_reset and memory.reset


def time_interleaved(calls: dict[str, Callable[[], object]], device: torch.device, *, warmup: int,
                     repeats: int) -> dict[str, Timing]:
    """Time several calls round-robin (a, b, a, b, ...) so that a change in machine load hits all of them alike."""
    if repeats < 1 or warmup < 0:
        raise PmgaftError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}.")
    timings = {name: Timing() for name in calls}
    for i in range(warmup + repeats):
        for name, fn in calls.items():
            timed_call(fn, device, timings[name], warmup=i < warmup)
    return timings
