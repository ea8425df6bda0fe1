"""pmgaft.models.fast: the patch embedding as a GEMM and batch-first attention compute the stock layers' function.

Every model ``load_clip`` returns uses them, so these tests hold the optimization to "changes no result": the same
logits and input gradients (to float rounding), the same predictions and PGD outcome, the same parameters and
state-dict keys, and the stock computation wherever the fast path does not apply.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pmgaft.attacks import pgd
from pmgaft.models import ZeroShotClassifier, load_clip, stock_kernels, use_fast_kernels
from pmgaft.models.fast import PatchEmbedding, SelfAttention


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    loaded = load_clip("pmgaft-micro")
    return ZeroShotClassifier.build(loaded.model, loaded.tokenizer, [f"class {i}" for i in range(5)],
                                    ["a photo of a {}"], cache=False).eval()


def _logits_and_grad(model, x, y):
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xi)
    return out.detach(), grad


def test_loaded_models_use_the_fast_layers(classifier):
    visual = classifier.clip.visual
    assert type(visual.conv1) is PatchEmbedding
    assert all(type(block.attn) is SelfAttention for block in visual.transformer.resblocks)
    # the text tower (causal mask) keeps the stock attention
    assert all(type(block.attn) is nn.MultiheadAttention for block in classifier.clip.transformer.resblocks)


def test_same_logits_gradients_predictions_and_attack(classifier):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(12, 3, 40, 40, generator=generator)  # resized to 32 px inside the classifier
    y = torch.randint(0, 5, (12,), generator=generator)
    fast = _logits_and_grad(classifier, x, y)
    fast_adv = pgd(classifier, x, y, eps=8 / 255, step_size=2 / 255, steps=5, sample_seeds=torch.arange(12))
    with stock_kernels([classifier.clip.visual]):
        assert type(classifier.clip.visual.conv1) is nn.Conv2d
        stock = _logits_and_grad(classifier, x, y)
        stock_adv = pgd(classifier, x, y, eps=8 / 255, step_size=2 / 255, steps=5, sample_seeds=torch.arange(12))
    assert type(classifier.clip.visual.conv1) is PatchEmbedding  # restored
    torch.testing.assert_close(fast[0], stock[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], stock[1], rtol=1e-4, atol=1e-7)
    assert torch.equal(fast[0].argmax(1), stock[0].argmax(1))
    with torch.no_grad():
        assert torch.equal(classifier(fast_adv).argmax(1), classifier(stock_adv).argmax(1))


def test_weight_gradients_match_for_training(classifier):
    model = copy.deepcopy(classifier).train()
    model.clip.visual.requires_grad_(True)
    assert type(model.clip.visual.conv1) is PatchEmbedding  # a deep copy keeps the class
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])

    def grads():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        return [p.grad.clone() for p in model.clip.visual.parameters()]
    fast = grads()
    with stock_kernels([model.clip.visual]):
        stock = grads()
    for a, b in zip(fast, stock):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_state_dict_and_parameters_unchanged(classifier):
    visual = copy.deepcopy(classifier.clip.visual)
    keys = list(visual.state_dict())
    assert use_fast_kernels(visual, enable=False) == 1 + len(visual.transformer.resblocks)
    assert list(visual.state_dict()) == keys
    assert use_fast_kernels(visual) == 1 + len(visual.transformer.resblocks)
    assert use_fast_kernels(visual) == 0  # already fast


def test_uncovered_cases_take_the_stock_path():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, kernel_size=4, stride=4, bias=False)
    fast_conv = copy.deepcopy(conv)
    fast_conv.__class__ = PatchEmbedding
    x = torch.rand(2, 3, 18, 18)  # not a multiple of the patch: the stock convolution (drops the remainder)
    torch.testing.assert_close(fast_conv(x), conv(x))
    torch.testing.assert_close(fast_conv(x[..., :16, :16]), conv(x[..., :16, :16]), rtol=1e-5, atol=1e-6)

    attn = nn.MultiheadAttention(16, 4, batch_first=True)
    fast_attn = copy.deepcopy(attn)
    fast_attn.__class__ = SelfAttention
    q = torch.rand(2, 5, 16, requires_grad=True)
    mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    for kwargs in ({"attn_mask": mask, "need_weights": False}, {"need_weights": True}):
        out, weights = fast_attn(q, q, q, **kwargs)
        ref, ref_weights = attn(q, q, q, **kwargs)
        torch.testing.assert_close(out, ref)
        assert (weights is None) == (ref_weights is None)
    kv = torch.rand(2, 7, 16)  # cross-attention
    torch.testing.assert_close(fast_attn(q, kv, kv, need_weights=False)[0], attn(q, kv, kv, need_weights=False)[0])
    out, weights = fast_attn(q, q, q, need_weights=False)  # the fast path
    assert weights is None
    torch.testing.assert_close(out, attn(q, q, q, need_weights=False)[0], rtol=1e-5, atol=1e-6)
