"""Projected gradient descent (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083), L-inf and L2.

Threat model: x_adv in the eps-ball around x (L-inf or L2) and in [0, 1]. The step direction is computed from
an **fp32 gradient of the summed per-sample loss** with respect to the perturbation only, so

* the result does not depend on the batch size (every sample's gradient is its own) nor on autocast;
* the model's parameters get no gradient (``torch.autograd.grad`` w.r.t. the perturbation: nothing
  accumulates into ``.grad`` and no parameter gradient is computed);
* the model's train/eval mode is never touched: call it in the mode you want attacked.

``reduction="mean"`` divides the summed objective by the batch size before differentiating -- the released
PMG-AFT / TGA-ZSR arithmetic (batch-mean CE). Under the caller's fp16 autocast, with no loss scaling, its
input gradients underflow at large batch and the attack weakens (PAPER.md, "Known flaw"); offered only to
reproduce those runs.

Example::

    x_adv = pgd(classifier, x, y, eps=1/255, step_size=1/255, steps=10)
    robust_acc = (classifier(x_adv).argmax(1) == y).float().mean()
"""
from __future__ import annotations

from typing import Callable

import torch

from pmgaft.attacks.losses import ATTACK_LOSSES, AttackLoss
from pmgaft.errors import PmgaftError
from pmgaft.utils import lookup

NORMS = ("linf", "l2")
REDUCTIONS = ("sum", "mean")


def check_attack_args(x: torch.Tensor, *, eps: float, step_size: float = 0.0, steps: int = 0) -> None:
    """Shared validation: images [B, C, H, W] in [0, 1], eps in [0, 1], steps >= 0."""
    if not 0.0 <= eps <= 1.0:
        raise PmgaftError(f"eps must be in [0, 1] (images are in [0, 1]; 1/255 = {1/255:.5f}), got {eps}. "
                          f"On the command line eps is given in 1/255 units.")
    if steps < 0 or int(steps) != steps:
        raise PmgaftError(f"steps must be a non-negative integer, got {steps}.")
    if step_size < 0:
        raise PmgaftError(f"step_size must be >= 0, got {step_size}.")
    if x.dim() != 4:
        raise PmgaftError(f"expected a batch of images [B, C, H, W], got shape {tuple(x.shape)}.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise PmgaftError(f"images must be in [0, 1] (normalization belongs inside the model); got range "
                          f"[{x.min().item():.3f}, {x.max().item():.3f}].")


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``delta`` onto the eps-ball, then so that x + delta lies in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_sample_norm(delta)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def random_init(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Uniform start in the L-inf ball; for L2 a uniform direction with radius ~ U(0, eps)."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device)
    return d / _per_sample_norm(d) * r * eps


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
        step_size: float, steps: int, loss: str | AttackLoss = "ce", norm: str = "linf",
        random_start: bool = True, generator: torch.Generator | None = None, seed: int = 0,
        reduction: str = "sum") -> torch.Tensor:
    """Maximize ``loss(model(x_adv), y)`` over the eps-ball. Returns x_adv, detached, in the ball and in [0, 1].

    Args:
        model: callable ``x [B, C, H, W] in [0, 1] -> output`` (logits for "ce"/"cw"; embeddings for "l2").
        x: clean images in [0, 1]. y: labels [B] (or targets matching the output, e.g. clean embeddings).
        eps, step_size: in image units (1/255 = 0.0039). steps: number of gradient steps.
        loss: "ce", "cw" (margin), "l2" (squared distance) or a callable returning per-sample losses [B].
        norm: "linf" (sign steps) or "l2" (normalized-gradient steps).
        random_start: start uniformly inside the ball, drawn from ``generator`` (or ``seed``).
        reduction: "sum" (per-sample gradients, the default) or "mean" (the released codes' batch mean).
    """
    check_attack_args(x, eps=eps, step_size=step_size, steps=steps)
    if norm not in NORMS:
        raise PmgaftError(f"unknown norm {norm!r}; use one of {NORMS}.")
    if reduction not in REDUCTIONS:
        raise PmgaftError(f"unknown attack reduction {reduction!r}; use one of {REDUCTIONS}.")
    loss_fn = lookup(ATTACK_LOSSES, loss, "attack loss") if isinstance(loss, str) else loss
    x = x.detach().float()
    if random_start and eps > 0:
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        delta = project(random_init(x, eps, norm, generator), x, eps, norm)
    else:
        delta = torch.zeros_like(x)
    for _ in range(int(steps)):
        delta.requires_grad_(True)
        with torch.enable_grad():
            objective = loss_fn(model(x + delta), y).float().sum()  # summed, not averaged: see module doc
            if reduction == "mean":
                objective = objective / len(x)
            (grad,) = torch.autograd.grad(objective, delta)
        grad = grad.float()
        with torch.no_grad():
            if norm == "linf":
                step = step_size * grad.sign()
            else:
                step = step_size * grad / _per_sample_norm(grad)
            delta = project(delta.detach() + step, x, eps, norm)
    return (x + delta).clamp(0.0, 1.0).detach()
