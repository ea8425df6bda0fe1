"""Text-guided attention maps of a CLIP ViT, as TGA-ZSR defines them (Yu et al., NeurIPS 2024).

    A(x) = minmax_per_image( (patch_tokens(x) @ proj) . t_y )   on the patch grid (7x7 for ViT-B/32 at 224),
           bilinearly upsampled to the input size  ->  [B, 1, H, W] in [0, 1]

Patch tokens come from open_clip's ``VisionTransformer`` with ``output_tokens`` switched on for one call only
(:func:`image_tokens` restores the flag), so the model's global state is unchanged afterwards.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pmgaft.errors import PmgaftError
from pmgaft.models import ZeroShotClassifier


def _vision_transformer(visual: nn.Module) -> nn.Module:
    inner = getattr(visual, "module", visual)  # DistributedDataParallel wraps the tower
    if not hasattr(inner, "output_tokens") or getattr(inner, "proj", None) is None:
        raise PmgaftError("TGA-ZSR attention maps need an open_clip VisionTransformer image tower with a "
                          f"projection; got {type(inner).__name__}.")
    return inner


@contextlib.contextmanager
def _output_tokens(visual: nn.Module) -> Iterator[None]:
    inner = _vision_transformer(visual)
    old = inner.output_tokens
    inner.output_tokens = True
    try:
        yield
    finally:
        inner.output_tokens = old


def image_tokens(model: ZeroShotClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled embeddings [B, D], patch tokens projected into the joint space [B, N, D]) of [0, 1] images."""
    visual = model.clip.visual
    with _output_tokens(visual):
        pooled, tokens = visual(model.preprocess(x))  # [B, D], [B, N, width]
    proj = _vision_transformer(visual).proj
    return pooled, tokens @ proj.to(tokens.dtype)


def attention_maps(tokens: torch.Tensor, text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps [B, 1, H, W] in [0, 1] from projected patch tokens [B, N, D] and class text embeddings [B, D]."""
    b, n, _ = tokens.shape
    grid = int(round(n ** 0.5))
    if grid * grid != n:
        raise PmgaftError(f"expected a square patch grid, got {n} tokens.")
    scores = torch.einsum("bnd,bd->bn", tokens.float(), text.float())  # [B, N]
    lo, hi = scores.amin(dim=1, keepdim=True), scores.amax(dim=1, keepdim=True)
    scores = (scores - lo) / (hi - lo).clamp_min(1e-8)  # min-max per image
    maps = scores.view(b, 1, grid, grid)
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
