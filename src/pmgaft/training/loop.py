"""``train(config) -> run directory``: the training run, from config checks to the last checkpoint.

Before any work: the config's values (:func:`~pmgaft.training.config.validate`), then the run directory, the
data's presence and the weights files (:mod:`~pmgaft.training.preflight`). Then ``_train`` reads top to bottom
in four phases around one step counter, ``step`` = optimizer steps completed:

1. restore -- the newest complete checkpoint of the run directory (or step 0), the data, the models;
2. train -- one :func:`~pmgaft.training.step.train_step` per global batch; a non-finite batch stops the run
   (or is skipped, ``skip_nonfinite``); SIGTERM / SIGINT stop it at the next step boundary;
3. validate / select -- clean and PGD accuracy on the held-out split (rank 0); the best weights are kept;
4. save -- an atomic checkpoint on schedule, at a new best, at the end, and when a stop was asked for.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from pmgaft.data import ImageDataset
from pmgaft.errors import PmgaftError
from pmgaft.methods import Method, build_method
from pmgaft.models import ZeroShotClassifier, all_finite, load_clip
from pmgaft.training import checkpoint as ckpt
from pmgaft.training import faults
from pmgaft.training.config import TrainConfig, config_to_yaml, resolve_config, saved_values, validate
from pmgaft.training.data import BatchPlan, load_train_data, plan_steps, resolve_grad_accum, train_prompts
from pmgaft.training.distributed import (Dist, collective_failure, env_rank, init_distributed, is_collective_error,
                                         shutdown, wrap_tower)
from pmgaft.training.logger import RunLogger
from pmgaft.training.optim import build_optimizer, build_scheduler
from pmgaft.training.preflight import preflight
from pmgaft.training.resume import absolute_paths, reconcile
from pmgaft.training.signals import StopSignals, TrainingStopped
from pmgaft.training.state import rng_state, set_rng_state
from pmgaft.training.step import StepContext, StepResult, skip_update, train_step
from pmgaft.training.validate import validate as run_validation
from pmgaft.utils import atomic_write_json, atomic_write_text, resolve_device, seed_everything

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteError(PmgaftError):
    """A NaN/inf loss, gradient or weight: training stopped, the last good checkpoint kept."""


@dataclasses.dataclass
class Progress:
    """What the run has done: completed steps, the best validation, skipped batches, the newest commit."""

    step: int = 0
    best: dict[str, float] | None = None
    skipped: list[int] = dataclasses.field(default_factory=list)
    committed: int = 0


def train(config: TrainConfig | Mapping[str, Any]) -> Path:
    """Fine-tune the image tower as ``config`` says; returns the run directory with the checkpoints.

    ``config``: a :class:`TrainConfig` or a mapping of its keys (resolved over the recipe and method defaults).
    Raises :class:`~pmgaft.training.signals.TrainingStopped` after a graceful stop (SIGTERM / SIGINT) and
    :class:`NonFiniteError` on a numerical fault; both leave a resumable run.
    """
    config = config if isinstance(config, TrainConfig) else resolve_config(config)
    validate(config)
    config = absolute_paths(config)
    method = build_method(config)
    if not method.trainable:
        method.losses(None, None, None, None, None)  # raises the method's explanation
    device = resolve_device(config.device)
    preflight(config, env_rank())
    d, device = init_distributed(device, config.dist_timeout)
    progress, broken = Progress(), False
    with StopSignals(announce=d.main) as signals:  # also while a failure is reported: torchrun's SIGTERM waits
        try:
            return _train(config, method, device, d, signals, progress)
        except Exception as err:
            broken = d.enabled and is_collective_error(err)
            if broken:  # a peer died or hangs: name it (the group is not torn down: its peers are gone)
                raise collective_failure(d, err, f"after step {progress.step}") from err
            raise
        finally:
            if not broken:
                shutdown(d)


def _train(config: TrainConfig, method: Method, device: torch.device, d: Dist, signals: StopSignals,
           progress: Progress) -> Path:
    run = config.resolved_out_dir()

    # ---- 1. restore: the newest complete checkpoint (its state is read and checked before any loading) -------
    resumed = _restore_point(run, config, d)
    data = load_train_data(config)
    plan = BatchPlan(len(data.train), config.batch_size, config.seed, d.world, d.rank,
                     resolve_grad_accum(config, d.world))
    total = plan.steps_per_epoch * config.epochs
    end = min(total, config.max_steps or total)
    ctx, quick_gelu = _build(config, method, data.classes, device, d, total)  # models, optimizer, schedule
    if resumed is not None:
        _load(resumed, ctx, plan, progress, config)
    logger = RunLogger(run, total=total, initial=progress.step, enabled=d.main, progress=config.progress)
    save = _Saver(run, config, ctx, plan, progress, quick_gelu, logger)
    if d.main:
        _start_files(run, config, ctx.target, resumed, logger, progress)
    eval_every = config.eval_every or plan.steps_per_epoch
    save_every = config.save_every or plan.steps_per_epoch
    if progress.step >= end and d.main:
        print(f"pmgaft train: {run} is at step {progress.step} of {total}; nothing to train"
              + (f" (max_steps {config.max_steps}: pass --max-steps N, or none, to go on)." if end < total else "."))

    # ---- 2. train: one optimizer step per global batch; ``step`` counts the completed ones ---------------------
    tick = time.perf_counter()
    for step, micro in plan_steps(data.train, plan, progress.step, end, config.num_workers):
        lr = ctx.optimizer.param_groups[0]["lr"]  # this step's learning rate
        result = train_step(ctx, step, micro)
        faults.point("step")  # where the crash tests kill a run between two checkpoints
        if not result.finite:
            _nonfinite(step, result, ctx, config, save, logger)  # raises, or skips the batch (skip_nonfinite)
        progress.step = step
        now = time.perf_counter()
        rate, tick = config.batch_size / max(now - tick, 1e-9), now
        logger.progress({**result.terms, "img/s": rate})
        if d.main and (step % config.log_every == 0 or step == end):
            logger.log(step, {**result.terms, "grad_norm": result.grad_norm, "lr": lr,
                              "images_per_s": rate, "epoch": step / plan.steps_per_epoch})

        # ---- 3. validate / select: rank 0 scores the held-out split (robust, then clean accuracy, decides) -----
        scores, new_best = {}, False
        if data.val is not None and (step % eval_every == 0 or step == total):
            scores, new_best = _select(step, ctx, data.val, config, plan, progress, logger)

        # ---- 4. save: on schedule, at a new best, at the end, and when a signal asked every rank to stop -------
        stop = d.any(signals.requested, device)
        if d.main and (step % save_every == 0 or step == end or new_best or stop):
            save(step, scores, best=new_best)
        if stop:
            d.barrier()  # rank 0's checkpoint is committed before any rank exits
            raise TrainingStopped(run, step, signals.name or "a signal to another rank")

    if d.main:
        _finish(run, progress, data.val is None and end == total, end, total)
    logger.close()
    d.barrier()
    return run


def _build(config: TrainConfig, method: Method, classes: list[str], device: torch.device, d: Dist, total: int
           ) -> tuple[StepContext, bool]:
    """The step's context (target and frozen original, optimizer, schedule, scaler) and whether the architecture
    uses QuickGELU."""
    seed_everything(config.seed)
    target, original, quick_gelu = _classifiers(config, classes, device, method)
    optimizer = build_optimizer(target.clip.visual.parameters(), config)
    scheduler = build_scheduler(optimizer, config, total)
    dtype = _AUTOCAST[config.precision] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    return StepContext(method, target, original, wrap_tower(target.clip.visual, d, device), optimizer, scheduler,
                       scaler, config.attack_settings(), device, dtype, config.seed, d), quick_gelu


def _select(step: int, ctx: StepContext, val: ImageDataset, config: TrainConfig, plan: BatchPlan, progress: Progress,
            logger: RunLogger) -> tuple[dict[str, float], bool]:
    """Rank 0 validates (the others wait): (scores, whether they are the best so far)."""
    scores, new_best, d = {}, False, ctx.dist
    if d.main:
        batch = config.val_batch_size or config.batch_size // (d.world * plan.grad_accum)
        scores = run_validation(ctx.target, val, config, ctx.device, batch)
        logger.log(step, scores, prefix="val")
        best = progress.best
        new_best = best is None or (scores["val_robust"], scores["val_clean"]) > (best["val_robust"],
                                                                                  best["val_clean"])
        if new_best:
            progress.best = {"step": step, **scores}
    d.barrier()
    return scores, new_best


@dataclasses.dataclass
class _Resumed:
    checkpoint: ckpt.Checkpoint
    state: dict[str, Any]
    changes: dict[str, list[Any]]


def _restore_point(run: Path, config: TrainConfig, d: Dist) -> _Resumed | None:
    """The checkpoint ``--resume`` continues from, its state and the config changes (None: step 0)."""
    if d.main:
        for path in ckpt.remove_stale(run):
            print(f"pmgaft train: removed {path.name}, left by an interrupted checkpoint write.")
    if not config.resume:
        return None
    found = ckpt.latest_checkpoint(run)
    if found is None:
        if d.main:
            print(f"pmgaft train: {run} has no complete checkpoint: starting from step 0.")
        return None
    state = found.read_state()
    changes = reconcile(config, state["config"], f"its checkpoint {found.path.name}")
    if d.main:
        print(f"pmgaft train: resuming {run} from step {found.step} ({found.path.relative_to(run)})."
              + "".join(f"\n  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
    return _Resumed(found, state, changes)


def _load(resumed: _Resumed, ctx: StepContext, plan: BatchPlan, progress: Progress, config: TrainConfig) -> None:
    """Weights, optimizer, schedule, scaler, RNG and counters of the checkpoint being resumed."""
    from safetensors.torch import load_file

    state = resumed.state
    if state["data"]["train_images"] != plan.n:
        raise PmgaftError(f"the training set changed since {resumed.checkpoint.path}: {state['data']['train_images']} "
                          f"training images then, {plan.n} now (same --dataset, --data-root, --val-size?); the data "
                          f"order cannot be continued.")
    ctx.target.clip.load_state_dict(load_file(str(resumed.checkpoint.weights)))
    if "optimizer" in resumed.changes:
        warnings.warn("optimizer changed on resume: its state (momentum, moments) starts afresh.", stacklevel=3)
    else:
        ctx.optimizer.load_state_dict(state["optimizer"])
    ctx.scheduler.load_state_dict(state["scheduler"])
    ctx.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    for group in ctx.optimizer.param_groups:  # allowed changes of the optimizer's settings apply from here on
        for key in ("momentum", "weight_decay"):
            if key in group and key in resumed.changes:
                group[key] = getattr(config, key)
    if "lr" in resumed.changes:
        ctx.scheduler.base_lrs = [config.lr for _ in ctx.scheduler.base_lrs]
        for group, factor in zip(ctx.optimizer.param_groups, ctx.scheduler.lr_lambdas):
            group["initial_lr"], group["lr"] = config.lr, config.lr * factor(ctx.scheduler.last_epoch)
    progress.step = progress.committed = resumed.checkpoint.step
    progress.best, progress.skipped = state["best"], list(state["skipped"])


def _start_files(run: Path, config: TrainConfig, target: ZeroShotClassifier, resumed: _Resumed | None,
                 logger: RunLogger, progress: Progress) -> None:
    """Rank 0: config.yaml, prompts.json, the resume record; last/best re-pointed at the resumed checkpoint."""
    atomic_write_text(run / ckpt.CONFIG, config_to_yaml(config))
    atomic_write_json(run / "prompts.json", {"classnames": target.classnames, "templates": target.templates})
    if resumed is None:
        return
    logger.log(progress.step, {"checkpoint": resumed.checkpoint.path.name, "changes": resumed.changes},
               prefix="resume")
    ckpt.publish(run, resumed.checkpoint, ckpt.LAST)  # a kill between a commit and its publish left them behind
    best = next((c for c in ckpt.checkpoints(run) if progress.best and c.step == progress.best["step"]), None)
    if best is not None:
        ckpt.publish(run, best, ckpt.BEST)


class _Saver:
    """Rank 0's checkpoint of the current step: weights checked finite, committed, published, old ones pruned."""

    def __init__(self, run: Path, config: TrainConfig, ctx: StepContext, plan: BatchPlan, progress: Progress,
                 quick_gelu: bool, logger: RunLogger) -> None:
        self.run, self.config, self.ctx, self.plan, self.progress = run, config, ctx, plan, progress
        self.quick_gelu, self.logger = quick_gelu, logger

    def __call__(self, step: int, scores: dict[str, float], *, best: bool) -> None:
        model, config, ctx, progress = self.ctx.target.clip, self.config, self.ctx, self.progress
        if not all_finite(model):
            raise NonFiniteError(f"the weights after step {step} hold NaN/inf values: they were not saved; the last "
                                 f"good checkpoint (step {progress.committed}) is {self.run / ckpt.LAST}. Lower "
                                 f"--lr (now {config.lr:g}) and start again from it.")
        meta = ckpt.weights_metadata(config, step, step / self.plan.steps_per_epoch, scores, quick_gelu=self.quick_gelu)
        state = {"step": step, "config": saved_values(config), "best": progress.best,
                 "skipped": list(progress.skipped), "optimizer": ctx.optimizer.state_dict(),
                 "scheduler": ctx.scheduler.state_dict(), "scaler": ctx.scaler.state_dict(), "rng": rng_state(),
                 "data": {"train_images": self.plan.n, "batch_size": self.plan.batch_size, "seed": self.plan.seed},
                 "world": ctx.dist.world}
        checkpoint = ckpt.commit(self.run, step, model, meta, state)
        progress.committed = step
        ckpt.publish(self.run, checkpoint, ckpt.LAST)
        if best:
            ckpt.publish(self.run, checkpoint, ckpt.BEST)
        ckpt.prune(self.run, config.keep_checkpoints, progress.best["step"] if progress.best else None)
        self.logger.flush()  # TensorBoard holds every committed step, whatever stops the run next


def _nonfinite(step: int, result: StepResult, ctx: StepContext, config: TrainConfig, save: _Saver,
               logger: RunLogger) -> None:
    """A batch whose loss or gradient is NaN/inf: skip it (within ``skip_nonfinite``) or stop, saving the last
    good state (the weights before this step) so that nothing trained is lost."""
    progress, d = save.progress, ctx.dist
    terms = ", ".join(f"{k}={v:.4g}" for k, v in result.terms.items())
    skip = len(progress.skipped) < config.skip_nonfinite
    logger.log(step, {**result.terms, "grad_norm": result.grad_norm, "skipped": skip}, prefix="nonfinite")
    if skip:
        progress.skipped.append(step)
        skip_update(ctx)
        warnings.warn(f"step {step}: non-finite loss or gradient ({terms}, grad_norm={result.grad_norm:.4g}); batch "
                      f"skipped ({len(progress.skipped)} of --skip-nonfinite {config.skip_nonfinite}).", stacklevel=3)
        return
    good = step - 1
    if d.main and good > progress.committed:
        save(good, {}, best=False)
    d.barrier()
    kept = f"the last good weights (step {good}) are in {save.run / ckpt.LAST}" if good else "nothing was saved"
    raise NonFiniteError(f"non-finite loss or gradient at step {step} ({terms}, grad_norm={result.grad_norm:.4g}): "
                         f"training stopped and {kept}. Lower --lr (now {config.lr:g}), or resume with "
                         f"--resume --skip-nonfinite N to skip up to N such batches.")


def _finish(run: Path, progress: Progress, last_is_best: bool, end: int, total: int) -> None:
    """Rank 0: with nothing to select on, the final weights are the best; summary.json."""
    final = ckpt.latest_checkpoint(run)
    if last_is_best and final is not None:
        ckpt.publish(run, final, ckpt.BEST)
    atomic_write_json(run / "summary.json", {"steps": progress.step, "total_steps": total, "best": progress.best,
                                             "skipped_nonfinite": progress.skipped, "finished": end == total})


def _classifiers(config: TrainConfig, classes: list[str], device: torch.device, method: Any
                 ) -> tuple[ZeroShotClassifier, ZeroShotClassifier | None, bool]:
    """(target, frozen original or None, whether the architecture uses QuickGELU)."""
    prompts = train_prompts(config, classes)  # before the model: bad prompts cost no model load
    loaded = load_clip(config.model, config.pretrained, device=device, text_pretrained=config.text_pretrained,
                       quick_gelu=config.quick_gelu, trust_checkpoint=config.trust_checkpoint)
    kwargs = {"normalization": config.normalization, "logit_scale": config.logit_scale}
    target = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, prompts.classnames, prompts.templates, **kwargs)
    original = target.frozen_copy() if method.needs_original else None  # shares the (frozen) text tower
    target.requires_grad_(False)
    target.clip.visual.requires_grad_(True)  # the image tower only: text tower and logit scale stay frozen
    return target.train(), original, loaded.quick_gelu
