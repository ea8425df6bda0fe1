"""FARE (Schlarmann et al., ICML 2024, https://arxiv.org/abs/2402.12336): unsupervised adversarial fine-tuning.

    loss = || phi(x_adv) - phi_orig(x) ||_2^2      (unnormalized image embeddings [B, D]; sum over D, batch mean)

Its PGD maximizes the same squared distance (``pgd(loss="l2")`` on the target image encoder, target = the
original model's clean embeddings). No labels, no text. FARE trains with AdamW (its ``defaults``).
"""
from __future__ import annotations

import torch

from pmgaft.attacks import pgd
from pmgaft.losses import fare_loss
from pmgaft.methods.base import AttackSettings, Method
from pmgaft.models import ZeroShotClassifier


class Fare(Method):
    name = "fare"
    needs_original = True
    defaults = {"optimizer": "adamw", "lr": 1e-5, "weight_decay": 1e-4}

    def attack(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               y: torch.Tensor, settings: AttackSettings, seeds: torch.Tensor | None = None) -> torch.Tensor:
        assert original is not None, "fare needs the original model"
        with torch.no_grad():
            clean = original.image_features(x, normalize=False)  # [B, D]
        return pgd(lambda images: target.image_features(images, normalize=False), x, clean, eps=settings.eps,
                   step_size=settings.step_size, steps=settings.steps, loss="l2",
                   random_start=settings.random_start, sample_seeds=seeds, reduction=settings.reduction)

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        assert original is not None, "fare needs the original model"
        with torch.no_grad():
            clean = original.image_features(x, normalize=False)  # [B, D], a constant
        l2 = fare_loss(target.image_features(x_adv, normalize=False), clean)
        return {"l2": l2, "total": l2}
