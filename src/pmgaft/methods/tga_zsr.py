"""TGA-ZSR (Yu et al., NeurIPS 2024, https://arxiv.org/abs/2410.21802): text-guided attention for zero-shot
robustness.

    total = CE(z_adv, y) + alpha * mean_b ||A_tar(x_adv) - A_ori(x)||_2 + beta * mean_b ||A_tar(x) - A_ori(x)||_2

A = the ground-truth class's text-guided attention map (:mod:`pmgaft.methods.attention`, docs/protocols.md:
tokens normalized along the token axis); alpha = 0.08, beta = 0.05, SGD lr 1e-4 (its ``defaults``). Its table
run trains at batch 128 under fp16 autocast with the batch-mean attack: ``configs/tga-zsr/tga_zsr.yaml``.
The train-time attack is CE-PGD on the target (``Method.attack``); ``--attack-reduction mean --precision fp16``
gives the released arithmetic. The original model is frozen and run under no_grad.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from pmgaft.errors import PmgaftError
from pmgaft.losses import attention_distance
from pmgaft.methods.attention import attention_maps, image_tokens
from pmgaft.methods.base import Method, cross_entropy
from pmgaft.models import ZeroShotClassifier


class TgaZsr(Method):
    name = "tga_zsr"
    needs_original = True
    defaults = {"lr": 1e-4, "batch_size": 128}  # its paper and code: SGD lr 1e-4 at batch 128
    paper_weights: ClassVar[tuple[float, float]] = (0.08, 0.05)  # (alpha, beta) of its paper

    def __init__(self, alpha: float = 0.08, beta: float = 0.05) -> None:
        if alpha < 0 or beta < 0:
            raise PmgaftError(f"{self.name}: alpha and beta must be >= 0 (paper: {self.paper_weights[0]}, "
                              f"{self.paper_weights[1]}), got {alpha}, {beta}.")
        self.alpha, self.beta = float(alpha), float(beta)

    @classmethod
    def from_config(cls, config: Any) -> "TgaZsr":
        return cls(*weights_from_config(config, cls.paper_weights))

    def maps(self, target: ZeroShotClassifier, tokens: torch.Tensor, y: torch.Tensor,
             size: tuple[int, int]) -> torch.Tensor:
        """Attention maps [B, 1, H, W] of output tokens [B, 1 + N, D] for the classes y [B]."""
        return attention_maps(tokens, target.text_embeddings[y], size)

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        assert original is not None, f"{self.name} needs the original model"
        # maps on the model's input grid (224 for ViT-B/32), whatever the data's size: TGA-ZSR upsamples the
        # 7x7 map to 224 px, and a map at a small set's native size would shrink the L2 terms (and alpha, beta)
        size, b = (target.image_size, target.image_size), len(x)
        pooled, tokens = image_tokens(target, torch.cat([x_adv, x]))  # [2B, D], [2B, 1 + N, D]
        z_adv = target.logits_from_features(pooled[:b])  # [B, C]
        maps = self.maps(target, tokens, torch.cat([y, y]), size)  # [2B, 1, H, W]
        with torch.no_grad():
            _, tokens_ori = image_tokens(original, x)
            maps_ori = self.maps(target, tokens_ori, y, size)  # [B, 1, H, W]; text: the same frozen tower
        ce = cross_entropy(z_adv, y)
        att_adv = attention_distance(maps[:b], maps_ori)
        att_clean = attention_distance(maps[b:], maps_ori)
        return {"ce": ce, "att_adv": att_adv, "att_clean": att_clean,
                "total": ce + self.alpha * att_adv + self.beta * att_clean}

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}


def weights_from_config(config: Any, paper: tuple[float, float]) -> tuple[float, float]:
    """(alpha, beta) from the config, each falling back to the paper's value when not given."""
    return (paper[0] if config.alpha is None else config.alpha, paper[1] if config.beta is None else config.beta)
