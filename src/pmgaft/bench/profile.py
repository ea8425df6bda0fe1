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


def tensor_peak_bytes(fn: Callable[[], object]) -> int | None:
    """Peak bytes of live tensors during one call of ``fn``, above what was live when it started.

    The allocator-independent counterpart of CUDA's ``max_memory_allocated`` (RSS also counts the heap the
    allocator keeps): replays the profiler's tensor lifetime timeline. None where this torch lacks it.
    """
    try:
        from torch.profiler._memory_profiler import Action
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        fn()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def held_tensor_bytes(*objects: object) -> int:
    """Bytes of the distinct storages behind the parameters, buffers and gradients of modules and the state of
    optimizers among ``objects`` (what a step starts from)."""
    tensors: list[torch.Tensor] = []
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                tensors += [p] + ([p.grad] if p.grad is not None else [])
            tensors += list(obj.buffers())
        elif isinstance(obj, torch.optim.Optimizer):
            tensors += [v for state in obj.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())
