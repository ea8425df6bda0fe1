"""Per-sample attack objectives: ``loss(output, target) -> [B]``, maximized by the attacks.

Attacks sum these over the batch before differentiating, so each sample's gradient is its own and does not
shrink with the batch size (a batch-mean loss divides every gradient by B, which under half precision
underflows to 0 and silently stops the attack -- the flaw of the released PMG-AFT evaluation, docs/protocols.md).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

AttackLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE of the true class, per sample [B]."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor, kappa: float | None = None) -> torch.Tensor:
    """Carlini-Wagner margin, per sample [B]: best wrong logit minus true logit (> 0 means misclassified).

    ``kappa`` (CW's confidence): the margin capped at ``kappa``, ``min(wrong - true, kappa)``; a sample whose
    best wrong logit leads by ``kappa`` gets no more gradient (its iterate stops moving). AGFT's CW maximizes it
    with kappa = 0 (``-clamp(true - wrong, min=-kappa)``); TTC's with kappa = 50 (``-relu(true - wrong + 50)``,
    the same up to a constant). None: uncapped.
    """
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return wrong - true if kappa is None else (wrong - true).clamp(max=kappa)


def squared_l2(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between outputs and targets, per sample [B] (FARE's embedding loss)."""
    return (features.float() - target.float()).pow(2).flatten(1).sum(dim=1)


ATTACK_LOSSES: dict[str, AttackLoss] = {"ce": cross_entropy, "cw": margin, "l2": squared_l2}
