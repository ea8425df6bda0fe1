"""A zero-shot classifier's logits whose activations the backward recomputes, in segments (activation
checkpointing): how PMG-AFT's ``--memory lean`` runs its clean branch.

Under ``torch.utils.checkpoint`` a forward keeps only its inputs, and the backward runs it again when it reaches
it. One checkpoint around the whole forward rebuilds the whole graph at once -- B images' activations, alive next
to everything the backward holds by then. In PMG-AFT that includes the adversarial branch's weight gradients (the
size of the image tower): autograd keeps them in its buffers until the clean branch has added its share, so the
single checkpoint peaks at one graph *plus* a tower's worth of gradients (ViT-B/32 fp32, batch 32: 335 MiB on
934 MiB of activations).

:func:`recomputed_logits` cuts an open_clip ``VisionTransformer``'s forward into ``segments`` pieces, each under
its own checkpoint: the first embeds the patches and runs the first blocks, the last runs the last blocks, pools,
projects and takes the logits. The forward keeps the images and one token tensor per cut (``[B, N, width]``,
1/16 of a block's activations for ViT-B); the backward rebuilds one segment at a time. With two segments the
rebuilt half graph and the gradients together stay below a whole graph once the activations exceed twice the
tower's weights (ViT-B/32 fp32: batch >= 24). Other image towers get one checkpoint around the whole forward.

Same function, same gradients (the tests compare them with the plain forward); the price is one more forward.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pmgaft.models.zeroshot import ZeroShotClassifier


def _plain_vit(visual: nn.Module) -> nn.Module | None:
    """The open_clip ``VisionTransformer`` inside ``visual`` (DDP unwrapped), or None for any other tower."""
    inner = getattr(visual, "module", visual)  # DistributedDataParallel wraps the tower while training
    transformer = getattr(inner, "transformer", None)
    if (getattr(transformer, "resblocks", None) is None or not getattr(transformer, "batch_first", False)
            or getattr(inner, "output_tokens", True) or not hasattr(inner, "_embeds") or not hasattr(inner, "_pool")):
        return None
    return inner


def recomputed_logits(model: ZeroShotClassifier, x: Tensor, *, segments: int = 2) -> Tensor:
    """``model(x)`` [B, C] whose activations the backward recomputes, one of ``segments`` pieces at a time."""
    vit = _plain_vit(model.clip.visual)
    if vit is None or segments <= 1:
        return checkpoint(model, x, use_reentrant=False)
    blocks = list(vit.transformer.resblocks)
    cuts = [round(i * len(blocks) / segments) for i in range(segments + 1)]

    def segment(i: int, h: Tensor) -> Tensor:
        if i == 0:  # [B, 3, H, W] in [0, 1] -> tokens [B, N, width]
            h = vit._embeds(model.preprocess(h))
        for block in blocks[cuts[i]:cuts[i + 1]]:
            h = block(h)
        if i == segments - 1:  # tokens -> pooled [B, D] -> logits [B, C]
            pooled, _ = vit._pool(h)
            h = model.logits_from_features(pooled if vit.proj is None else pooled @ vit.proj)
        return h

    for i in range(segments):
        x = checkpoint(segment, i, x, use_reentrant=False)
    return x
