"""Training losses as pure functions on logits / embeddings / attention maps (no models inside).

* :func:`pmg_aft_loss` -- PMG-AFT (Wang et al., CVPR 2024, https://arxiv.org/abs/2401.04350).
* :func:`fare_loss` -- FARE (Schlarmann et al., ICML 2024, https://arxiv.org/abs/2402.12336).
* :func:`attention_distance` -- TGA-ZSR's attention-map term (Yu et al., NeurIPS 2024).
* :func:`agft_loss` -- AGFT (Cui et al., CVPR 2026, https://arxiv.org/abs/2603.29410), on
  :func:`soft_cross_entropy`, which is also its train-time attack's objective.

Each returns per-batch scalars; methods in :mod:`pmgaft.methods` wrap them with the models.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pmgaft.errors import PmgaftError

KL_REDUCTIONS = ("batchmean", "sum")
KL_DIRECTIONS = ("official", "reversed")


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor, *, reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) = sum_c P_c (log P_c - log Q_c), batch-mean or summed over the batch."""
    if reduction not in KL_REDUCTIONS:
        raise PmgaftError(f"unknown KL reduction {reduction!r}; use one of {KL_REDUCTIONS}.")
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction=reduction)


def pmg_aft_loss(logits_adv: torch.Tensor, logits_ori_adv: torch.Tensor, logits_clean: torch.Tensor,
                 labels: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0, reduction: str = "batchmean",
                 direction: str = "official") -> dict[str, torch.Tensor]:
    """The PMG-AFT objective on logits [B, C] (docs/training.md, Methods)::

        total = CE(z_adv, y) + alpha * KL(P_ori(x_adv) || P_adv) + beta * KL(P_clean || P_adv)

    with P = softmax(z), ``z_adv = target(x_adv)``, ``z_ori = original(x_adv)``, ``z_clean = target(x)``.
    CE is always the batch mean; ``reduction="sum"`` sums the KL terms over the batch as the released code
    does (``nn.KLDivLoss(reduction="sum")``), ``"batchmean"`` averages them. ``direction="reversed"`` swaps
    each KL's arguments -- KL(P_adv || P_ori), KL(P_adv || P_clean) -- as the released code did before its
    2024-05-29 fix. Returns ``{"ce", "kl_general", "kl_clean", "total"}``.
    """
    if direction not in KL_DIRECTIONS:
        raise PmgaftError(f"unknown KL direction {direction!r}; use one of {KL_DIRECTIONS}.")
    if alpha < 0 or beta < 0:
        raise PmgaftError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}.")
    ce = F.cross_entropy(logits_adv.float(), labels)
    if direction == "official":
        kl_general = kl_divergence(logits_ori_adv, logits_adv, reduction=reduction)
        kl_clean = kl_divergence(logits_clean, logits_adv, reduction=reduction)
    else:
        kl_general = kl_divergence(logits_adv, logits_ori_adv, reduction=reduction)
        kl_clean = kl_divergence(logits_adv, logits_clean, reduction=reduction)
    total = ce + alpha * kl_general + beta * kl_clean
    return {"ce": ce, "kl_general": kl_general, "kl_clean": kl_clean, "total": total}


def fare_loss(features_adv: torch.Tensor, features_target: torch.Tensor) -> torch.Tensor:
    """FARE: ||phi(x_adv) - phi_orig(x)||_2^2 on unnormalized embeddings [B, D], summed over D, batch mean."""
    return (features_adv.float() - features_target.float()).pow(2).sum(dim=-1).mean()


def attention_distance(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """TGA-ZSR's map term: mean over the batch of ||A - A_ref||_2 (maps [B, 1, H, W] flattened per image)."""
    return (maps.float() - reference.float()).flatten(1).norm(dim=1).mean()


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample CE against a distribution: ``-sum_c p_c log softmax(z)_c`` [B] (logits, probs [B, C]).

    Equal to KL(p || softmax(z)) + H(p); what ``nn.CrossEntropyLoss`` computes for probability targets.
    """
    return -(target_probs.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)


def check_agft_scales(logit_scale: float, scale_ratio: float,
                      names: tuple[str, str] = ("logit_scale", "scale_ratio")) -> None:
    """AGFT's student scale s and teacher/student ratio rho: positive, finite numbers (paper run: 180, 0.4).
    ``names``: what the caller calls them (the training config's ``agft_scale`` / ``agft_ratio``)."""
    for name, value, paper in zip(names, (logit_scale, scale_ratio), (180, 0.4)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                               and value > 0):
            raise PmgaftError(f"AGFT's {name} must be a positive finite number (paper run: {paper:g}), got "
                              f"{value!r}.")


def agft_teacher(cos_orig_clean: torch.Tensor, *, logit_scale: float = 180.0,
                 scale_ratio: float = 0.4) -> torch.Tensor:
    """AGFT's soft target p_T = softmax(rho * s * cos) [B, C] of the original model's clean cosines, a constant."""
    check_agft_scales(logit_scale, scale_ratio)
    return F.softmax(scale_ratio * logit_scale * cos_orig_clean.detach().float(), dim=-1)


def agft_loss(cos_adv: torch.Tensor, cos_orig_clean: torch.Tensor, *, logit_scale: float = 180.0,
              scale_ratio: float = 0.4) -> dict[str, torch.Tensor]:
    """The AGFT objective on cosines [B, C] with the class text embeddings::

        p_T   = softmax(scale_ratio * logit_scale * cos(f_orig(x), t))     teacher: original model, clean image
        z_S   = logit_scale * cos(f(x_adv), t)                             student: the model being trained
        total = mean_b -sum_c p_T,c log softmax(z_S)_c

    The teacher is a constant (no gradient). Nothing else: no hard-label CE, no clean term. The paper run uses
    s = 180, rho = 0.4 (teacher logits 72 x cos), a training-only scale: evaluation keeps CLIP's 100.
    Returns ``{"soft_ce", "total"}``.
    """
    teacher = agft_teacher(cos_orig_clean, logit_scale=logit_scale, scale_ratio=scale_ratio)
    soft_ce = soft_cross_entropy(logit_scale * cos_adv, teacher).mean()
    return {"soft_ce": soft_ce, "total": soft_ce}
