"""``none``: the original CLIP, no fine-tuning -- the reference row of evaluation tables. It cannot be trained."""
from __future__ import annotations

import torch

from pmgaft.errors import PmgaftError
from pmgaft.methods.base import Method
from pmgaft.models import ZeroShotClassifier


class NoTraining(Method):
    name = "none"
    trainable = False

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise PmgaftError("method 'none' is the original CLIP without fine-tuning; there is nothing to train. "
                          "Evaluate the pre-trained model directly (pmgaft eval --model NAME --pretrained TAG).")
