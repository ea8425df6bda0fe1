"""Text-guided attention maps of a CLIP ViT, as TGA-ZSR (Yu et al., NeurIPS 2024) and Comp-TGA compute them.

Step by step (docs/protocols.md, tga-zsr), for [0, 1] images x and a text embedding t per image::

    F    = every output token (class + N patches) after ln_post and the projection   [B, 1 + N, D]
    F^   = F / ||F||_2 along the token axis (each channel normalized across tokens)  [B, 1 + N, D]
    s    = minmax_per_image( F^[:, 1:] . t )                                          [B, N]
    A(x) = s on its sqrt(N) x sqrt(N) grid, bilinearly upsampled to (H, W)          [B, 1, H, W] in [0, 1]

Comp-TGA (TPAMI 2026) multiplies two such maps, each upsampled first::

    A_comp(x) = A(x; t_y) * (1 - A(x; t_not_y))       t_not_y: "This is not a photo of a {y}"

open_clip's ``VisionTransformer`` with ``output_tokens`` returns ``(ln_post(x)[:, 0] @ proj, ln_post(x)[:, 1:])``:
the class token projected, the patch tokens *not* projected. :func:`image_tokens` switches the flag on for one
call (the model's state is unchanged afterwards) and reassembles F from the two.
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
    plain = (getattr(inner, "pool_type", None) == "tok" and getattr(inner, "attn_pool", None) is None
             and not getattr(inner, "final_ln_after_pool", False))
    if not hasattr(inner, "output_tokens") or getattr(inner, "proj", None) is None or not plain:
        raise PmgaftError("text-guided attention maps (tga_zsr, comp_tga) need an open_clip VisionTransformer "
                          "image tower with a class token, ln_post on every token and a projection (CLIP ViT-B/32, "
                          f"ViT-L/14, ...); got {type(inner).__name__}. Train another method for this model.")
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
    """(image embeddings [B, D], every output token after ln_post and projection [B, 1 + N, D]) of [0, 1] images.

    Token 0 is the class token, whose projection is the image embedding itself.
    """
    visual = model.clip.visual
    with _output_tokens(visual):
        pooled, patches = visual(model.preprocess(x))  # [B, D] projected, [B, N, width] not projected
    proj = _vision_transformer(visual).proj
    return pooled, torch.cat([pooled.unsqueeze(1), patches @ proj.to(patches.dtype)], dim=1)


def patch_scores(tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Min-max normalized text relevance of each patch [B, N], from all tokens [B, 1 + N, D] and text [B, D]."""
    tokens = tokens.float()
    tokens = tokens / tokens.norm(dim=1, keepdim=True).clamp_min(1e-12)  # each channel across the tokens
    scores = torch.einsum("bnd,bd->bn", tokens[:, 1:], text.float())  # the patches only
    lo, hi = scores.amin(dim=1, keepdim=True), scores.amax(dim=1, keepdim=True)
    return (scores - lo) / (hi - lo).clamp_min(1e-8)


def attention_maps(tokens: torch.Tensor, text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TGA-ZSR maps [B, 1, H, W] in [0, 1] from all output tokens [B, 1 + N, D] and text embeddings [B, D]."""
    scores = patch_scores(tokens, text)
    b, n = scores.shape
    grid = int(round(n ** 0.5))
    if grid * grid != n:
        raise PmgaftError(f"expected a square patch grid, got {n} patch tokens.")
    return F.interpolate(scores.view(b, 1, grid, grid), size=size, mode="bilinear", align_corners=False)


def complementary_maps(tokens: torch.Tensor, text: torch.Tensor, not_text: torch.Tensor,
                       size: tuple[int, int]) -> torch.Tensor:
    """Comp-TGA maps [B, 1, H, W]: A(text) * (1 - A(not_text)), both upsampled before the product."""
    return attention_maps(tokens, text, size) * (1 - attention_maps(tokens, not_text, size))
