"""FT-clean: fine-tune the image encoder with CE on clean images (the PMG-AFT paper's non-robust baseline).

There is no adversary: :meth:`FtClean.attack` returns the clean batch unchanged.
"""
from __future__ import annotations

import torch

from pmgaft.methods.base import AttackSettings, Method, cross_entropy
from pmgaft.models import ZeroShotClassifier


class FtClean(Method):
    name = "ft_clean"

    def attack(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               y: torch.Tensor, settings: AttackSettings, seeds: torch.Tensor | None = None) -> torch.Tensor:
        return x.detach()

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = cross_entropy(target(x), y)  # logits [B, C]
        return {"ce": ce, "total": ce}
