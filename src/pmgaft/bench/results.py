"""One measurement's numbers (the JSON schema of ``pmgaft bench``) and the table printed on stdout.

Per measurement (a key of ``"measurements"`` in the JSON, e.g. ``"train:pmg_aft"``, ``"released:pmg_aft"``,
``"pgd"``, ``"clean"``, ``"data"``; ``"data:w0"``, ``"data:w4"`` ... when several ``--workers`` counts are measured,
each with ``workers``, ``seconds_per_image`` and ``images_per_s_per_worker``):

* ``step_seconds`` -- median seconds of one step (a training step, a PGD-k batch, a clean batch, one batch of
  decoded images); ``samples`` every timed repeat, ``warmup_seconds`` the warm-up calls (compile time lands here);
* ``cpu_seconds`` -- median CPU seconds of this process per step (all threads): on a loaded machine, where
  wall time inflates, compare this, preferably at ``--threads 1``;
* ``images_per_s`` = batch / step_seconds;
* ``forward_equivalents`` per image (:mod:`pmgaft.bench.flops`), ``useful_flops`` per step = that x batch x the
  tower's forward FLOPs, ``achieved_flops_per_s`` = useful / step_seconds, ``mfu`` = achieved / the GEMM peak
  measured in the same run (null for data loading);
* ``peak_memory_bytes`` -- the peak during the timed steps (RSS on CPU, max allocated on CUDA);
  ``memory_bytes`` = that minus what the process held before this measurement's models were built (its
  weights, frozen copy, optimizer state, activations); ``step_memory_bytes`` = peak minus what was held just
  before the step (activations and temporaries only);
* with ``--tensor-memory`` (training): ``tensor_memory_bytes`` = the bytes of the tensors a step starts from
  (weights, frozen copy, optimizer state; gradients cleared) + ``step_tensor_bytes``, the peak of live tensors
  above that during one profiled step (activations, gradients) -- what CUDA's ``max_memory_allocated`` counts,
  without the CPU heap's slack.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pmgaft.bench.timing import Timing

SCHEMA = "pmgaft.bench/1"


@dataclass
class Measurement:
    kind: str  # train | released | pgd | clean | data
    batch_size: int
    step_seconds: float
    samples: list[float]
    warmup_seconds: list[float]
    cpu_seconds: float
    cpu_samples: list[float]
    images_per_s: float
    method: str | None = None
    forward_equivalents: int | None = None
    useful_flops: float | None = None
    achieved_flops_per_s: float | None = None
    mfu: float | None = None
    peak_memory_bytes: int = 0
    memory_bytes: int = 0
    step_memory_bytes: int = 0
    memory_reset: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def set_peak(self, peak_flops_per_s: float) -> None:
        if self.achieved_flops_per_s is not None:
            self.mfu = self.achieved_flops_per_s / peak_flops_per_s

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


def measurement(kind: str, timing: Timing, *, batch_size: int, setup_bytes: int, tower_flops: int | None,
                forward_equivalents: int | None = None, method: str | None = None, **extra: Any) -> Measurement:
    """Derive a :class:`Measurement` from a timing; FLOP fields stay None without a forward-equivalent count.
    ``mfu`` is set by :meth:`Measurement.set_peak` once the run's GEMM peak is known."""
    seconds = timing.median
    m = Measurement(kind, batch_size, seconds, list(timing.samples), list(timing.warmup_seconds),
                    timing.cpu_median, list(timing.cpu_samples), batch_size / seconds, method,
                    peak_memory_bytes=timing.peak_bytes,
                    memory_bytes=timing.peak_bytes - setup_bytes,
                    step_memory_bytes=timing.peak_bytes - timing.baseline_bytes, memory_reset=timing.memory_reset,
                    extra=extra)
    if forward_equivalents is not None and tower_flops is not None:
        m.forward_equivalents = forward_equivalents
        m.useful_flops = float(forward_equivalents * batch_size * tower_flops)
        m.achieved_flops_per_s = m.useful_flops / seconds
    return m


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(measurements: dict[str, Measurement]) -> str:
    """A fixed-width table of the measurements (one row each)."""
    width = max([len("measurement"), *map(len, measurements)])
    header = (f"{'measurement':<{width}} {'s/step':>9} {'cpu s':>9} {'images/s':>9} {'F/img':>6} {'GFLOP/step':>11} "
              f"{'GFLOP/s':>8} {'MFU':>6} {'peak MiB':>9} {'mem MiB':>8}")
    rows = [header, "-" * len(header)]
    for name, m in measurements.items():
        rows.append(f"{name:<{width}} {m.step_seconds:>9.4g} {m.cpu_seconds:>9.4g} {m.images_per_s:>9.4g} "
                    f"{_fmt(m.forward_equivalents, 'd'):>6} "
                    f"{_fmt(None if m.useful_flops is None else m.useful_flops / 1e9, '.4g'):>11} "
                    f"{_fmt(None if m.achieved_flops_per_s is None else m.achieved_flops_per_s / 1e9, '.4g'):>8} "
                    f"{'-' if m.mfu is None else format(100 * m.mfu, '.1f') + '%':>6} "
                    f"{m.peak_memory_bytes / 2**20:>9.0f} {m.memory_bytes / 2**20:>8.0f}")
    return "\n".join(rows)
