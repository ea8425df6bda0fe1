"""The released PMG-AFT recipe's arithmetic for one training step: the reference ``pmgaft bench`` compares with.

A benchmark reference, not a method. It runs on the same :class:`StepContext` (model, batch, classes, SGD)
as our PMG-AFT step and does what ``PMG_AFT.py``'s ``train()`` does per step (docs/training.md, recipes):

1. **text tower in every forward**: each logits call re-encodes all C class prompts (``multiGPU_CLIP``), so one
   step runs the text tower k + 3 times (k attack steps, then target(x_adv), original(x_adv), target(x));
2. **parameter gradients in the attack**: ``loss.backward()`` on the attack loss, not a gradient w.r.t. the
   perturbation only;
3. **a graph through the frozen original**: its parameters require grad, so the loss backward runs through it
   and computes its weight gradients; the three image forwards are separate calls.

Forward-equivalents of the image tower per image: 3k (attack) + 3 (forwards) + 6 (three weight backwards) =
15 at k = 2, versus our 2k + 7 = 11; plus (k + 3) x C text-prompt forwards per batch.

Left out, so this reference is a lower bound on the released cost: the text tower runs without grad (the released
code back-propagates into it too), and fp16 autocast (ours and this run in the same precision).

It computes the numbers our step computes: the same per-image random starts (:func:`attack_seeds`), the sign of
the same summed-CE gradient, :func:`~pmgaft.losses.pmg_aft_loss` on the same logits (text embeddings = the
normalized prompt embeddings, as :class:`ZeroShotClassifier` holds them), and the same SGD update: the attack's
parameter gradients are cleared before the loss backward. (The released code leaves them in ``.grad``, where
its fp16 ``GradScaler`` divides them by the loss scale, 65536 -- a negligible, unintended extra term.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pmgaft.attacks.pgd import initial_delta
from pmgaft.errors import PmgaftError
from pmgaft.losses import pmg_aft_loss
from pmgaft.methods import PmgAft
from pmgaft.models import ZeroShotClassifier
from pmgaft.models.fast import stock_kernels
from pmgaft.training.step import StepContext, attack_seeds


def _released_logits(model: ZeroShotClassifier, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``multiGPU_CLIP``: image *and* text towers on every call; logits = scale x cos [B, C]."""
    with torch.no_grad():
        text = model.clip.encode_text(tokens)  # [C, D]: all C prompts, every forward
    image = model.clip.encode_image(model.preprocess(images))  # [B, D]
    return model.logit_scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T


def _released_attack(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, tokens: torch.Tensor,
                     seeds: torch.Tensor) -> torch.Tensor:
    """``attack_pgd``: L-inf PGD whose every step calls ``loss.backward()`` (parameter gradients included)."""
    eps, alpha = ctx.attack.eps, ctx.attack.step_size
    x = x.detach().float()
    delta = initial_delta(x, eps, "linf", random_start=ctx.attack.random_start, seeds=seeds)
    for _ in range(ctx.attack.steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(_released_logits(ctx.target, x + delta, tokens).float(), y, reduction="sum")
        loss.backward()  # gradients for delta and for every trainable parameter
        with torch.no_grad():
            delta = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
    return (x + delta).clamp(0.0, 1.0).detach()


def released_pmg_aft_step(ctx: StepContext, step: int, x: torch.Tensor, y: torch.Tensor,
                          tokens: torch.Tensor, positions: torch.Tensor | None = None) -> dict[str, float]:
    """One optimizer step of PMG-AFT with the released code's arithmetic; returns the loss terms.

    ``ctx``: a PMG-AFT context (one micro-batch, no DDP); ``tokens``: the C class prompts, tokenized [C, L];
    ``positions``: the images' dataset positions, which key their random starts (default ``0 .. B-1``).
    """
    method, original = ctx.method, ctx.original
    if not isinstance(method, PmgAft) or original is None:
        raise PmgaftError("released_pmg_aft_step needs a pmg_aft StepContext with the original model.")
    if method.reduction == "sum" and method.sum_batch is not None:
        raise PmgaftError("released_pmg_aft_step reproduces batch-level KL reductions only (sum_batch=None).")
    x, y = x.to(ctx.device), y.to(ctx.device)
    positions = torch.arange(len(y)) if positions is None else positions
    frozen = original.clip.visual
    with stock_kernels([ctx.target.clip.visual, frozen]):  # the released code runs open_clip's stock layers
        ctx.optimizer.zero_grad(set_to_none=True)
        x_adv = _released_attack(ctx, x, y, tokens, attack_seeds(ctx.seed, step, positions))
        ctx.optimizer.zero_grad(set_to_none=True)  # see the module docstring: keeps the update equal to ours
        frozen.requires_grad_(True)  # the released model_ori: "frozen" only by not being in the optimizer
        try:
            z_adv = _released_logits(ctx.target, x_adv, tokens)
            z_ori = _released_logits(original, x_adv, tokens)  # with a graph
            z_clean = _released_logits(ctx.target, x, tokens)
            terms = pmg_aft_loss(z_adv, z_ori, z_clean, y, alpha=method.alpha, beta=method.beta,
                                 reduction=method.reduction, direction=method.direction)
            terms["total"].backward()  # through both target passes and the original
        finally:
            frozen.requires_grad_(False)
            for p in frozen.parameters():
                p.grad = None
        ctx.optimizer.step()
        ctx.scheduler.step()
    return {key: float(value.detach()) for key, value in terms.items()}
