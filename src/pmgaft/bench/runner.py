"""``run_bench(config) -> JSON document``: every measurement ``pmgaft bench`` makes, in one process.

Order: the GEMM peak; per training method its real step (round-robin with the released-recipe reference for
pmg_aft and with the ``--variant`` patched step, so a change in machine load hits them alike); PGD-k and clean
inference round-robin; with ``defence``, the test-time defences' prediction and the adaptive attacks on TTC
round-robin with their undefended twins (``defence:none``, ``defence:pgd``); data loading. The GEMM peak is
measured again after each group; the highest is the MFU denominator (a busy machine lowers a single measurement).
"""
from __future__ import annotations

import gc
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

import pmgaft
from pmgaft.bench.decode import data_call
from pmgaft.bench.flops import forward_equivalents, tower_forward_flops
from pmgaft.bench.harness import TEMPLATE, Harness, build_harness
from pmgaft.bench.inference import adaptive_call, clean_call, defended_call, pgd_call
from pmgaft.bench.peak import GemmPeak, measure_gemm_peak
from pmgaft.bench.profile import held_tensor_bytes, profile_call, tensor_peak_bytes
from pmgaft.bench.released import released_pmg_aft_step
from pmgaft.bench.results import SCHEMA, Measurement, format_table, measurement
from pmgaft.bench.timing import Timing, current_memory, time_interleaved
from pmgaft.bench.train import TRAINABLE, build_step_context, step_call
from pmgaft.bench.variants import apply_variants
from pmgaft.errors import PmgaftError
from pmgaft.training.step import StepContext
from pmgaft.utils import resolve_device

WHAT = ("train", "pgd", "clean", "defence", "data")


@dataclass
class BenchConfig:
    model: str = "pmgaft-tiny"
    methods: list[str] = field(default_factory=lambda: list(TRAINABLE))
    batch_size: int = 32
    steps: int = 2  # attack steps: the train-time PGD and the PGD-k measurement
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    classes: int = 200
    input_size: int | None = None  # None: the model's input size
    repeats: int = 3
    warmup: int = 1
    what: tuple[str, ...] = ("train", "pgd", "clean")
    released: bool = True  # with pmg_aft: measure the released recipe's arithmetic too
    variants: list[str] = field(default_factory=list)
    dataset: str | None = None
    data_root: str | None = None
    workers: list[int] = field(default_factory=lambda: [1])  # loader worker counts to measure data loading with
    data_images: int = 256
    data_split: str = "test"
    data_transform: str = "clip"  # a transform preset (training reads ImageNet with "train224" or "train")
    threads: int | None = None
    gemm_size: int | None = None  # side of the peak-measuring matmul (None: 2048 on CPU, 8192 on CUDA)
    profile: Path | None = None  # folder for torch.profiler tables
    tensor_memory: bool = False  # also replay one step's tensor lifetimes (allocator-independent peak)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, threads, CPU/GPU and load: what a measurement's numbers depend on besides the code."""
    import open_clip

    env = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "open_clip": open_clip.__version__, "pmgaft": pmgaft.__version__, "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        env["load_average"] = list(os.getloadavg())
    return env


def _check(config: BenchConfig) -> None:
    unknown = [w for w in config.what if w not in WHAT]
    if unknown:
        raise PmgaftError(f"unknown --what {unknown}; use a comma list of {', '.join(WHAT)}.")
    bad = [m for m in config.methods if m not in TRAINABLE]
    if bad:
        raise PmgaftError(f"--method {bad} cannot be trained; trainable methods: {', '.join(TRAINABLE)}.")
    if config.batch_size < 1 or config.steps < 0:
        raise PmgaftError(f"--batch-size must be >= 1 and --steps >= 0, got {config.batch_size}, {config.steps}.")
    if "data" in config.what and not config.dataset:
        raise PmgaftError("--what data needs --dataset NAME --data-root ROOT (or --dataset folder:PATH).")
    if not config.workers or min(config.workers) < 0:
        raise PmgaftError(f"--workers takes one or more counts >= 0, got {config.workers}.")


def _profile(config: BenchConfig, name: str, fn: Callable[[], object], device: torch.device,
             notes: dict[str, Any]) -> None:
    if config.profile is None:
        return
    table, gemm_share = profile_call(fn, device)
    path = Path(config.profile) / f"{name.replace(':', '_')}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table + "\n")
    notes[name] = {"profile": str(path), "gemm_time_share": gemm_share}


def _suffix(config: BenchConfig) -> str:
    """The name suffix of the patched measurements: ``+stock_kernels+sgd_foreach``."""
    return "".join(f"+{v}" for v in config.variants)


def _step_calls(config: BenchConfig, name: str, ctx: StepContext, batch: tuple[torch.Tensor, torch.Tensor],
                tokens: torch.Tensor, losses: dict[str, dict[str, float]]) -> dict[str, Callable[[], None]]:
    """Our step; with ``--variant`` the patched step; for pmg_aft the released recipe's -- all on ``ctx``."""
    x, y = batch
    ours = step_call(ctx, x, y)
    towers = [m.clip.visual for m in (ctx.target, ctx.original) if m is not None]

    def plain() -> None:
        losses[f"train:{name}"] = ours()

    def patched() -> None:
        with apply_variants(config.variants, towers, ctx):
            losses[f"train:{name}{_suffix(config)}"] = ours()

    released_steps = iter(range(1 << 62))

    def released() -> None:
        losses["released:pmg_aft"] = released_pmg_aft_step(ctx, next(released_steps), x, y, tokens)

    calls = {f"train:{name}": plain}
    if config.variants:
        calls[f"train:{name}{_suffix(config)}"] = patched
    if name == "pmg_aft" and config.released and not config.compile:
        calls["released:pmg_aft"] = released
    return calls


def _tensor_memory(ctx: StepContext, call: Callable[[], None]) -> dict[str, int | None]:
    """Tensor bytes a step starts from (gradients cleared: the step allocates them) + its profiled peak above."""
    ctx.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    state = held_tensor_bytes(ctx.target, ctx.original, ctx.optimizer)
    step = tensor_peak_bytes(call)
    return {"step_tensor_bytes": step, "tensor_memory_bytes": None if step is None else state + step}


def _train(config: BenchConfig, harness: Harness, tower_flops: int, out: dict[str, Measurement],
           notes: dict[str, Any]) -> None:
    device = harness.device
    batch = harness.batch(config.batch_size)
    tokens = harness.loaded.tokenizer([TEMPLATE.format(c) for c in harness.classnames]).to(device)
    for name in config.methods:
        gc.collect()
        setup_bytes = current_memory(device)
        ctx = build_step_context(harness, name, attack_steps=config.steps, compile=config.compile)
        losses: dict[str, dict[str, float]] = {}
        calls = _step_calls(config, name, ctx, batch, tokens, losses)
        timings = time_interleaved(calls, device, warmup=config.warmup, repeats=config.repeats)
        for key, timing in timings.items():
            out[key] = measurement(key.split(":")[0], timing, batch_size=config.batch_size, setup_bytes=setup_bytes,
                                   tower_flops=tower_flops, forward_equivalents=forward_equivalents(name, config.steps),
                                   method=name, loss=losses[key].get("total"))
            _profile(config, key, calls[key], device, notes)
            if config.tensor_memory:
                out[key].extra.update(_tensor_memory(ctx, calls[key]))
        del ctx, calls
    gc.collect()


def _inference(config: BenchConfig, harness: Harness, tower_flops: int, out: dict[str, Measurement],
               notes: dict[str, Any]) -> None:
    device = harness.device
    gc.collect()
    setup_bytes = current_memory(device)
    model = harness.classifier()
    x, y = harness.batch(config.batch_size, seed=1)
    fns = {"pgd": pgd_call(model, x, y, steps=config.steps, autocast_dtype=harness.autocast_dtype),
           "clean": clean_call(model, x, harness.autocast_dtype)}
    calls: dict[str, Callable[[], object]] = {}
    for key in ("pgd", "clean"):
        if key in config.what:
            calls[key] = fns[key]
            if config.variants:
                calls[key + _suffix(config)] = lambda fn=fns[key]: _with_variants(config, model, fn)
    for key, timing in time_interleaved(calls, device, warmup=config.warmup, repeats=config.repeats).items():
        kind = key.split("+")[0]
        out[key] = measurement(kind, timing, batch_size=config.batch_size, setup_bytes=setup_bytes,
                               tower_flops=tower_flops, forward_equivalents=forward_equivalents(kind, config.steps),
                               steps=config.steps)
        _profile(config, key, calls[key], device, notes)


def _defence(config: BenchConfig, harness: Harness, tower_flops: int, out: dict[str, Measurement],
             notes: dict[str, Any]) -> None:
    """Defended vs undefended prediction, and each adaptive attack on TTC vs PGD, all round-robin."""
    from pmgaft.defences import DEFAULTS, DEFENCES, TTC_ADAPTIVE

    device, dtype = harness.device, harness.autocast_dtype
    gc.collect()
    setup_bytes = current_memory(device)
    model = harness.classifier()
    x, y = harness.batch(config.batch_size, seed=1)
    calls: dict[str, Callable[[], object]] = {"defence:none": clean_call(model, x, dtype),
                                              "defence:pgd": pgd_call(model, x, y, steps=config.steps,
                                                                      autocast_dtype=dtype)}
    calls.update({f"defence:{name}": defended_call(model, x, defence=name, autocast_dtype=dtype) for name in DEFENCES})
    calls.update({f"adaptive:{name}": adaptive_call(model, x, y, attack=name, steps=config.steps, autocast_dtype=dtype)
                  for name in TTC_ADAPTIVE})
    counts = {"defence:none": forward_equivalents("clean", 0), "defence:pgd": forward_equivalents("pgd", config.steps),
              "defence:ttc": forward_equivalents("ttc", int(DEFAULTS["steps"])),
              "defence:random-noise": forward_equivalents("random-noise", 0)}
    for key, timing in time_interleaved(calls, device, warmup=config.warmup, repeats=config.repeats).items():
        out[key] = measurement(key.split(":")[0], timing, batch_size=config.batch_size, setup_bytes=setup_bytes,
                               tower_flops=tower_flops, forward_equivalents=counts.get(key),
                               steps=config.steps if key.startswith("adaptive") or key == "defence:pgd" else None)
        _profile(config, key, calls[key], device, notes)


def _with_variants(config: BenchConfig, model: Any, fn: Callable[[], object]) -> object:
    with apply_variants(config.variants, [model.clip.visual]):
        return fn()


def _data(config: BenchConfig, out: dict[str, Measurement], echo: Callable[[str], None]) -> None:
    """One measurement per worker count: ``data`` for a single count, ``data:wN`` for several."""
    for workers in config.workers:
        gc.collect()
        setup_bytes = current_memory(torch.device("cpu"))
        call, n = data_call(config.dataset, config.data_root, batch_size=config.batch_size, workers=workers,
                            images=config.data_images, split=config.data_split, transform=config.data_transform)
        timing: Timing = time_interleaved({"data": call}, torch.device("cpu"), warmup=1,
                                          repeats=config.repeats)["data"]
        del call  # its persistent workers exit
        batches = -(-n // config.batch_size)
        per_batch = Timing([s / batches for s in timing.samples], timing.warmup_seconds,
                           [s / batches for s in timing.cpu_samples], timing.peak_bytes, timing.baseline_bytes,
                           timing.memory_reset)
        rate = n / timing.median
        key = "data" if len(config.workers) == 1 else f"data:w{workers}"
        out[key] = measurement("data", per_batch, batch_size=config.batch_size, setup_bytes=setup_bytes,
                               tower_flops=None, dataset=config.dataset, split=config.data_split,
                               transform=config.data_transform, images=n, workers=workers,
                               seconds_per_image=timing.median / n, images_per_s_per_worker=rate / max(workers, 1))
        echo(f"data {config.dataset} {config.data_split} ({config.data_transform}): {workers} worker(s) "
             f"{rate:,.1f} images/s, {rate / max(workers, 1):,.1f} per worker")
    _workers_needed(out, echo)


def workers_needed(step_images_per_s: float, data: list[Measurement]) -> tuple[int, str]:
    """How many loader workers keep a step of ``step_images_per_s`` fed, from the ``data`` measurements (counts
    > 0): the fewest measured count whose total rate keeps up, else an extrapolation from the largest measured
    count's rate per worker (workers do not scale linearly, so the best per-worker rate would underestimate)."""
    data = sorted(data, key=lambda m: m.extra["workers"])
    for m in data:
        if 1 / m.extra["seconds_per_image"] >= step_images_per_s:
            return m.extra["workers"], f"measured: {1 / m.extra['seconds_per_image']:,.1f} images/s"
    per_worker = data[-1].extra["images_per_s_per_worker"]
    return (math.ceil(step_images_per_s / per_worker),
            f"extrapolated from {data[-1].extra['workers']} workers' {per_worker:,.1f} images/s each")


def _workers_needed(out: dict[str, Measurement], echo: Callable[[str], None]) -> None:
    """For each training step measured in the same run: how many loader workers keep it fed."""
    data = [m for m in out.values() if m.kind == "data" and m.extra["workers"] > 0]
    if not data:
        return
    for key, m in out.items():
        if m.kind == "train":
            n, how = workers_needed(m.images_per_s, data)
            echo(f"{key} runs {m.images_per_s:,.1f} images/s: about {n} loader worker(s) keep it fed ({how}, on "
                 f"this machine's CPU)")


def run_bench(config: BenchConfig, *, echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the measurements ``config.what`` names; returns the JSON document (schema in :mod:`.results`)."""
    _check(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    measurements: dict[str, Measurement] = {}
    notes: dict[str, Any] = {}
    doc: dict[str, Any] = {"schema": SCHEMA, "environment": environment(device),
                           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}}
    needs_model = any(w in config.what for w in ("train", "pgd", "clean", "defence"))
    peaks: list[GemmPeak] = []
    tower = None
    if needs_model:
        harness = build_harness(config.model, classes=config.classes, device=device, precision=config.precision,
                                input_size=config.input_size)
        flops, counted_by = tower_forward_flops(harness.loaded.model.visual, harness.loaded.image_size)
        tower = {"forward_flops": flops, "counted_by": counted_by, "image_size": harness.loaded.image_size}
        compute = harness.autocast_dtype or torch.float32
        peaks.append(measure_gemm_peak(device, compute, size=config.gemm_size))
        echo(f"{config.model} on {device} ({torch.get_num_threads()} threads): tower {flops / 1e9:.3f} GFLOPs "
             f"forward/image ({counted_by}); GEMM peak {peaks[0].flops_per_s / 1e9:.1f} GFLOP/s")
        if "train" in config.what:
            _train(config, harness, flops, measurements, notes)
            peaks.append(measure_gemm_peak(device, compute, size=config.gemm_size))
        if "pgd" in config.what or "clean" in config.what:
            _inference(config, harness, flops, measurements, notes)
            peaks.append(measure_gemm_peak(device, compute, size=config.gemm_size))
        if "defence" in config.what:
            _defence(config, harness, flops, measurements, notes)
            peaks.append(measure_gemm_peak(device, compute, size=config.gemm_size))
    if "data" in config.what:
        _data(config, measurements, echo)
    peak = max(peaks, key=lambda p: p.flops_per_s) if peaks else None
    for m in measurements.values():
        if peak is not None:
            m.set_peak(peak.flops_per_s)
    doc["tower"] = tower
    doc["gemm_peak"] = None if peak is None else {**asdict(peak), "runs": [p.flops_per_s for p in peaks]}
    doc["measurements"] = {k: m.to_json() for k, m in measurements.items()}
    doc["comparisons"] = comparisons(measurements)
    doc["notes"] = notes
    if hasattr(os, "getloadavg"):
        doc["environment"]["load_average_after"] = list(os.getloadavg())
    echo(format_table(measurements))
    if peak is not None and len(peaks) > 1:
        echo(f"MFU against the highest GEMM peak of the run: {peak.flops_per_s / 1e9:.1f} GFLOP/s "
             f"(measured {', '.join(f'{p.flops_per_s / 1e9:.1f}' for p in peaks)})")
    for key, value in doc["comparisons"].items():
        echo(describe(key, value))
    return doc


def _memory_ratios(name: str, ours: Measurement, reference: Measurement) -> dict[str, float]:
    """``{name}_memory_vs_...``: our footprint over the reference's (RSS or CUDA's allocated memory above the
    setup, its peak, and with ``--tensor-memory`` the peak of live tensors)."""
    out = {f"{name}_memory": ours.memory_bytes / max(reference.memory_bytes, 1),
           f"{name}_peak_memory": ours.peak_memory_bytes / max(reference.peak_memory_bytes, 1)}
    if ours.extra.get("tensor_memory_bytes") and reference.extra.get("tensor_memory_bytes"):
        out[f"{name}_tensor_memory"] = ours.extra["tensor_memory_bytes"] / reference.extra["tensor_memory_bytes"]
    return out


def comparisons(measurements: dict[str, Measurement]) -> dict[str, float]:
    """Our PMG-AFT step's speed-up over the released recipe's arithmetic; PMG-AFT's memory over TeCoA's and over
    the released recipe's (below 1: less memory than the released code); a defended prediction's wall time over
    the undefended one (``ttc_vs_undefended``) and an adaptive attack's over PGD with the same steps
    (``adaptive_e2e_vs_pgd``).

    For every variant suffix measured (``""`` = unpatched), e.g. ``pmg_aft+fast_memory_tensor_memory_vs_tecoa``.
    ``..._cpu_speedup_...`` compares CPU seconds, which a busy machine disturbs less than wall time.
    """
    out: dict[str, float] = {}
    released = measurements.get("released:pmg_aft")
    for key, ours in measurements.items():
        if not key.startswith("train:pmg_aft"):
            continue
        suffix = key.removeprefix("train:pmg_aft")
        plain = measurements["train:pmg_aft"] if suffix and "train:pmg_aft" in measurements else None
        if plain is not None:  # what the variant costs (above 1) or saves in step time
            out[f"pmg_aft{suffix}_step_time_vs_pmg_aft"] = ours.step_seconds / plain.step_seconds
            out[f"pmg_aft{suffix}_cpu_time_vs_pmg_aft"] = ours.cpu_seconds / max(plain.cpu_seconds, 1e-9)
        if released is not None:
            out[f"pmg_aft{suffix}_speedup_vs_released"] = released.step_seconds / ours.step_seconds
            out[f"pmg_aft{suffix}_cpu_speedup_vs_released"] = released.cpu_seconds / max(ours.cpu_seconds, 1e-9)
        tecoa = measurements.get(f"train:tecoa{suffix}")
        if tecoa is not None:
            out.update({f"{k}_vs_tecoa": v for k, v in _memory_ratios(f"pmg_aft{suffix}", ours, tecoa).items()})
        if released is not None:
            out.update({f"{k}_vs_released": v for k, v in _memory_ratios(f"pmg_aft{suffix}", ours, released).items()})
    if released is not None and "train:pmg_aft" in measurements:
        out["released_memory_vs_pmg_aft"] = released.memory_bytes / max(measurements["train:pmg_aft"].memory_bytes, 1)
    undefended, plain_pgd = measurements.get("defence:none"), measurements.get("defence:pgd")
    for key, m in measurements.items():  # the wall-time price of a defence, and of attacking it adaptively
        kind, _, name = key.partition(":")
        if kind == "defence" and undefended is not None and name not in ("none", "pgd"):
            out[f"{name}_vs_undefended"] = m.step_seconds / undefended.step_seconds
        elif kind == "adaptive" and plain_pgd is not None:
            out[f"adaptive_{name}_vs_pgd"] = m.step_seconds / plain_pgd.step_seconds
    return out


def describe(key: str, value: float) -> str:
    """One printed line per comparison; a memory ratio against the released code also says it as "N x less"."""
    line = f"{key}: {value:.3f}"
    if "memory_vs_released" in key and 0 < value < 1:
        line += f" ({1 / value:.2f}x less than the released code's arithmetic)"
    return line
