"""Training losses as pure functions on logits / embeddings / attention maps (no models inside).

* :func:`pmg_aft_loss` -- PMG-AFT (Wang et al., CVPR 2024, https://arxiv.org/abs/2401.04350).
* :func:`fare_loss` -- FARE (Schlarmann et al., ICML 2024, https://arxiv.org/abs/2402.12336).
* :func:`attention_distance` -- TGA-ZSR's attention-map term (Yu et al., NeurIPS 2024).

Each returns per-batch scalars; methods in :mod:`pmgaft.methods` wrap them with the models.
"""
from __future__ import annotations

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
