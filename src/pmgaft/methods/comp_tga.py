"""Comp-TGA (Yu et al., TPAMI 2026; code: github.com/zhyblue424/TGA-ZSR, ``Comp-TGA.py``): complementary
text-guided attention, TGA-ZSR's successor and the best published 16-set result (44.46 robust / 55.44 clean).

    A_comp(x) = A(x; t_y) * (1 - A(x; t_not_y))      t_not_y = text("This is not a photo of a {y}")
    total     = CE(z_adv, y) + alpha * mean_b ||A_tar(x_adv) - A_ori(x)||_2 + beta * mean_b ||A_tar(x) - A_ori(x)||_2

with A_comp in place of TGA-ZSR's map (:func:`pmgaft.methods.attention.complementary_maps`), alpha = 0.10,
beta = 0.07; its code trains like TGA-ZSR (SGD lr 1e-4, batch 128: ``configs/tga-zsr/comp_tga.yaml``).

The "not" embeddings come from the target's own (frozen) text tower and class names, built once per target
with the tokenizer of ``config.model`` and cached (in memory, and on disk like every text embedding).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

import open_clip

from pmgaft.errors import PmgaftError
from pmgaft.methods.attention import complementary_maps
from pmgaft.methods.tga_zsr import TgaZsr, weights_from_config
from pmgaft.models import ZeroShotClassifier, build_text_embeddings, register_model_configs

NOT_TEMPLATE = "This is not a photo of a {}"  # Comp-TGA's second prompt, as its code writes it


class CompTga(TgaZsr):
    name = "comp_tga"
    paper_weights = (0.10, 0.07)

    def __init__(self, alpha: float = 0.10, beta: float = 0.07, *,
                 tokenizer: str | Callable[..., torch.Tensor] = "ViT-B-32") -> None:
        """``tokenizer``: the text tokenizer of the model being trained, or its open_clip model name."""
        super().__init__(alpha, beta)
        self.tokenizer = tokenizer
        self._not_text: tuple[tuple[int, tuple[str, ...]], torch.Tensor] | None = None

    @classmethod
    def from_config(cls, config: Any) -> "CompTga":
        return cls(*weights_from_config(config, cls.paper_weights), tokenizer=config.model)

    def not_text_embeddings(self, target: ZeroShotClassifier) -> torch.Tensor:
        """[C, D] unit-norm embeddings of "This is not a photo of a {c}" for the target's classes, built once."""
        if target.classnames is None:
            raise PmgaftError("comp_tga needs the class names behind the target's text embeddings: build the "
                              "classifier with ZeroShotClassifier.build(model, tokenizer, classnames, templates).")
        key = (id(target.clip), tuple(target.classnames))
        if self._not_text is None or self._not_text[0] != key:
            tokenizer = self.tokenizer
            if isinstance(tokenizer, str):
                register_model_configs()
                tokenizer = open_clip.get_tokenizer(tokenizer)
            device = target.text_embeddings.device
            with torch.no_grad(), torch.autocast(device.type, enabled=False):  # fp32, like the positive ones
                emb = build_text_embeddings(target.clip, tokenizer, target.classnames, [NOT_TEMPLATE])
            self._not_text = key, emb.to(device)
        return self._not_text[1]

    def maps(self, target: ZeroShotClassifier, tokens: torch.Tensor, y: torch.Tensor,
             size: tuple[int, int]) -> torch.Tensor:
        return complementary_maps(tokens, target.text_embeddings[y], self.not_text_embeddings(target)[y], size)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "not_template": NOT_TEMPLATE}
