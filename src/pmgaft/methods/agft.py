"""AGFT (Cui et al., CVPR 2026, https://arxiv.org/abs/2603.29410): alignment-guided fine-tuning.

    p_T   = softmax(rho * s * cos(f_orig(x), t))      the frozen original image tower on the CLEAN image
    z_S   = s * cos(f(x_adv), t)                      the image tower being trained, on the adversarial image
    total = mean_b -sum_c p_T,c log softmax(z_S)_c    (:func:`pmgaft.losses.agft_loss`)

No hard labels anywhere: the train-time PGD (L-inf, eps = step = 1/255, 2 steps, uniform random start) maximizes
the same soft-target CE at the student's scale s, against p_T. The paper run uses s = 180 and rho = 0.4
(``agft_scale``, ``agft_ratio``; the released code's command-line defaults, s = 100 and rho = 1, are not it).

s is a training-only scale: the classifier being trained keeps the run's ``logit_scale`` (CLIP's 100), which is
what validation uses and what the checkpoint records for evaluation. The teacher is computed in the attack and
again in the loss, like FARE's clean embeddings (one frozen forward more than needed per step).
"""
from __future__ import annotations

from typing import Any

import torch

from pmgaft.attacks import pgd
from pmgaft.losses import agft_loss, agft_teacher, check_agft_scales, soft_cross_entropy
from pmgaft.methods.base import AttackSettings, Method
from pmgaft.models import ZeroShotClassifier

PAPER_SCALE, PAPER_RATIO = 180.0, 0.4  # the paper run (README: --method_args '{"AGFT": {"logit_scale": 180, ...}}')


class Agft(Method):
    name = "agft"
    needs_original = True
    defaults = {"agft_scale": PAPER_SCALE, "agft_ratio": PAPER_RATIO, "lr": 4e-4}  # the paper run's

    def __init__(self, scale: float = PAPER_SCALE, ratio: float = PAPER_RATIO) -> None:
        check_agft_scales(scale, ratio, names=("agft_scale", "agft_ratio"))
        self.scale, self.ratio = float(scale), float(ratio)

    @classmethod
    def from_config(cls, config: Any) -> "Agft":
        scale, ratio = getattr(config, "agft_scale", None), getattr(config, "agft_ratio", None)
        return cls(PAPER_SCALE if scale is None else scale, PAPER_RATIO if ratio is None else ratio)

    def teacher(self, original: ZeroShotClassifier | None, x: torch.Tensor) -> torch.Tensor:
        """p_T [B, C]: the original model's clean distribution at scale rho * s, a constant."""
        assert original is not None, "agft needs the original model"
        with torch.no_grad():
            return agft_teacher(original.cosines(x), logit_scale=self.scale, scale_ratio=self.ratio)

    def attack(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               y: torch.Tensor, settings: AttackSettings, seeds: torch.Tensor | None = None) -> torch.Tensor:
        # y is not used: the adversary ascends the soft-target CE of the student's logits s * cos against p_T
        return pgd(lambda images: self.scale * target.cosines(images), x, self.teacher(original, x),
                   eps=settings.eps, step_size=settings.step_size, steps=settings.steps, loss=soft_cross_entropy,
                   random_start=settings.random_start, sample_seeds=seeds, reduction=settings.reduction)

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        assert original is not None, "agft needs the original model"
        with torch.no_grad():
            cos_orig = original.cosines(x)  # [B, C], a constant
        return agft_loss(target.cosines(x_adv), cos_orig, logit_scale=self.scale, scale_ratio=self.ratio)

    def hparams(self) -> dict[str, Any]:
        return {"agft_scale": self.scale, "agft_ratio": self.ratio}
