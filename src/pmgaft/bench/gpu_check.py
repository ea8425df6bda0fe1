"""``make gpu-check`` (``pmgaft gpu-check``): what only a CUDA GPU can show, in one run of a few minutes.

The test suite runs on CPUs; this runs the GPU-specific paths once, on random weights (no network, no data to
download: the torchrun smoke run trains and evaluates on scikit-learn's bundled digits) and prints one table,
writing the numbers as JSON. Its checks, in order (:data:`CHECKS`):

* ``precision`` -- every trainable method's training step (the real ``train_step``, as ``pmgaft train`` builds it)
  in fp32 and under bf16 autocast, from the same weights, batch and attack starts. bf16 keeps 8 significant bits,
  so every op rounds by up to 2^-9 (0.2%) and a 12-block forward carries ~1% of a logit into the losses; a loss
  that squares a difference of embeddings (FARE's) doubles that. Agreement: every loss term within 2% of the fp32
  total (or of log C, a uniform prediction's cross-entropy, where the total is below it: a loss near its floor,
  such as AGFT's soft-target CE at random weights, 0.17 against log 10, carries the logits' absolute error, not a
  share of its own small value), the update's cosine with fp32's at least 0.9 -- or, where the fp32 step itself is
  that sensitive, no further from fp32 than a step with another random attack start is (AdamW's sign-like first
  update, FARE's, is at random weights), but never past 10% and a cosine of 0.5 (:func:`precision_tolerances`:
  a control that disagrees that much must not pass a broken bf16 step). The attack is at 16/255: at 1/255 a
  random-weight model's embeddings barely move, and FARE's loss would be bf16's rounding itself.
* ``bench`` -- ``pmgaft bench --precision bf16 --batch-size 256`` on the GPU: every method's step time, MFU and
  CUDA's max allocated memory, with PMG-AFT's other ``--memory`` mode (``fast``: no recomputation) side by side
  and the released recipe's arithmetic.
* ``pgd`` -- one PGD-10 cell (labels: the clean predictions) in fp32 and under bf16 on the same images and random
  starts, at the smallest eps of 1, 2, 4, ... 64 /255 that breaks at least a quarter of them. The robust sets agree
  when every image they disagree on is a near-tie: its fp32 margin is within twice bf16's largest logit error on
  the clean batch.
* ``compile`` -- the classifier compiled as ``pmgaft eval --compile`` compiles it, against eager: the same clean
  and PGD-2 predictions wherever eager's top-2 gap exceeds twice their largest logit difference (fp32 kernels
  that add in another order differ in the last bits, no more), and the time of each.
* ``torchrun`` -- ``torchrun --nproc_per_node N`` of ``pmgaft train`` (2 steps) and ``pmgaft eval`` (PGD-2) on its
  checkpoint, and one all-reduce on a process group of the device's backend (NCCL; a single-GPU torchrun has no
  process group of its own).

On a machine without CUDA the check says so in one line and runs nothing (``--device cpu`` runs it on the CPU
anyway, with fp32 in the bench: how its tests run it).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from pmgaft.attacks import pgd
from pmgaft.attacks.pgd import sample_seeds
from pmgaft.bench.harness import Harness, build_harness
from pmgaft.bench.runner import BenchConfig, environment, run_bench
from pmgaft.bench.timing import time_interleaved
from pmgaft.bench.train import TRAINABLE, build_step_context
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.engine import Autocast
from pmgaft.methods import AttackSettings, PmgAft
from pmgaft.training.step import train_step
from pmgaft.utils import lookup

SCHEMA = "pmgaft.gpu-check/1"
LOW = torch.bfloat16
EPS_LADDER = (1, 2, 4, 8, 16, 32, 64)  # /255: the PGD cell takes the first that breaks >= a quarter of the images
LOSS_TOL, LOSS_TOL_MAX = 0.02, 0.10  # a bf16 loss term's gap, as a share of the loss scale: default, loosest
COSINE_TOL, COSINE_TOL_MIN = 0.9, 0.5  # the bf16 update's cosine with fp32's: default, loosest


@dataclass
class GpuCheckConfig:
    model: str = "ViT-B-32"
    device: str = "cuda"
    batch_size: int = 256  # the bench's
    check_batch: int = 64  # images of the precision, PGD and compile checks
    classes: int = 200
    compile_backend: str = "inductor"
    nproc: int = 1  # torchrun processes (one GPU each)
    checks: tuple[str, ...] = ()  # () = all of CHECKS


@dataclass
class Row:
    """One line of the table: what was checked, what was measured, against what, and the verdict."""

    check: str
    subject: str
    measured: str
    tolerance: str = "-"
    ok: bool | None = None  # None: a measurement, nothing to agree with
    numbers: dict[str, Any] = field(default_factory=dict)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.double(), b.double(), dim=0))


def _step(harness: Harness, name: str, x: torch.Tensor, y: torch.Tensor, *, low: bool,
          seed: int) -> tuple[dict[str, float], torch.Tensor]:
    """(loss terms, update of the image tower's weights) of one training step from the harness's weights."""
    ctx = build_step_context(harness, name, seed=seed)
    ctx.autocast_dtype = LOW if low else None
    ctx.attack = AttackSettings(eps=16 / 255, step_size=8 / 255, steps=2)
    ctx.optimizer.param_groups[0]["lr"] = 0.1  # an update far above fp32's rounding of the weights
    params = list(ctx.target.clip.visual.parameters())
    before = torch.cat([p.detach().flatten().double() for p in params])
    terms = train_step(ctx, 1, [(x, y, torch.arange(len(y)))]).terms
    return terms, torch.cat([p.detach().flatten().double() for p in params]) - before


def precision_tolerances(other_gap: float, other_cosine: float) -> tuple[float, float]:
    """(largest loss-term gap, smallest update cosine) a bf16 step may show, given how far a fp32 step with another
    attack start is: the control loosens 2% and 0.9 up to its own numbers, never past 10% and 0.5."""
    return (min(max(LOSS_TOL, other_gap), LOSS_TOL_MAX), max(min(COSINE_TOL, other_cosine), COSINE_TOL_MIN))


def check_precision(config: GpuCheckConfig, harness: Harness) -> list[Row]:
    x, y = harness.batch(config.check_batch, seed=2)
    rows = []
    for name in TRAINABLE:
        ref, ref_update = _step(harness, name, x, y, low=False, seed=0)
        low, low_update = _step(harness, name, x, y, low=True, seed=0)
        other, other_update = _step(harness, name, x, y, low=False, seed=1)  # another random attack start
        scale = max(abs(ref["total"]), math.log(config.classes))  # a CE-type loss's scale (see the docstring)
        gap = max(abs(low[k] - ref[k]) for k in ref) / scale
        other_gap = max(abs(other[k] - ref[k]) for k in ref) / scale
        cosine, other_cosine = _cosine(low_update, ref_update), _cosine(other_update, ref_update)
        loss_tol, cos_tol = precision_tolerances(other_gap, other_cosine)
        rows.append(Row("precision", name, f"loss {ref['total']:.4f} vs {low['total']:.4f} (terms {100 * gap:.2f}%), "
                                           f"update cos {cosine:.4f}",
                        f"<= {100 * loss_tol:.2f}%, >= {cos_tol:.3f}", gap <= loss_tol and cosine >= cos_tol,
                        {"fp32": ref, "bf16": low, "term_gap": gap, "update_cosine": cosine,
                         "other_start_term_gap": other_gap, "other_start_update_cosine": other_cosine}))
    return rows


def check_bench(config: GpuCheckConfig, harness: Harness) -> list[Row]:
    device = harness.device
    precision = "bf16" if device.type == "cuda" else "fp32"  # autocast is for CUDA (the harness refuses it on CPU)
    other_mode = "fast_memory" if PmgAft().lean else "lean_memory"  # PMG-AFT's other --memory mode
    doc = run_bench(BenchConfig(model=config.model, methods=list(TRAINABLE), batch_size=config.batch_size,
                                precision=precision, device=str(device), classes=config.classes, repeats=3,
                                warmup=2, what=("train", "pgd", "clean"), variants=[other_mode]))
    rows = []
    for key, m in doc["measurements"].items():
        if "+" in key and not key.startswith("train:pmg_aft+"):
            continue  # the variant changes PMG-AFT only
        rows.append(Row("bench", key, f"{m['step_seconds']:.4g} s/step, MFU {100 * (m['mfu'] or 0):.1f}%, "
                                      f"{m['peak_memory_bytes'] / 2**30:.2f} GiB ({precision}, batch "
                                      f"{config.batch_size})", numbers=m))
    for key, value in doc["comparisons"].items():
        if any(w in key for w in ("_speedup_vs_", "_step_time_vs_", "_peak_memory_vs_")) and "_cpu_" not in key:
            rows.append(Row("bench", key, f"{value:.3f}", numbers={"value": value}))
    return rows


def _margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image: how far label ``y`` leads the best other class (negative: misclassified) [B]."""
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return logits.gather(1, y[:, None])[:, 0] - other


def check_pgd(config: GpuCheckConfig, harness: Harness) -> list[Row]:
    model = harness.classifier()
    low = Autocast(model, LOW)
    x, _ = harness.batch(config.check_batch, seed=3)
    with torch.no_grad():
        clean, clean_low = model(x), low(x)
    y = clean.argmax(1)  # every image starts correct
    error = float((clean_low - clean).abs().max())
    seeds = sample_seeds(0, range(len(y)))
    for eps in EPS_LADDER:
        x_adv = pgd(model, x, y, eps=eps / 255, step_size=eps / 255, steps=10, sample_seeds=seeds)
        with torch.no_grad():
            margins = _margins(model(x_adv), y)
        if (margins > 0).float().mean() <= 0.75:
            break
    x_low = pgd(low, x, y, eps=eps / 255, step_size=eps / 255, steps=10, sample_seeds=seeds)
    with torch.no_grad():
        margins_low = _margins(low(x_low), y)
    robust, robust_low = margins > 0, margins_low > 0
    differ = robust != robust_low
    worst = float(margins[differ].abs().max()) if differ.any() else 0.0
    return [Row("pgd", f"PGD-10 eps {eps}/255, {len(y)} images",
                f"robust {100 * robust.float().mean():.1f}% vs {100 * robust_low.float().mean():.1f}%, "
                f"{int(differ.sum())} differ (largest fp32 margin among them {worst:.4f})",
                f"margin <= {2 * error:.4f}", worst <= 2 * error,
                {"eps_255": eps, "robust_fp32": robust.tolist(), "robust_bf16": robust_low.tolist(),
                 "bf16_logit_error": error, "largest_differing_margin": worst})]


def check_compile(config: GpuCheckConfig, harness: Harness) -> list[Row]:
    model = harness.classifier()
    compiled = torch.compile(model, backend=config.compile_backend, dynamic=True)  # as pmgaft eval --compile
    x, y = harness.batch(config.check_batch, seed=4)
    seeds = sample_seeds(0, range(len(y)))

    def clean(m: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return m(x)

    def attacked(m: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x_adv = pgd(m, x, y, eps=4 / 255, step_size=2 / 255, steps=2, sample_seeds=seeds)
        with torch.no_grad():
            return m(x_adv)

    rows = []
    for what, run in (("clean", clean), ("PGD-2", attacked)):
        logits: dict[str, torch.Tensor] = {}
        calls = {label: (lambda label=label, m=m: logits.__setitem__(label, run(m)))
                 for label, m in (("eager", model), ("compiled", compiled))}
        timing = time_interleaved(calls, harness.device, warmup=2, repeats=3)  # compiled: compiles in the warm-up
        eager, comp = logits["eager"], logits["compiled"]
        diff = float((comp - eager).abs().max())
        top2 = eager.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * diff  # not a near-tie at this rounding
        agree = eager.argmax(1) == comp.argmax(1)
        t_eager, t_comp = timing["eager"], timing["compiled"]
        rows.append(Row("compile", f"{config.compile_backend}, {what}",
                        f"{int(agree.sum())}/{len(y)} same predictions (max |logit diff| {diff:.2e}); "
                        f"{t_eager.median * 1e3:.1f} -> {t_comp.median * 1e3:.1f} ms/batch, compile "
                        f"{sum(t_comp.warmup_seconds):.1f} s", "same where no near-tie", bool(agree[clear].all()),
                        {"eager_s": t_eager.median, "compiled_s": t_comp.median,
                         "compiled_warmup_s": t_comp.warmup_seconds, "max_logit_diff": diff}))
    return rows


def _launch(config: GpuCheckConfig, device: torch.device, argv: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={config.nproc}",
           "-m", "pmgaft", *argv, "--device", device.type, "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def _process_group_all_reduce(device: torch.device) -> float:
    """One all-reduce on a one-process group of the device's backend (NCCL on CUDA): its result."""
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                            world_size=1)
    try:
        t = torch.full((4,), 3.0, device=device)
        dist.all_reduce(t)
        return float(t.sum())
    finally:
        dist.destroy_process_group()


def check_torchrun(config: GpuCheckConfig, harness: Harness) -> list[Row]:
    from pmgaft.models import read_metadata

    device = harness.device
    with tempfile.TemporaryDirectory(prefix="pmgaft-gpu-check-") as tmp:
        run, results = Path(tmp) / "run", Path(tmp) / "results"
        train = _launch(config, device, ["train", "--model", config.model, "--pretrained", "none", "--dataset",
                                         "digits", "--out-dir", str(run), "--batch-size", "8", "--max-steps", "2",
                                         "--val-size", "8", "--val-attack-steps", "1", "--num-workers", "0"])
        steps = read_metadata(run / "last.safetensors").get("step") if train.returncode == 0 else None
        evaluate = None
        if steps is not None:
            evaluate = _launch(config, device, ["eval", "--checkpoint", f"smoke={run / 'last.safetensors'}",
                                                "--datasets", "digits", "--attacks", "pgd", "--eps", "1", "--steps",
                                                "2", "--n-samples", "32", "--batch-size", "16", "--out",
                                                str(results)])
        cards = sorted(results.rglob("pgd*_eps1.json"))
        reduced = _process_group_all_reduce(device)
    ok = steps == "2" and evaluate is not None and evaluate.returncode == 0 and len(cards) == 1
    failed = next((p for p in (train, evaluate) if p is not None and p.returncode != 0), None)
    measured = (f"train {train.returncode} (step {steps}), eval "
                f"{'-' if evaluate is None else evaluate.returncode} ({len(cards)} card)")
    rows = [Row("torchrun", f"{config.nproc} process(es): train + eval", measured, "exit 0, 2 steps, 1 card", ok,
                {"train_returncode": train.returncode, "eval_returncode": None if evaluate is None
                 else evaluate.returncode, "output_tail": None if failed is None
                 else (failed.stdout + failed.stderr)[-3000:]})]
    backend = "nccl" if device.type == "cuda" else "gloo"
    rows.append(Row("torchrun", f"{backend} all-reduce", f"{reduced:g}", "12", reduced == 12.0))
    return rows


CHECKS: dict[str, Callable[[GpuCheckConfig, Harness], list[Row]]] = {
    "precision": check_precision, "bench": check_bench, "pgd": check_pgd, "compile": check_compile,
    "torchrun": check_torchrun}


def check_config(config: GpuCheckConfig) -> None:
    """Bad settings: a PmgaftError naming them, before any work (``--nproc`` against the GPUs once the device is
    cuda, not ``auto``)."""
    for name in config.checks:
        lookup(CHECKS, name, "check")
    if config.check_batch < 2 or config.batch_size < 1 or config.nproc < 1 or config.classes < 2:
        raise PmgaftError(f"--check-batch and --classes must be >= 2, --batch-size and --nproc >= 1; got "
                          f"{config.check_batch}, {config.classes}, {config.batch_size}, {config.nproc}.")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config.device.split(":")[0] == "cuda" and "torchrun" in (config.checks or CHECKS) and 0 < gpus < config.nproc:
        raise PmgaftError(f"--nproc {config.nproc} asks for one GPU per torchrun process, but this machine has "
                          f"{gpus}; give --nproc {gpus} or less.")


def run_gpu_check(config: GpuCheckConfig, *, echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the checks ``config.checks`` names (all by default); returns the JSON document."""
    check_config(config)
    names = list(config.checks or CHECKS)
    device = torch.device(config.device)
    harness = build_harness(config.model, classes=config.classes, device=device)
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        echo(f"gpu-check: {name} ...")
        try:
            rows += CHECKS[name](config, harness)
        except Exception as err:  # a failed piece is a row, the others still run
            first = (str(err).splitlines() or [""])[0][:200]
            rows.append(Row(name, "error", f"{type(err).__name__}: {first}", ok=False))
        seconds[name] = time.perf_counter() - start
    return {"schema": SCHEMA, "environment": environment(device), "config": asdict(config),
            "ok": all(r.ok is not False for r in rows), "seconds": seconds, "rows": [asdict(r) for r in rows]}


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The one table: check, subject, measured, tolerance, verdict."""
    verdict = {True: "ok", False: "FAIL", None: ""}
    cells = [("check", "subject", "measured", "tolerance", "")] + [
        (r["check"], r["subject"], r["measured"], r["tolerance"], verdict[r["ok"]]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(f"{c[i]:<{widths[i]}}" for i in range(4)) + "  " + c[4] for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
