"""``torch.profiler`` top-op table of one call: where a step's time goes beyond the GEMMs."""
from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::convolution_backward",
            "aten::mkldnn_convolution", "aten::cudnn_convolution")


def profile_call(fn: Callable[[], object], device: torch.device, *, rows: int = 25) -> tuple[str, float]:
    """(the top-``rows`` ops by self time, the share of self time spent in GEMM-like ops)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in averages) or 1.0
    gemm = sum(getattr(e, attr) for e in averages if e.key in GEMM_OPS)
    table = averages.table(sort_by=attr, row_limit=rows, max_name_column_width=60)
    return table, gemm / total
