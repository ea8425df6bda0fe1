"""Useful FLOPs: forward-equivalents of a step x the image tower's forward FLOPs for one image.

The tower's forward FLOPs ``F`` count every multiply-add as 2 FLOPs in the GEMM-like ops (patch convolution,
linear layers, attention's ``QK^T`` and ``AV``, the output projection), as ``torch.utils.flop_counter`` does;
layer norms, activations, softmax and the resize/normalize of the input are not counted. For an open_clip
ViT with ``n`` tokens (patches + class token), width ``w``, MLP width ``m``, ``g`` patches of ``p x p`` and
output dimension ``d``::

    F = 2 g (3 p^2) w  +  layers x (2 n w (3w + w + 2m) + 4 n^2 w)  +  2 w d          (ViT-B/32: 8.82 GFLOPs)

Forward-equivalents count what a step *needs*, per image: a forward is 1, a backward to the input only is 1
(one GEMM per GEMM of the forward), a backward with weight gradients is 2. (Exactly: the attention matmuls need
gradients for both operands, so an input-only backward is ``F + F_attn``; the first layer's input gradient is
not needed by a weight backward, ``2F - F_conv``. Both corrections are < 3% for ViT-B/32 and not counted.)
With a PGD-k train attack (each step: forward + input-only backward = 2):

    ===========  =========  ==========================================================================
    method       F / image  what
    ===========  =========  ==========================================================================
    ft_clean     3          target(x): forward + weight backward
    tecoa        2k + 3     attack; target(x_adv): forward + weight backward
    pmg_aft      2k + 7     attack; target([x_adv, x]): 2 forwards + 2 weight backwards; original(x_adv)
    fare         2k + 4     original(x) once; attack (L2 PGD); target(x_adv): forward + weight backward
    tga_zsr      2k + 7     attack; target([x_adv, x]): 2 + 4; original(x)
    comp_tga     2k + 7     as tga_zsr (its complementary map reuses the same tokens)
    agft         2k + 4     original(x) once (the soft target); attack; target(x_adv): forward + weight backward
    pgd (eval)   2k         k x (forward + input-only backward)
    clean        1          no-grad forward
    ttc          2N + 2     TTC with N steps: f(X), N x (forward + input-only backward), the prediction
    random-noise 1          the prediction on X + noise
    ===========  =========  ==========================================================================

(The adaptive attacks on TTC differentiate through its steps, a second-order cost that is not counted.)

(FARE's and AGFT's implementations compute ``original(x)`` twice, in the attack and in the loss: 2k + 5 executed.
PMG-AFT's default ``--memory lean`` recomputes the clean forward in the backward: 2k + 8 executed, 2k + 7 counted.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pmgaft.errors import PmgaftError


@dataclass(frozen=True)
class ForwardCount:
    """Forward-equivalents per image of one step: ``per_attack_step * k + fixed``."""

    per_attack_step: int
    fixed: int

    def __call__(self, attack_steps: int) -> int:
        return self.per_attack_step * attack_steps + self.fixed


# the table in the module docstring, keyed by method name (training) or measurement kind
FORWARD_EQUIVALENTS: dict[str, ForwardCount] = {
    "ft_clean": ForwardCount(0, 3),
    "tecoa": ForwardCount(2, 3),
    "pmg_aft": ForwardCount(2, 7),
    "fare": ForwardCount(2, 4),
    "tga_zsr": ForwardCount(2, 7),
    "comp_tga": ForwardCount(2, 7),
    "agft": ForwardCount(2, 4),
    "pgd": ForwardCount(2, 0),
    "clean": ForwardCount(0, 1),
    "ttc": ForwardCount(2, 2),  # k = TTC's own steps
    "random-noise": ForwardCount(0, 1),
}


def forward_equivalents(name: str, attack_steps: int) -> int:
    """Forward-equivalents per image of one step of method/measurement ``name`` with a PGD-``attack_steps``."""
    if name not in FORWARD_EQUIVALENTS:
        raise PmgaftError(f"no forward-equivalent count for {name!r}: add it to "
                          f"pmgaft.bench.flops.FORWARD_EQUIVALENTS (and its docstring table).")
    return FORWARD_EQUIVALENTS[name](attack_steps)


def _unwrap(visual: nn.Module) -> nn.Module:
    visual = getattr(visual, "module", visual)  # DistributedDataParallel
    return getattr(visual, "_orig_mod", visual)  # torch.compile


def vit_forward_flops(visual: nn.Module) -> int:
    """``F`` of an open_clip ``VisionTransformer`` for one image, from its layer shapes (formula above)."""
    vit = _unwrap(visual)
    blocks = getattr(getattr(vit, "transformer", None), "resblocks", None)
    conv = getattr(vit, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or blocks is None or getattr(vit, "attn_pool", None) is not None:
        raise PmgaftError(f"{type(vit).__name__} is not a plain open_clip VisionTransformer; count its FLOPs with "
                          f"counted_forward_flops instead.")
    grid = vit.grid_size[0] * vit.grid_size[1]
    n, w = vit.positional_embedding.shape  # tokens (patches + class token), width
    flops = 2 * grid * (conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]) * conv.out_channels
    for block in blocks:
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
            raise PmgaftError(f"block {type(block).__name__} has no packed nn.MultiheadAttention; count its FLOPs "
                              f"with counted_forward_flops instead.")
        flops += 2 * n * w * (3 * w + w) + 4 * n * n * w  # q, k, v and output projections; QK^T and AV
        flops += sum(2 * n * lin.in_features * lin.out_features for lin in block.mlp.modules()
                     if isinstance(lin, nn.Linear))
    if vit.proj is not None:
        flops += 2 * vit.proj.shape[0] * vit.proj.shape[1]  # the pooled token only
    return int(flops)


def counted_forward_flops(visual: nn.Module, image_size: int) -> int:
    """``F`` counted by ``torch.utils.flop_counter`` on one forward of one image.

    Attention runs on the math backend (plain matmuls, which the counter sees) and the input requires grad, so
    ``nn.MultiheadAttention`` takes the path training takes rather than its fused inference kernel.
    """
    param = next(visual.parameters())
    x = torch.rand(1, 3, image_size, image_size, device=param.device, dtype=param.dtype, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        visual(x)
    return int(counter.get_total_flops())


def tower_forward_flops(visual: nn.Module, image_size: int) -> tuple[int, str]:
    """(``F``, how it was counted): the formula for open_clip ViTs, the FLOP counter for anything else."""
    try:
        return vit_forward_flops(visual), "analytic"
    except PmgaftError:
        return counted_forward_flops(visual, image_size), "flop_counter"
