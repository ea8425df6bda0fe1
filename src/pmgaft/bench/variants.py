"""Prototype speed/memory changes to the training step, measured with ``pmgaft bench --variant NAME``.

Benchmark-only: each variant patches *instances* (the benchmark's own models, optimizer, method) for the
duration of a ``with`` block and restores them afterwards, so the library is untouched and the released-recipe
reference always runs unpatched. Every variant computes the same function (tests compare outputs); they are
candidates for the library, measured here first.

* ``fused_attention`` -- open_clip's ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention``, whose training
  path transposes to sequence-first and copies q, k, v and the output between layouts. This computes the same
  attention batch-first: one packed in-projection, views into [B, H, N, d], ``F.scaled_dot_product_attention``,
  the output projection -- same weights, no layout copies.
* ``patch_gemm`` -- the patch embedding is a convolution with stride = kernel, i.e. a reshape and one GEMM.
  oneDNN's convolution backward is slow for this shape; the reshape + matmul is not.
* ``math_attention`` -- ``F.scaled_dot_product_attention`` on its math backend (bmm + softmax) instead of the
  CPU flash kernel (short sequences: 50 tokens for ViT-B/32).
* ``sgd_foreach`` -- the optimizer's multi-tensor (``foreach``) update; the CPU default is a per-parameter loop.
* ``reuse_original`` (fare) -- FARE's attack and its loss both compute the frozen original's clean embeddings
  ``original(x)``; the second call returns the first call's result (same tensor ``x``, no grad; the memo lives
  for one ``with`` block, i.e. one step): one forward less.
* ``lean_memory`` (pmg_aft) -- the clean branch ``target(x)`` is computed first under activation checkpointing,
  then ``target(x_adv)`` with its graph: the backward frees the adversarial graph before it recomputes the clean
  one, so at most one B-image graph is alive (TeCoA's footprint) for one extra clean forward.
"""
from __future__ import annotations

import contextlib
import types
from typing import Callable, ContextManager, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from pmgaft.losses import pmg_aft_loss
from pmgaft.methods import PmgAft
from pmgaft.models import ZeroShotClassifier
from pmgaft.training.step import StepContext
from pmgaft.utils import lookup

Variant = Callable[[Sequence[nn.Module], "StepContext | None"], ContextManager[None]]


@contextlib.contextmanager
def _instance_attributes(patches: list[tuple[object, str, object]]) -> Iterator[None]:
    """Set ``obj.name = value`` on each instance, then delete the instance attributes again."""
    for obj, name, value in patches:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, _ in patches:
            delattr(obj, name)


def _batch_first_attention(self: nn.Module, q_x: torch.Tensor, k_x: torch.Tensor | None = None,
                           v_x: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    attn = self.attn
    if k_x is not None or v_x is not None or attn_mask is not None:  # not self-attention of an image tower
        return type(self).attention(self, q_x, k_x, v_x, attn_mask)
    b, n, width = q_x.shape  # [B, N, W]
    heads = attn.num_heads
    qkv = F.linear(q_x, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, N, d] each, views
    out = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, d]
    return F.linear(out.transpose(1, 2).reshape(b, n, width), attn.out_proj.weight, attn.out_proj.bias)


def _blocks(tower: nn.Module) -> list[nn.Module]:
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", [])
    return [blk for blk in blocks if isinstance(getattr(blk, "attn", None), nn.MultiheadAttention)
            and blk.attn.batch_first and blk.attn.in_proj_weight is not None and blk.attn.dropout == 0.0]


def fused_attention(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    return _instance_attributes([(blk, "attention", types.MethodType(_batch_first_attention, blk))
                                 for tower in towers for blk in _blocks(tower)])


def _patch_embed_as_gemm(conv: nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, W_out, H/p, W/p]
        b, c, h, w = x.shape
        p = conv.kernel_size[0]
        cols = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c * p * p)
        out = cols @ conv.weight.view(conv.out_channels, -1).T  # [B * g * g, W_out]
        return out.view(b, h // p, w // p, -1).permute(0, 3, 1, 2)  # channels-last memory: the tower flattens it
    return forward


def patch_gemm(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    patches = []
    for tower in towers:
        conv = getattr(tower, "conv1", None)
        if (isinstance(conv, nn.Conv2d) and conv.bias is None and conv.groups == 1 and conv.padding == (0, 0)
                and conv.stride == conv.kernel_size and conv.kernel_size[0] == conv.kernel_size[1]
                and conv.dilation == (1, 1)):
            patches.append((conv, "forward", _patch_embed_as_gemm(conv)))
    return _instance_attributes(patches)


def math_attention(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    return sdpa_kernel(SDPBackend.MATH)


@contextlib.contextmanager
def sgd_foreach(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> Iterator[None]:
    groups = ctx.optimizer.param_groups if ctx is not None else []
    old = [group.get("foreach") for group in groups]
    for group in groups:
        group["foreach"] = True
    try:
        yield
    finally:
        for group, value in zip(groups, old):
            group["foreach"] = value


@contextlib.contextmanager
def reuse_original(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> Iterator[None]:
    original = ctx.original if ctx is not None else None
    if original is None:
        yield
        return
    compute = original.image_features
    last: list = [None, None, None]  # the tensor, its version and normalize of the last call; its result

    def image_features(x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        if torch.is_grad_enabled():
            return compute(x, normalize=normalize)
        if last[0] is not x or last[1] != (x._version, normalize):
            last[:] = [x, (x._version, normalize), compute(x, normalize=normalize)]
        return last[2]
    with _instance_attributes([(original, "image_features", image_features)]):
        yield


class LeanPmgAft(PmgAft):
    """PMG-AFT's loss with one B-image graph alive at a time (see ``lean_memory``); same terms, same gradients."""

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        z_clean = checkpoint(target, x, use_reentrant=False)  # created first, so its backward runs last
        z_adv = target(x_adv)  # [B, C], graph kept
        with torch.no_grad():
            z_ori = original(x_adv)
        return pmg_aft_loss(z_adv, z_ori, z_clean, y, alpha=self.alpha, beta=self.beta, reduction=self.reduction,
                            direction=self.direction)


@contextlib.contextmanager
def lean_memory(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> Iterator[None]:
    method = ctx.method if ctx is not None else None
    if not isinstance(method, PmgAft) or (method.reduction == "sum" and method.sum_batch is not None):
        yield
        return
    lean = LeanPmgAft(method.alpha, method.beta, reduction=method.reduction, direction=method.direction)
    ctx.method = lean
    try:
        yield
    finally:
        ctx.method = method


VARIANTS: dict[str, Variant] = {"fused_attention": fused_attention, "patch_gemm": patch_gemm,
                                "math_attention": math_attention, "sgd_foreach": sgd_foreach,
                                "reuse_original": reuse_original, "lean_memory": lean_memory}


@contextlib.contextmanager
def apply_variants(names: Sequence[str], towers: Sequence[nn.Module],
                   ctx: StepContext | None = None) -> Iterator[None]:
    """Enter every named variant on ``towers`` (image towers) and ``ctx`` (training measurements)."""
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(lookup(VARIANTS, name, "variant")(towers, ctx))
        yield
