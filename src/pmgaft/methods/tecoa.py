"""FT-adv / TeCoA (Mao et al., ICLR 2023, https://arxiv.org/abs/2212.07016): text-guided adversarial fine-tuning.

Loss: CE of the target's zero-shot logits (logit scale x cosine with the class text embeddings) on PGD images.
"""
from __future__ import annotations

import torch

from pmgaft.methods.base import Method, cross_entropy
from pmgaft.models import ZeroShotClassifier


class TeCoA(Method):
    name = "tecoa"

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = cross_entropy(target(x_adv), y)  # logits [B, C]
        return {"ce": ce, "total": ce}
