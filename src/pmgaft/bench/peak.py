"""The device's dense GEMM peak, measured in the same run: the denominator of MFU.

A square ``n x n @ n x n`` matmul (``2 n^3`` FLOPs) in the step's compute dtype, median of ``repeats`` after
one warm-up call. ``n`` = 2048 on CPU (a ViT-B/32 layer's GEMMs run at the same rate), 8192 on CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pmgaft.bench.timing import Timing, time_interleaved


@dataclass(frozen=True)
class GemmPeak:
    flops_per_s: float
    size: int
    dtype: str
    samples: tuple[float, ...]  # seconds per matmul


def measure_gemm_peak(device: torch.device, dtype: torch.dtype = torch.float32, *, size: int | None = None,
                      repeats: int = 5) -> GemmPeak:
    """Dense GEMM FLOP/s of ``device`` in ``dtype`` (median of ``repeats`` square matmuls)."""
    n = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=generator).to(dtype)
    b = torch.randn(n, n, device=device, generator=generator).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    timing: Timing = time_interleaved({"mm": lambda: torch.mm(a, b, out=out)}, device, warmup=1,
                                      repeats=repeats)["mm"]
    return GemmPeak(2 * n**3 / timing.median, n, str(dtype).removeprefix("torch."), tuple(timing.samples))
