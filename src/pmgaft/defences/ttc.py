"""TTC: test-time counterattacks (Xing, Zhao & Sebe, CVPR 2025, https://arxiv.org/abs/2503.03613).

A test-time defence for CLIP that needs no training. On an input X in [0, 1] (clean or adversarial), with the
image encoder f (the unnormalized projected embedding, the model's own resize and normalization inside):

1. draw delta_0 ~ U(-eps, eps), clamped so that X + delta_0 lies in [0, 1];
2. tau = ||f(X + delta_0) - f(X)|| / ||f(X)||: adversarial images are "falsely stable" (small tau). On a
   fine-tuned model tau is computed with the ORIGINAL CLIP image tower (``reference``);
3. if tau < tau_thres: N sign-gradient **ascent** steps of size alpha on ||f(X + delta) - f(X)||^2 from delta_0,
   each projected to the eps-ball and the image range, and the output is X + sum_k w_k delta_k with
   w_k proportional to exp(beta k) (about 0.016, 0.117, 0.867 for the defaults); if tau >= tau_thres: X + delta_0
   (the noise only, not the clean image).

Defaults: eps 4/255, alpha 1/255, N 2, beta 2, tau_thres 0.2. N = 0 is the random-noise baseline (X + delta_0,
no tau). The ascent objective is summed over the batch and its gradient taken in fp32, so every sample's steps
are its own (batch-size independent). delta_0 is drawn per sample from ``seeds`` (one per sample, see
:func:`pmgaft.attacks.sample_seeds`), so a result does not depend on the batch either.

``differentiable=True`` (the adaptive attacks) runs the same forward with a graph from X to the output: sign(.)
gets a straight-through backward (``g / mean|g|``) and the gate's decision is held fixed (its derivative is zero
almost everywhere; the tau-evasion attack is the one that moves it).

Example::

    x_def = ttc(classifier, x, seeds=sample_seeds(0, range(len(x))))
    defended_accuracy = (classifier(x_def).argmax(1) == y).float().mean()
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from pmgaft.attacks.pgd import check_attack_args, initial_delta, project
from pmgaft.errors import PmgaftError

DEFAULTS = {"eps": 4 / 255, "step_size": 1 / 255, "steps": 2, "beta": 2.0, "tau_thres": 0.2}


class ImageEncoder(Protocol):
    """What TTC needs of a model: the image embedding of [0, 1] images (a :class:`ZeroShotClassifier` has it)."""

    def image_features(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor: ...


@dataclass
class Counterattack:
    """TTC's output on a batch: the defended images and, per sample, tau and whether the gate counterattacked."""

    images: torch.Tensor  # [B, C, H, W] in [0, 1]
    tau: torch.Tensor  # [B] fp32; NaN when not computed (N = 0: the gate decides nothing)
    counterattacked: torch.Tensor  # [B] bool: tau < tau_thres (the weighted steps were applied)


def check_ttc_args(*, eps: float, step_size: float, steps: int, beta: float, tau_thres: float) -> None:
    """TTC's settings in image units: eps in [0, 1], step size >= 0, integer steps >= 0, beta finite, tau > 0."""
    if not (isinstance(eps, (int, float)) and 0.0 <= eps <= 1.0):
        raise PmgaftError(f"TTC eps must be in [0, 1] in image units (4/255 = {4 / 255:.5f}), got {eps}; on the "
                          f"command line --ttc-eps is in 1/255 units.")
    if not (isinstance(step_size, (int, float)) and 0.0 <= step_size <= 1.0):
        raise PmgaftError(f"TTC step size must be in [0, 1] in image units, got {step_size}; on the command line "
                          f"--ttc-step-size is in 1/255 units.")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise PmgaftError(f"TTC steps must be a non-negative integer (0 = the random-noise baseline), got {steps}.")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
        raise PmgaftError(f"TTC beta (the step weighting exp(beta k)) must be a finite number, got {beta}.")
    if not (isinstance(tau_thres, (int, float)) and 0.0 < tau_thres < math.inf):
        raise PmgaftError(f"TTC tau threshold must be a positive finite number (default 0.2), got {tau_thres}.")


def features(encoder: ImageEncoder, x: torch.Tensor) -> torch.Tensor:
    """f(x): the unnormalized projected image embedding [B, D], in fp32."""
    return encoder.image_features(x, normalize=False).float()


def tau_statistic(encoder: ImageEncoder, x: torch.Tensor, delta0: torch.Tensor) -> torch.Tensor:
    """tau = ||f(x + delta0) - f(x)|| / ||f(x)|| per sample [B] (differentiable when x is)."""
    anchor = features(encoder, x)
    return _relative_change(features(encoder, x + delta0), anchor)


def _relative_change(moved: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    return (moved - anchor).norm(dim=-1) / anchor.norm(dim=-1).clamp_min(1e-12)


def step_weights(steps: int, beta: float, counterattacked: torch.Tensor) -> torch.Tensor:
    """[B, N+1]: exp(beta k) / sum_j exp(beta j) where the gate counterattacked, else [1, 0, ..., 0]."""
    k = torch.arange(steps + 1, dtype=torch.float32, device=counterattacked.device)
    soft = torch.softmax(beta * k, dim=0)  # exp(beta k) normalized, without overflow for a large beta
    hard = torch.zeros_like(soft)
    hard[0] = 1.0
    return torch.where(counterattacked[:, None], soft, hard)


def _straight_through_sign(g: torch.Tensor) -> torch.Tensor:
    """sign(g) forward; backward as g / mean|g| (per sample): the linear map with sign's average magnitude."""
    scale = g.detach().abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
    linear = g / scale
    return g.sign().detach() + (linear - linear.detach())


def second_order() -> contextlib.AbstractContextManager:
    """Attention on its math backend: the fused kernels have no double backward (differentiable TTC needs it)."""
    return sdpa_kernel(SDPBackend.MATH)


def defend(model: ImageEncoder, x: torch.Tensor, delta0: torch.Tensor, *, eps: float, step_size: float, steps: int,
           beta: float, tau_thres: float, reference: ImageEncoder | None = None,
           differentiable: bool = False) -> Counterattack:
    """TTC from a given delta_0 (already in the eps-ball and the image range). See the module docstring.

    ``differentiable=False``: the defence itself (nothing flows back to ``x``). ``True``: the adaptive attacks'
    view, with a graph from ``x`` (and ``delta0``) to the output; run it under :func:`second_order`.
    """
    deltas = [delta0]
    tau = torch.full((len(x),), float("nan"), device=x.device)
    if steps > 0:
        if reference is not None:  # a fine-tuned model: the original tower decides (no gradient: the gate is fixed)
            with torch.no_grad():
                tau = tau_statistic(reference, x.detach(), delta0.detach())
        with torch.set_grad_enabled(differentiable):
            anchor = features(model, x)  # f(X) [B, D]
        delta = delta0
        for k in range(steps):
            d = delta if differentiable and delta.requires_grad else delta.detach().requires_grad_(True)
            with torch.enable_grad():
                moved = features(model, x + d)
                if k == 0 and reference is None:  # tau from the model's own step-0 embedding
                    tau = _relative_change(moved.detach(), anchor.detach())
                distance = (moved - anchor).pow(2).sum()  # summed over the batch: per-sample gradients
                (g,) = torch.autograd.grad(distance, d, create_graph=differentiable)
            direction = _straight_through_sign(g.float()) if differentiable else g.float().sign()
            delta = project(d + step_size * direction, x, eps, "linf")  # ascent, then the ball and [0, 1]
            deltas.append(delta if differentiable else delta.detach())
    counterattacked = tau < tau_thres  # NaN (N = 0) compares False: the noise only
    w = step_weights(steps, beta, counterattacked)  # [B, N+1]
    combined = sum(w[:, k].view(-1, 1, 1, 1) * deltas[k] for k in range(steps + 1))
    return Counterattack((x + combined).clamp(0.0, 1.0), tau, counterattacked)


def counterattack(model: ImageEncoder, x: torch.Tensor, *, eps: float = DEFAULTS["eps"],
                  step_size: float = DEFAULTS["step_size"], steps: int = DEFAULTS["steps"],
                  beta: float = DEFAULTS["beta"], tau_thres: float = DEFAULTS["tau_thres"],
                  reference: ImageEncoder | None = None, seeds: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> Counterattack:
    """TTC on a batch of [0, 1] images: draws delta_0 (per sample from ``seeds``, else from ``generator``) and
    returns the defended images with tau and the gate per sample. ``reference``: the original CLIP image tower
    for tau on a fine-tuned ``model`` (None: the model itself)."""
    check_ttc_args(eps=eps, step_size=step_size, steps=steps, beta=beta, tau_thres=tau_thres)
    check_attack_args(x, eps=eps)
    x = x.detach().float()
    delta0 = initial_delta(x, eps, "linf", generator=generator, seeds=seeds)
    out = defend(model, x, delta0, eps=eps, step_size=step_size, steps=int(steps), beta=beta, tau_thres=tau_thres,
                 reference=reference)
    return Counterattack(out.images.detach(), out.tau.detach(), out.counterattacked)


def ttc(model: ImageEncoder, x: torch.Tensor, *, eps: float = DEFAULTS["eps"], step_size: float = DEFAULTS["step_size"],
        steps: int = DEFAULTS["steps"], beta: float = DEFAULTS["beta"], tau_thres: float = DEFAULTS["tau_thres"],
        reference: ImageEncoder | None = None, seeds: torch.Tensor | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """The defended images X + sum_k w_k delta_k, detached, in [0, 1] (see :func:`counterattack`)."""
    return counterattack(model, x, eps=eps, step_size=step_size, steps=steps, beta=beta, tau_thres=tau_thres,
                         reference=reference, seeds=seeds, generator=generator).images


def ttc_cost(steps: int, separate_reference: bool) -> dict[str, int]:
    """Forward and backward passes of the image tower per image, classification excluded: f(X), then N x
    (forward + input backward); a separate reference tower adds 2 forwards for tau. N = 0: none."""
    if steps == 0:
        return {"forwards": 0, "backwards": 0}
    return {"forwards": 1 + steps + (2 if separate_reference else 0), "backwards": steps}
