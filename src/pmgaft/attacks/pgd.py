"""Projected gradient descent (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083), L-inf and L2.

Threat model: x_adv in the eps-ball around x (L-inf or L2) and in [0, 1]. The step direction is computed from
an **fp32 gradient of the summed per-sample loss** with respect to the perturbation only, so

* the result does not depend on the batch size (every sample's gradient is its own) nor on autocast;
* the model's parameters get no gradient (``torch.autograd.grad`` w.r.t. the perturbation: nothing
  accumulates into ``.grad`` and no parameter gradient is computed);
* the model's train/eval mode is never touched: call it in the mode you want attacked.

``reduction="mean"`` divides the summed objective by the batch size before differentiating -- the released
PMG-AFT / TGA-ZSR arithmetic (batch-mean CE). Under the caller's fp16 autocast, with no loss scaling, its
input gradients underflow at large batch and the attack weakens (docs/protocols.md, official-code); offered only to
reproduce those runs.

Example::

    x_adv = pgd(classifier, x, y, eps=1/255, step_size=1/255, steps=10)
    robust_acc = (classifier(x_adv).argmax(1) == y).float().mean()
"""
from __future__ import annotations

from typing import Callable, Sequence

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


def sample_seeds(seed: int, keys: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """One 63-bit seed per sample from (``seed``, the sample's key, e.g. its dataset position): splitmix64.

    Keying random starts by sample, not by batch, makes an attack's result independent of the batch size, the
    batch composition and the number of processes sharing the work.
    """
    mask = (1 << 64) - 1
    out = []
    for key in (keys.tolist() if isinstance(keys, torch.Tensor) else keys):
        z = (int(seed) * 0x9E3779B97F4A7C15 + int(key) + 0x632BE59BD9B4E019) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append((z ^ (z >> 31)) >> 1)
    return torch.tensor(out, dtype=torch.int64)


def random_init(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None = None,
                seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform start in the L-inf ball; for L2 a uniform direction with radius ~ U(0, eps).

    ``seeds`` [B]: each sample's start is drawn on the CPU from its own generator (the same numbers on every
    device, batch and process); otherwise the whole batch is drawn from ``generator``.
    """
    if seeds is not None:
        if len(seeds) != len(x):
            raise PmgaftError(f"sample_seeds has {len(seeds)} entries for a batch of {len(x)} images.")
        return _per_sample_init(x, eps, norm, seeds).to(x.device)
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device)
    return d / _per_sample_norm(d) * r * eps


def _per_sample_init(x: torch.Tensor, eps: float, norm: str, seeds: torch.Tensor) -> torch.Tensor:
    """``random_init`` with each sample drawn on the CPU from its own generator, into one preallocated buffer."""
    noise = torch.empty(x.shape, dtype=torch.float32)
    radius = torch.empty(len(x), dtype=torch.float32)
    for i, seed in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(int(seed))
        if norm == "linf":
            torch.rand(x.shape[1:], generator=g, out=noise[i])
        else:
            torch.randn(x.shape[1:], generator=g, out=noise[i])
            radius[i] = torch.rand((), generator=g)
    if norm == "linf":
        return noise.mul_(2).sub_(1).mul_(eps)
    return noise / _per_sample_norm(noise) * radius.view(-1, *([1] * (x.dim() - 1))) * eps


def initial_delta(x: torch.Tensor, eps: float, norm: str, *, random_start: bool = True,
                  generator: torch.Generator | None = None, seed: int = 0,
                  seeds: torch.Tensor | None = None) -> torch.Tensor:
    """The perturbation PGD starts from: projected random start, or zeros."""
    if not (random_start and eps > 0):
        return torch.zeros_like(x)
    if seeds is None and generator is None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    return project(random_init(x, eps, norm, generator, seeds), x, eps, norm)


def pgd_step(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             delta: torch.Tensor, *, eps: float, step_size: float, loss_fn: AttackLoss, norm: str = "linf",
             reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """One ascent step from ``x + delta``: returns (the next delta, the model's output at ``x + delta``).

    The output (detached) is what the step's gradient was computed from: callers that score every iterate
    (early exit) read predictions from it without another forward pass.
    """
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        output = model(x + delta)
        objective = loss_fn(output, y).float().sum()  # summed, not averaged: see module doc
        if reduction == "mean":
            objective = objective / len(x)
        (grad,) = torch.autograd.grad(objective, delta)
    grad = grad.float()
    with torch.no_grad():
        if norm == "linf":
            step = step_size * grad.sign()
        else:
            step = step_size * grad / _per_sample_norm(grad)
        return project(delta.detach() + step, x, eps, norm), output.detach()


def resolve_loss(loss: str | AttackLoss) -> AttackLoss:
    return lookup(ATTACK_LOSSES, loss, "attack loss") if isinstance(loss, str) else loss


def check_pgd_options(norm: str, reduction: str) -> None:
    if norm not in NORMS:
        raise PmgaftError(f"unknown norm {norm!r}; use one of {NORMS}.")
    if reduction not in REDUCTIONS:
        raise PmgaftError(f"unknown attack reduction {reduction!r}; use one of {REDUCTIONS}.")


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
        step_size: float, steps: int, loss: str | AttackLoss = "ce", norm: str = "linf",
        random_start: bool = True, generator: torch.Generator | None = None, seed: int = 0,
        reduction: str = "sum", sample_seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Maximize ``loss(model(x_adv), y)`` over the eps-ball. Returns x_adv, detached, in the ball and in [0, 1].

    Args:
        model: callable ``x [B, C, H, W] in [0, 1] -> output`` (logits for "ce"/"cw"; embeddings for "l2").
        x: clean images in [0, 1]. y: labels [B] (or targets matching the output, e.g. clean embeddings).
        eps, step_size: in image units (1/255 = 0.0039). steps: number of gradient steps.
        loss: "ce", "cw" (margin), "l2" (squared distance) or a callable returning per-sample losses [B].
        norm: "linf" (sign steps) or "l2" (normalized-gradient steps).
        random_start: start uniformly inside the ball, drawn from ``sample_seeds`` (one seed per sample, see
            :func:`sample_seeds`), else from ``generator`` (or ``seed``) for the whole batch.
        reduction: "sum" (per-sample gradients, the default) or "mean" (the released codes' batch mean).
    """
    check_attack_args(x, eps=eps, step_size=step_size, steps=steps)
    check_pgd_options(norm, reduction)
    loss_fn = resolve_loss(loss)
    x = x.detach().float()
    delta = initial_delta(x, eps, norm, random_start=random_start, generator=generator, seed=seed,
                          seeds=sample_seeds)
    for _ in range(int(steps)):
        delta, _ = pgd_step(model, x, y, delta, eps=eps, step_size=step_size, loss_fn=loss_fn, norm=norm,
                            reduction=reduction)
    return (x + delta).clamp(0.0, 1.0).detach()
