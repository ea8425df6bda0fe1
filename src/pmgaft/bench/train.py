"""One real training step per method: :func:`pmgaft.training.step.train_step` with a real :class:`StepContext`.

The context is built as ``pmgaft train`` builds it (``training/loop.py``): the target classifier in train mode
with only its image tower trainable, a frozen original (:meth:`ZeroShotClassifier.frozen_copy`: its own image
tower, the text tower shared) for the methods that need one, SGD with momentum (or the method's optimizer
default), a constant learning rate, PGD-k at 1/255.
"""
from __future__ import annotations

from typing import Callable

import torch

from pmgaft.bench.harness import Harness
from pmgaft.methods import METHODS, AttackSettings
from pmgaft.training.distributed import Dist
from pmgaft.training.step import StepContext, train_step
from pmgaft.utils import lookup

TRAINABLE = [name for name, cls in METHODS.items() if cls.trainable]


def build_step_context(harness: Harness, method_name: str, *, attack_steps: int = 2, compile: bool = False,
                       seed: int = 0) -> StepContext:
    """The :class:`StepContext` ``pmgaft train`` would run ``method_name`` with, on the harness's model."""
    method = lookup(METHODS, method_name, "method")()
    if hasattr(method, "tokenizer"):  # comp_tga embeds its "not" prompts with the model's own tokenizer
        method.tokenizer = harness.loaded.tokenizer
    target = harness.classifier()
    original = target.frozen_copy() if method.needs_original else None
    target.clip.visual.requires_grad_(True)
    target.train()
    if compile:
        for model in (target, original):
            if model is not None:
                model.clip.visual.compile()
    params = list(target.clip.visual.parameters())
    if method.defaults.get("optimizer") == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-4)
    else:
        optimizer = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    device = harness.device
    scaler = torch.amp.GradScaler(device.type, enabled=harness.autocast_dtype is torch.float16)
    attack = AttackSettings(steps=attack_steps)
    return StepContext(method, target, original, target.clip.visual, optimizer, scheduler, scaler, attack, device,
                       harness.autocast_dtype, seed, Dist())


def step_call(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> Callable[[], dict[str, float]]:
    """A no-argument call running the next optimizer step on ``(x, y)`` (each call is a new step number).

    Returns the step's loss terms; the batch's images sit at dataset positions ``0 .. B-1``.
    """
    counter = iter(range(1, 1 << 62))
    positions = torch.arange(len(y))
    return lambda: train_step(ctx, next(counter), [(x, y, positions)]).terms
