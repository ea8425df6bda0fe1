"""``recomputed_logits`` (PMG-AFT's ``--memory lean``): the plain forward's logits and gradients, and the memory it
is for -- measured as the peak of live tensors of a loss + backward (the profiler's replay, allocator-independent).

pmgaft-tiny (3 blocks, 65 tokens x 128) at batch 32: one graph's activations are ~50 MiB against 2.4 MiB of image
tower weights; at batch 2 they are ~3 MiB, about the gradients' size -- the case a single checkpoint gets wrong.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pmgaft.bench.harness import build_harness
from pmgaft.bench.profile import tensor_peak_bytes
from pmgaft.losses import pmg_aft_loss
from pmgaft.methods import PmgAft, TeCoA
from pmgaft.models import recomputed_logits


class _Wrapper(nn.Module):
    """Stands in for a tower wrapper: ``module`` (as DistributedDataParallel names it) or an opaque name."""

    def __init__(self, inner: nn.Module, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute
        setattr(self, attribute, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attribute)(x)


def _models(batch: int, model: str = "pmgaft-tiny"):
    harness = build_harness(model, classes=10, device=torch.device("cpu"))
    target = harness.classifier()
    target.clip.visual.requires_grad_(True)
    target.train()
    x, y = harness.batch(batch)
    return target, target.frozen_copy(), x, (x + 2 / 255).clamp(0, 1), y


@pytest.mark.parametrize("wrap", [None, "module", "opaque"])
def test_recomputed_logits_are_the_plain_forward_with_its_gradients(wrap):
    target, _, x, _, _ = _models(3, "pmgaft-micro")
    params = list(target.clip.visual.parameters())
    ref = target(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    if wrap:  # DDP's wrapper is looked through; an unknown one gets a single checkpoint around the classifier
        target.clip.visual = _Wrapper(target.clip.visual, wrap)
    for segments in (1, 2, 3):
        out = recomputed_logits(target, x, segments=segments)
        grads = torch.autograd.grad(out.square().sum(), params)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def _step_peak(target, losses) -> int:
    """Peak bytes of live tensors above the start of ``losses()["total"].backward()`` (from no gradients, as a
    training step starts)."""
    target.zero_grad(set_to_none=True)
    peak = tensor_peak_bytes(lambda: losses()["total"].backward())
    if peak is None:
        pytest.skip("this torch has no profiler memory timeline")
    return peak


def test_lean_holds_no_more_than_tecoa_at_a_batch_where_activations_dominate():
    target, original, x, x_adv, y = _models(32)
    tecoa = _step_peak(target, lambda: TeCoA().losses(target, original, x, x_adv, y))
    lean = _step_peak(target, lambda: PmgAft(lean=True).losses(target, original, x, x_adv, y))
    fast = _step_peak(target, lambda: PmgAft(lean=False).losses(target, original, x, x_adv, y))
    kept = 32 * 65 * 128 * 4  # the token tensor kept between the two segments (1 MiB)
    # one graph alive, the frozen forward's temporaries came before it (after it: +8 MiB; one checkpoint: +2.3 MiB)
    assert lean <= tecoa + kept + 0.01 * tecoa, (lean, tecoa)
    assert fast > 1.8 * tecoa  # the concatenated batch: both graphs alive


def test_two_segments_do_not_rebuild_a_whole_graph_next_to_the_gradients():
    target, original, x, x_adv, y = _models(2)

    def lean(segments: int):
        with torch.no_grad():
            z_ori = original(x_adv)
        z_clean = recomputed_logits(target, x, segments=segments)
        return pmg_aft_loss(target(x_adv), z_ori, z_clean, y)
    one, two = _step_peak(target, lambda: lean(1)), _step_peak(target, lambda: lean(2))
    weights = sum(p.numel() * p.element_size() for p in target.clip.visual.parameters())
    assert one - two > weights / 4, (one, two, weights)
