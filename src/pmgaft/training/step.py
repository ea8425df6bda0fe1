"""One optimizer step: attack, loss terms, backward over the micro-batches, checks, update. Reads top to bottom."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from pmgaft.attacks.pgd import sample_seeds
from pmgaft.methods import AttackSettings, Method
from pmgaft.models import ZeroShotClassifier
from pmgaft.training.data import MicroBatch
from pmgaft.training.distributed import Dist, reduce_mean, tower


@dataclass
class StepContext:
    """Everything a step needs besides the batch."""

    method: Method
    target: ZeroShotClassifier  # train mode, image tower trainable
    original: ZeroShotClassifier | None  # eval mode, frozen; None when the method does not use it
    wrapped_tower: nn.Module  # target.clip.visual, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    attack: AttackSettings
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = fp32
    seed: int
    dist: Dist


@dataclass
class StepResult:
    terms: dict[str, float]  # the global batch's loss terms, the same on every rank
    grad_norm: float  # L2 norm of the image tower's (unscaled, averaged) gradient
    finite: bool  # False: a loss term or the gradient is NaN/inf and no update was made


def attack_seeds(seed: int, step: int, positions: torch.Tensor) -> torch.Tensor:
    """One random-start seed per image, keyed by (config seed, step, dataset position) [m]."""
    return sample_seeds(int(sample_seeds(seed, [step])[0]), positions)


def _autocast(ctx: StepContext) -> contextlib.AbstractContextManager:
    if ctx.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype)


def train_step(ctx: StepContext, step: int, micro_batches: Sequence[MicroBatch]) -> StepResult:
    """Run optimizer step ``step`` (1-based) on this process's micro-batches."""
    local = sum(len(y) for _, y, _ in micro_batches)
    logged: dict[str, float] = {}
    ctx.optimizer.zero_grad(set_to_none=True)
    for i, (x, y, positions) in enumerate(micro_batches):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)  # [m, 3, H, W], [m]
        weight = len(y) / local  # batch-mean losses: micro-batch means weighted into the batch mean

        # 1. the train-time adversary; each image's random start is keyed by its dataset position, so the
        #    attack is the same however the global batch is split into ranks and micro-batches
        with _autocast(ctx):
            x_adv = ctx.method.attack(ctx.target, ctx.original, x, y, ctx.attack,
                                      attack_seeds(ctx.seed, step, positions))  # no param grads

        # 2. the method's loss terms, through DDP on the last micro-batch only (one all-reduce per step)
        with tower(ctx.target, ctx.wrapped_tower, sync=i == len(micro_batches) - 1) as target, _autocast(ctx):
            terms = ctx.method.losses(target, ctx.original, x, x_adv, y)  # {"...": scalar, "total": scalar}
            ctx.scaler.scale(terms["total"] * weight).backward()
        for key, value in terms.items():
            logged[key] = logged.get(key, 0.0) + weight * float(value.detach())

    # 3. check: the global batch's loss terms and gradient norm, identical on every rank (DDP averaged the
    #    gradients), so every rank takes the same decision. fp16 overflow is the grad scaler's to handle.
    logged = reduce_mean(logged, ctx.dist, ctx.device)
    ctx.scaler.unscale_(ctx.optimizer)
    grads = [p.grad for p in ctx.target.clip.visual.parameters() if p.grad is not None]
    grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    finite = all(map(math.isfinite, logged.values())) and (math.isfinite(grad_norm) or ctx.scaler.is_enabled())
    if not finite:
        ctx.optimizer.zero_grad(set_to_none=True)
        return StepResult(logged, grad_norm, False)  # no update: the caller stops or skips the batch

    # 4. update the image tower, then the per-step learning rate
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    ctx.scheduler.step()
    return StepResult(logged, grad_norm, True)


def skip_update(ctx: StepContext) -> None:
    """Advance past a skipped batch: the schedule moves on (it stays aligned with the step), the scaler resets."""
    ctx.scaler.update()
    ctx.scheduler.step()
