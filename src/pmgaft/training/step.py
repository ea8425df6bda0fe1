"""One optimizer step: attack, loss terms, backward over the micro-batches, update. Reads top to bottom."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from pmgaft.methods import AttackSettings, Method
from pmgaft.models import ZeroShotClassifier
from pmgaft.training.distributed import Dist, tower


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


def _autocast(ctx: StepContext) -> contextlib.AbstractContextManager:
    if ctx.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype)


def attack_generator(ctx: StepContext, step: int, micro_batch: int) -> torch.Generator:
    """The train-time attack's random start generator for (seed, step, rank, micro-batch)."""
    return torch.Generator(device=ctx.device).manual_seed(
        hash((ctx.seed, step, ctx.dist.rank, micro_batch)) & 0x7FFF_FFFF_FFFF)


def train_step(ctx: StepContext, step: int, micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
               ) -> dict[str, float]:
    """Run optimizer step ``step`` on this process's micro-batches; returns the batch's loss terms."""
    local = sum(len(y) for _, y in micro_batches)
    logged: dict[str, float] = {}
    ctx.optimizer.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(micro_batches):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)  # [m, 3, H, W], [m]
        weight = len(y) / local  # batch-mean losses: micro-batch means weighted into the batch mean

        # 1. the train-time adversary, seeded by (seed, step, rank, micro-batch): replayed exactly on resume
        generator = attack_generator(ctx, step, i)
        with _autocast(ctx):
            x_adv = ctx.method.attack(ctx.target, ctx.original, x, y, ctx.attack, generator)  # no param grads

        # 2. the method's loss terms, through DDP on the last micro-batch only (one all-reduce per step)
        with tower(ctx.target, ctx.wrapped_tower, sync=i == len(micro_batches) - 1) as target, _autocast(ctx):
            terms = ctx.method.losses(target, ctx.original, x, x_adv, y)  # {"...": scalar, "total": scalar}
            ctx.scaler.scale(terms["total"] * weight).backward()
        for key, value in terms.items():
            logged[key] = logged.get(key, 0.0) + weight * float(value.detach())

    # 3. update the image tower, then the per-step learning rate
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    ctx.scheduler.step()
    return logged
