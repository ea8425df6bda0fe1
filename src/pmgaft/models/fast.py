"""Faster kernels for the two layers of open_clip's ViT image tower that PyTorch computes slowly under autograd.

Attacks and training differentiate the image tower thousands of times per image, so two stock layers matter:

* **the patch embedding** ``conv1`` is a convolution with stride = kernel, no padding and no bias: a reshape and
  one GEMM. oneDNN's convolution backward for this shape is several times slower than the GEMM it amounts to
  (ViT-B/32 on CPU: ~11% of a PGD step). :class:`PatchEmbedding` computes ``patches @ W^T``.
* **self-attention** ``nn.MultiheadAttention`` with grad enabled (it only takes its fused kernel in no-grad
  inference) transposes to sequence-first and copies q, k, v and the output between layouts.
  :class:`SelfAttention` does it batch-first: one packed in-projection, views into ``[B, heads, N, d]``,
  ``F.scaled_dot_product_attention``, the output projection -- the same weights, no layout copies.

Both are subclasses of the stock modules that change only ``forward`` (same parameters, same state-dict keys,
same results up to float rounding: tests compare logits and input gradients, and predictions must be equal), and
fall back to the stock computation for any case they do not cover (masks, cross-attention, attention weights
requested, dropout in training, odd shapes). :func:`use_fast_kernels` switches a model's image tower in place;
``load_clip`` does it for every model it returns, ``enable=False`` restores the stock classes (``pmgaft bench``
runs the released recipe's reference on them).

Measured with PGD on this 2-core CPU: the quickstart's tiny ViT 0.529 -> 0.451 ms per image-step (0.85x).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbedding(nn.Conv2d):
    """A ViT patch-embedding convolution (stride = kernel, no padding/bias/groups) as one GEMM."""

    def _is_patchify(self, x: torch.Tensor) -> bool:
        p = self.kernel_size[0]
        return (self.bias is None and self.groups == 1 and self.padding == (0, 0) and self.dilation == (1, 1)
                and self.stride == self.kernel_size and self.kernel_size[1] == p and x.dim() == 4
                and x.shape[2] % p == 0 and x.shape[3] % p == 0 and self.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._is_patchify(x):
            return super().forward(x)
        b, c, h, w = x.shape  # [B, 3, H, W] -> [B, width, H/p, W/p]
        p = self.kernel_size[0]
        cols = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c * p * p)
        out = F.linear(cols, self.weight.reshape(self.out_channels, -1))  # [B * H/p * W/p, width]
        return out.view(b, h // p, w // p, -1).permute(0, 3, 1, 2)  # the tower flattens it straight away


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose batch-first self-attention under autograd runs without layout copies."""

    def _covers(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask, need_weights,
                attn_mask, is_causal) -> bool:
        return (query is key and key is value and key_padding_mask is None and attn_mask is None
                and not need_weights and not is_causal and self.batch_first and query.dim() == 3
                and self._qkv_same_embed_dim and self.in_proj_weight is not None and self.bias_k is None
                and not self.add_zero_attn and (self.dropout == 0.0 or not self.training)
                and torch.is_grad_enabled())  # no-grad inference: the stock module's fused kernel is faster

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self._covers(query, key, value, key_padding_mask, need_weights, attn_mask, is_causal):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        b, n, width = query.shape  # [B, N, W]
        heads = self.num_heads
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias).view(b, n, 3, heads, width // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, d] each, views
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, d]
        out = F.linear(out.transpose(1, 2).reshape(b, n, width), self.out_proj.weight, self.out_proj.bias)
        return out, None


_FAST = {nn.Conv2d: PatchEmbedding, nn.MultiheadAttention: SelfAttention}
_STOCK = {fast: stock for stock, fast in _FAST.items()}


def use_fast_kernels(visual: nn.Module, enable: bool = True) -> int:
    """Switch the patch embedding and the attention layers of image tower ``visual`` to the fast subclasses (or
    back to the stock classes with ``enable=False``), in place; returns how many modules changed class."""
    table = _FAST if enable else _STOCK
    changed = 0
    modules = [getattr(visual, "conv1", None)]
    modules += [getattr(block, "attn", None) for block in getattr(getattr(visual, "transformer", None),
                                                                     "resblocks", [])]
    for module in modules:
        new = table.get(type(module))
        if new is not None:
            module.__class__ = new  # forward only: same parameters, buffers and state-dict keys
            changed += 1
    return changed


@contextlib.contextmanager
def stock_kernels(towers: Sequence[nn.Module]) -> Iterator[None]:
    """Image towers ``towers`` on open_clip's stock patch convolution and attention for the ``with`` block."""
    switched = [tower for tower in towers if use_fast_kernels(tower, enable=False)]
    try:
        yield
    finally:
        for tower in switched:
            use_fast_kernels(tower)
