"""What every measurement starts from: one randomly initialised CLIP, its class text embeddings, a random batch.

Weights do not change the arithmetic, so no checkpoint is needed (``load_clip(name, None)``); every method gets
a fresh deep copy of the same seeded model, and the text embeddings of ``classes`` prompts are built once.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from pmgaft.errors import PmgaftError
from pmgaft.models import LoadedClip, ZeroShotClassifier, build_text_embeddings, load_clip

TEMPLATE = "This is a photo of a {}"  # the paper's training prompt
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Harness:
    loaded: LoadedClip
    classnames: list[str]
    text_embeddings: torch.Tensor  # [C, D]
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = fp32
    input_size: int  # side of the random images fed to the classifier (it resizes to the model's size inside)

    def classifier(self) -> ZeroShotClassifier:
        """A fresh zero-shot classifier over a deep copy of the seeded model (eval mode, nothing trainable)."""
        clip = copy.deepcopy(self.loaded.model)
        return ZeroShotClassifier(clip, self.text_embeddings, image_size=self.loaded.image_size,
                                  classnames=self.classnames, templates=[TEMPLATE]).eval().requires_grad_(False)

    def batch(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random images in [0, 1] [B, 3, S, S] and labels [B] on the device."""
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand(batch_size, 3, self.input_size, self.input_size, generator=generator)
        y = torch.randint(0, len(self.classnames), (batch_size,), generator=generator)
        return x.to(self.device), y.to(self.device)


def build_harness(model: str, *, classes: int, device: torch.device, precision: str = "fp32",
                  input_size: int | None = None, seed: int = 0) -> Harness:
    """Load ``model`` randomly initialised (seeded) and embed ``classes`` prompts "This is a photo of a class i"."""
    if classes < 2:
        raise PmgaftError(f"--classes must be >= 2 (zero-shot logits over C classes), got {classes}.")
    if precision not in PRECISIONS:
        raise PmgaftError(f"unknown precision {precision!r}; use one of {list(PRECISIONS)}.")
    if precision != "fp32" and device.type != "cuda":
        raise PmgaftError(f"--precision {precision} needs a CUDA device (pmgaft train runs fp32 on CPU); use "
                          f"--precision fp32 or --device cuda.")
    torch.manual_seed(seed)
    loaded = load_clip(model, None, device=device)
    names = [f"class {i}" for i in range(classes)]
    emb = build_text_embeddings(loaded.model, loaded.tokenizer, names, [TEMPLATE], cache=False)
    return Harness(loaded, names, emb, device, PRECISIONS[precision], input_size or loaded.image_size)
