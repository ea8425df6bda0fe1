"""Adversarial attacks on ``model(x in [0, 1]) -> logits`` callables, and the ``ATTACKS`` registry.

Every registered attack has one signature, so evaluation loops never branch on the attack name::

    x_adv, info = ATTACKS["pgd"](model, x, y, eps=1/255, step_size=1/255, steps=100, seed=0)
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from pmgaft.attacks.autoattack import autoattack, plan_autoattack
from pmgaft.attacks.losses import ATTACK_LOSSES, cross_entropy, margin, squared_l2
from pmgaft.attacks.pgd import check_attack_args, pgd, project


class Attack(Protocol):
    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 eps: float, step_size: float, steps: int, seed: int) -> tuple[torch.Tensor, dict]: ...


def _none(model, x, y, *, eps, step_size, steps, seed):
    return x.detach(), {}


def _pgd_with(loss: str) -> Attack:
    def run(model, x, y, *, eps, step_size, steps, seed):
        x_adv = pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, loss=loss, seed=seed)
        return x_adv, {"loss": loss, "norm": "linf", "random_start": True}
    return run


def _autoattack(model, x, y, *, eps, step_size, steps, seed):
    return autoattack(model, x, y, eps=eps, seed=seed)  # parameter-free: step_size/steps unused


# CLI name -> attack. "cw" is PGD on the margin loss, as later papers' "CW" rows use.
ATTACKS: dict[str, Attack] = {
    "none": _none,
    "pgd": _pgd_with("ce"),
    "cw": _pgd_with("cw"),
    "autoattack": _autoattack,
}

__all__ = ["ATTACKS", "ATTACK_LOSSES", "Attack", "autoattack", "check_attack_args", "cross_entropy", "margin",
           "pgd", "plan_autoattack", "project", "squared_l2"]
