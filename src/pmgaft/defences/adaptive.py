"""Adaptive (defence-aware) attacks on TTC: the attacker knows the defence and attacks the defended classifier.

Test-time defences have a history of falling to attacks that see them (Croce et al., ICML 2022,
https://arxiv.org/abs/2202.13711); TTC's own paper lists "may be circumvented by adaptive attacks". Both
attacks below are L-inf PGD (the evaluated attack's eps, steps, step size, loss and per-sample random start) on
an objective averaged over ``draws`` samples of the defence's noise delta_0 per step (EOT, Athalye et al.,
ICML 2018); each draw is keyed by the sample's seed, the step and the draw index, never the evaluation's own.

* ``e2e`` -- end to end through the unrolled counterattack: the loss of the classifier on the defended image
  X' + sum_k w_k delta_k(X'), differentiated through every counterattack step (second order: the steps are
  gradients themselves). sign(.) gets a straight-through backward (g / mean|g|); the gate's decision is held
  fixed in the backward pass (BPDA: its derivative is zero almost everywhere).
* ``bpda`` -- the defence as the identity in the backward pass (BPDA, Athalye et al.): the loss on the defended
  image, differentiated as if X' + delta(X') moved with X'. First order only; at large eps, where the unrolled
  gradient is less reliable, it is often the stronger of the two (worst case over both).
* ``tau`` -- tau-evasion: the loss on X' + delta_0 (what TTC outputs when tau >= tau_thres) plus a bonus
  ``TAU_WEIGHT x min(tau / tau_thres, TAU_MARGIN)`` that pushes tau above the threshold, so the defence falls
  back to noise; tau is computed as the defence computes it (the original tower on a fine-tuned model).

With a deterministic defence (eps 0) one draw is exact; with eps 0 and 0 steps the defence is the identity and
``e2e`` is plain PGD, step for step (tests check it).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from pmgaft.attacks.losses import AttackLoss
from pmgaft.attacks.pgd import check_attack_args, initial_delta, project, sample_seeds
from pmgaft.defences.ttc import DEFAULTS, ImageEncoder, defend, second_order, tau_statistic

TAU_WEIGHT = 1.0  # weight of the tau-evasion bonus (in units of the attack loss)
TAU_MARGIN = 1.5  # the bonus stops growing at tau = TAU_MARGIN x tau_thres, so every draw clears the gate

# x [B, C, H, W], y [B], this step's per-sample noise seeds [B] -> per-sample objective [B], maximized
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AdaptiveAttack:
    """One adaptive attack: how to build its objective, and when it applies to the defence's settings."""

    name: str
    description: str
    objective: Callable[[Any, AttackLoss, dict[str, Any], ImageEncoder | None], Objective]
    applies: Callable[[dict[str, Any]], bool] = lambda settings: True


def eot_pgd(objective: Objective, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
            draws: int, start_seeds: torch.Tensor, draw_seeds: torch.Tensor) -> torch.Tensor:
    """L-inf PGD on ``objective`` summed over ``draws`` noise draws per step (EOT); returns x_adv detached.

    The start and the step are :func:`pmgaft.attacks.pgd`'s (uniform start from ``start_seeds``, sign of the
    fp32 gradient of the summed objective, projection to the ball and [0, 1]); draw j of step k uses the seeds
    ``sample_seeds(k * draws + j, draw_seeds)``, so a sample's draws depend on nothing but its own seed.
    """
    check_attack_args(x, eps=eps, step_size=step_size, steps=steps)
    x = x.detach().float()
    delta = initial_delta(x, eps, "linf", seeds=start_seeds)
    for k in range(int(steps)):
        grad = torch.zeros_like(x)
        for j in range(draws):
            d = delta.detach().requires_grad_(True)
            with torch.enable_grad():
                value = objective(x + d, y, sample_seeds(k * draws + j, draw_seeds)).float().sum()
                (g,) = torch.autograd.grad(value, d)
            grad += g.float()
        delta = project(delta + step_size * grad.sign(), x, eps, "linf")
    return (x + delta).clamp(0.0, 1.0).detach()


def _noise(x: torch.Tensor, settings: dict[str, Any], seeds: torch.Tensor) -> torch.Tensor:
    """One draw of TTC's delta_0 for each sample (in the ball and the image range; differentiable in x)."""
    return initial_delta(x, settings["eps"], "linf", seeds=seeds)


def _end_to_end(model: Any, loss_fn: AttackLoss, settings: dict[str, Any],
                reference: ImageEncoder | None) -> Objective:
    steps = int(settings.get("steps", 0))

    def objective(x: torch.Tensor, y: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        with second_order() if steps else contextlib.nullcontext():
            defended = defend(model, x, _noise(x, settings, seeds), reference=reference, differentiable=True,
                              **{**DEFAULTS, **settings})  # random-noise: steps 0, the rest unused
        return loss_fn(model(defended.images), y)
    return objective


def _identity_backward(model: Any, loss_fn: AttackLoss, settings: dict[str, Any],
                       reference: ImageEncoder | None) -> Objective:
    def objective(x: torch.Tensor, y: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        anchor = x.detach()
        defended = defend(model, anchor, _noise(anchor, settings, seeds), reference=reference,
                          **{**DEFAULTS, **settings}).images
        return loss_fn(model(x + (defended - anchor).detach()), y)  # value: the defended image; gradient: identity
    return objective


def _tau_evasion(model: Any, loss_fn: AttackLoss, settings: dict[str, Any],
                 reference: ImageEncoder | None) -> Objective:
    encoder = reference if reference is not None else model

    def objective(x: torch.Tensor, y: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        delta0 = _noise(x, settings, seeds)
        tau = tau_statistic(encoder, x, delta0)  # [B]
        bonus = TAU_WEIGHT * torch.clamp(tau / settings["tau_thres"], max=TAU_MARGIN)
        return loss_fn(model(x + delta0), y) + bonus
    return objective


TTC_ADAPTIVE: dict[str, AdaptiveAttack] = {a.name: a for a in (
    AdaptiveAttack("e2e", "end to end through the unrolled counterattack (straight-through sign, gate fixed), "
                   "EOT over delta_0", _end_to_end),
    AdaptiveAttack("bpda", "the defended image, with the defence as the identity in the backward pass (BPDA), "
                   "EOT over delta_0", _identity_backward, applies=lambda s: int(s.get("steps", 0)) > 0),
    AdaptiveAttack("tau", "tau-evasion: the loss on X + delta_0 plus a bonus pushing tau above the threshold, "
                   "EOT over delta_0", _tau_evasion,
                   applies=lambda s: int(s.get("steps", 0)) > 0 and s["eps"] > 0),  # else the gate decides nothing
)}


def adaptive_settings() -> dict[str, Any]:
    """The constants of the adaptive attacks (part of a defended cell's fingerprint and card)."""
    return {"tau_weight": TAU_WEIGHT, "tau_margin": TAU_MARGIN, "sign_backward": "g / mean|g|", "reduction": "sum",
            "gate_backward": "fixed"}
