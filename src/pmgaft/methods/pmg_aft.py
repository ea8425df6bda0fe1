"""PMG-AFT (Wang et al., CVPR 2024, https://arxiv.org/abs/2401.04350): pre-trained model guided fine-tuning.

    total = CE(z_adv, y) + alpha * KL(P_ori(x_adv) || P_adv) + beta * KL(P_clean || P_adv)

(:func:`pmgaft.losses.pmg_aft_loss`). Gradients reach the target through z_adv and z_clean; the original model is
frozen, in eval mode, and run under ``torch.no_grad`` first, before any graph exists. The released code built an
autograd graph through the original model as well (18.4 GB vs TeCoA's 12.9 GB at batch 128) -- the gradients it
would carry are never used, so both recipes here skip it: same numbers, less memory.

``kl_reduction="sum"`` (the "official" recipe) sums each KL over the *optimizer* batch: with gradient
accumulation a micro-batch's batch-mean KL is multiplied by ``sum_batch`` (the optimizer batch size), so the
accumulated gradient equals the released code's at the full batch.

Memory (``--memory``; same gradients either way, the tests compare them):

* ``lean`` (default) -- the clean branch runs under activation checkpointing, in two segments
  (:func:`pmgaft.models.recomputed_logits`), before the adversarial one, so the backward frees the adversarial
  graph before it recomputes the clean one, half of it at a time: one B-image graph alive, TeCoA's footprint plus
  the frozen image tower, for one more forward per step (2k + 8 forward-equivalents instead of 2k + 7: +9% at
  k = 2).
* ``fast`` -- one forward of the concatenated batch [x_adv, x]: both branches' graphs alive together (about
  twice TeCoA's activations), no recomputation.
"""
from __future__ import annotations

from typing import Any

import torch

from pmgaft.errors import PmgaftError
from pmgaft.losses import KL_DIRECTIONS, KL_REDUCTIONS, pmg_aft_loss
from pmgaft.methods.base import Method, target_logits_pair
from pmgaft.models import ZeroShotClassifier, recomputed_logits


class PmgAft(Method):
    name = "pmg_aft"
    needs_original = True

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, *, reduction: str = "batchmean",
                 direction: str = "official", sum_batch: int | None = None, lean: bool = True) -> None:
        if alpha < 0 or beta < 0:
            raise PmgaftError(f"pmg_aft: alpha and beta must be >= 0 (paper: 1, 1), got alpha={alpha}, beta={beta}.")
        if reduction not in KL_REDUCTIONS:
            raise PmgaftError(f"pmg_aft: unknown kl_reduction {reduction!r}; use one of {KL_REDUCTIONS}.")
        if direction not in KL_DIRECTIONS:
            raise PmgaftError(f"pmg_aft: unknown kl_direction {direction!r}; use one of {KL_DIRECTIONS}.")
        self.alpha, self.beta, self.reduction, self.direction = float(alpha), float(beta), reduction, direction
        self.sum_batch = sum_batch
        self.lean = lean  # recompute the clean branch in the backward: one B-image graph alive, not two

    @classmethod
    def from_config(cls, config: Any) -> "PmgAft":
        return cls(1.0 if config.alpha is None else config.alpha, 1.0 if config.beta is None else config.beta,
                   reduction=config.kl_reduction, direction=config.kl_direction, sum_batch=config.batch_size,
                   lean=getattr(config, "memory", "lean") == "lean")

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        assert original is not None, "pmg_aft needs the original model"
        with torch.no_grad():  # first, while no graph is alive: its layers' temporaries come on top of nothing
            z_ori = original(x_adv)  # [B, C], a constant
        if self.lean:  # z_clean first, without a stored graph: its backward recomputes it after z_adv's is freed
            z_clean = recomputed_logits(target, x)
            z_adv = target(x_adv)
        else:
            z_adv, z_clean = target_logits_pair(target, x_adv, x)  # [B, C] each, with grad
        if self.reduction == "sum" and self.sum_batch is not None:
            # sum over the optimizer batch == sum_batch x the batch mean (exact at micro-batch = batch)
            terms = pmg_aft_loss(z_adv, z_ori, z_clean, y, alpha=self.alpha, beta=self.beta,
                                 reduction="batchmean", direction=self.direction)
            kl_general, kl_clean = terms["kl_general"] * self.sum_batch, terms["kl_clean"] * self.sum_batch
            total = terms["ce"] + self.alpha * kl_general + self.beta * kl_clean
            return {"ce": terms["ce"], "kl_general": kl_general, "kl_clean": kl_clean, "total": total}
        return pmg_aft_loss(z_adv, z_ori, z_clean, y, alpha=self.alpha, beta=self.beta, reduction=self.reduction,
                            direction=self.direction)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "kl_reduction": self.reduction,
                "kl_direction": self.direction}
