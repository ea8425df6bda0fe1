"""Prototype speed/memory changes to the training step, measured with ``pmgaft bench --variant NAME``.

Benchmark-only: each variant patches *instances* (the benchmark's own models, optimizer, method) for the
duration of a ``with`` block and restores them afterwards, so the library is untouched and the released-recipe
reference always runs unpatched (on open_clip's stock modules, as the released code does). Every variant
computes the same function (tests compare outputs); they are candidates for the library, measured here first.

* ``stock_kernels`` -- the image towers with open_clip's stock patch convolution and ``nn.MultiheadAttention``
  instead of the fast subclasses every loaded model uses (:mod:`pmgaft.models.fast`): measures what they save.
* ``math_attention`` -- ``F.scaled_dot_product_attention`` on its math backend (bmm + softmax) instead of the
  CPU flash kernel (short sequences: 50 tokens for ViT-B/32).
* ``sgd_foreach`` -- the optimizer's multi-tensor (``foreach``) update; the CPU default is a per-parameter loop.
* ``reuse_original`` (fare) -- FARE's attack and its loss both compute the frozen original's clean embeddings
  ``original(x)``; the second call returns the first call's result (same tensor ``x``, no grad; the memo lives
  for one ``with`` block, i.e. one step): one forward less.
* ``fast_memory`` (pmg_aft) -- ``pmgaft train --memory fast``: one forward of the concatenated batch, both
  branches' graphs alive together, no recomputation.
* ``lean_memory`` (pmg_aft) -- ``pmgaft train --memory lean``, the default (:class:`pmgaft.methods.PmgAft`
  ``lean=True``): the clean branch is recomputed in the backward, so one B-image graph is alive at a time, for one
  more forward. Each of the two is a no-op where it is already the method's mode.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pmgaft.methods import PmgAft
from pmgaft.models import fast
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


def stock_kernels(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    return fast.stock_kernels(towers)


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


@contextlib.contextmanager
def _memory_mode(ctx: StepContext | None, lean: bool) -> Iterator[None]:
    method = ctx.method if ctx is not None else None
    if not isinstance(method, PmgAft) or method.lean == lean:
        yield
        return
    method.lean = lean
    try:
        yield
    finally:
        method.lean = not lean


def lean_memory(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    return _memory_mode(ctx, lean=True)


def fast_memory(towers: Sequence[nn.Module], ctx: StepContext | None = None) -> ContextManager[None]:
    return _memory_mode(ctx, lean=False)


VARIANTS: dict[str, Variant] = {"stock_kernels": stock_kernels,
                                "math_attention": math_attention, "sgd_foreach": sgd_foreach,
                                "reuse_original": reuse_original, "lean_memory": lean_memory,
                                "fast_memory": fast_memory}


@contextlib.contextmanager
def apply_variants(names: Sequence[str], towers: Sequence[nn.Module],
                   ctx: StepContext | None = None) -> Iterator[None]:
    """Enter every named variant on ``towers`` (image towers) and ``ctx`` (training measurements)."""
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(lookup(VARIANTS, name, "variant")(towers, ctx))
        yield
