"""Optimizer and learning-rate schedule of the image tower.

Schedule (TeCoA / PMG-AFT ``cosine_lr``, stepped every optimizer step)::

    lr(s) = base * (s + 1) / warmup                                  for s < warmup
    lr(s) = base * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))   afterwards
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from pmgaft.training.config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (paper: lr 5e-5, momentum 0.9, wd 0) or AdamW (FARE)."""
    params = list(params)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def warmup_cosine(warmup: int, total: int):
    """The multiplier ``lr(s) / base`` as a function of the optimizer step ``s``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))
