"""The zero-shot classifier equals a hand computation with open_clip, caches text embeddings, stays trainable."""
import copy

import pytest
import torch
import torch.nn.functional as F

from pmgaft.errors import PmgaftError
from pmgaft.models import NORMALIZATIONS, ZeroShotClassifier

CLASSES = ["cat", "dog", "airplane"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "{c}"]


def hand_logits(model, tokenizer, x, *, norm="clip", scale=None):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[norm])
    img = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False)
    f = model.encode_image((img - mean) / std)
    f = f / f.norm(dim=-1, keepdim=True)
    class_emb = []
    for c in CLASSES:
        t = model.encode_text(tokenizer([tpl.replace("{c}", "{}").format(c) for tpl in TEMPLATES]))
        t = (t / t.norm(dim=-1, keepdim=True)).mean(0)
        class_emb.append(t / t.norm())
    scale = model.logit_scale.exp() if scale is None else scale
    return scale * f @ torch.stack(class_emb).T


@pytest.mark.parametrize("size", [32, 28, 64])
@pytest.mark.parametrize("norm, scale", [("clip", "model"), ("imagenet", 1.0)])
def test_logits_equal_hand_computation(micro_clip, tmp_path, size, norm, scale):
    model, tok = micro_clip
    zs = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path, normalization=norm,
                                  logit_scale=scale)
    x = torch.rand(5, 3, size, size)
    with torch.no_grad():
        got = zs(x)
        want = hand_logits(model, tok, x, norm=norm, scale=None if scale == "model" else scale)
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_text_embedding_cache_hit_on_second_build(micro_clip, tmp_path, monkeypatch):
    model, tok = micro_clip
    calls = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    n_first = len(calls)
    second = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    assert n_first > 0 and len(calls) == n_first  # second build: no text encoding at all
    assert torch.equal(first.text_embeddings, second.text_embeddings)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    ZeroShotClassifier.build(model, tok, CLASSES[:2], TEMPLATES, cache_dir=tmp_path)  # other prompts: new key
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_cache_key_follows_text_tower_weights(micro_clip, tmp_path):
    model, tok = micro_clip
    ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    with torch.no_grad():
        model.visual.proj.add_(1.0)  # image tower change: same text embeddings, cache still valid
    ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    with torch.no_grad():
        model.token_embedding.weight.add_(0.1)  # text tower change: new entry
    ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_image_tower_trainable_through_classifier(micro_clip, tmp_path):
    model, tok = micro_clip
    zs = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    loss = F.cross_entropy(zs(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model.visual.conv1.weight.grad is not None and model.visual.conv1.weight.grad.abs().sum() > 0
    assert not zs.text_embeddings.requires_grad


def test_bad_input(micro_clip, tmp_path):
    model, tok = micro_clip
    zs = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path)
    with pytest.raises(PmgaftError, match=r"\[B, 3, H, W\]"):
        zs(torch.rand(3, 32, 32))
    with pytest.raises(PmgaftError, match="placeholder"):
        ZeroShotClassifier.build(model, tok, CLASSES, ["no placeholder"], cache_dir=tmp_path)
    with pytest.raises(PmgaftError, match="logit_scale"):
        ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path, logit_scale=-1)
    with pytest.raises(PmgaftError, match="unknown normalization"):
        ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES, cache_dir=tmp_path, normalization="cifar")


def test_frozen_copy_owns_its_image_tower_and_shares_the_rest(micro_clip, tmp_path):
    model, tok = copy.deepcopy(micro_clip.model), micro_clip.tokenizer  # the fixture is shared: train a copy
    target = ZeroShotClassifier.build(model, tok, CLASSES, TEMPLATES[:1], cache_dir=tmp_path, normalization=(
        (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), logit_scale=7.0)
    target.clip.visual.requires_grad_(True)
    frozen = target.frozen_copy()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), target(x), rtol=0, atol=0)
    assert frozen.normalization == "custom" and frozen.logit_scale == 7.0
    visual, frozen_visual = dict(target.clip.visual.named_parameters()), dict(frozen.clip.visual.named_parameters())
    assert all(visual[k].data_ptr() != p.data_ptr() and not p.requires_grad for k, p in frozen_visual.items())
    assert all(p.requires_grad for p in target.clip.visual.parameters())
    shared = [(a, b) for (k, a), (_, b) in zip(target.clip.named_parameters(), frozen.clip.named_parameters())
              if not k.startswith("visual.")]
    assert shared and all(a is b for a, b in shared)  # text tower and logit scale: the same tensors
    assert not frozen.training and not frozen.clip.visual.training
    assert target.clip.transformer.training == model.transformer.training  # shared modules untouched
    with torch.no_grad():  # training the target leaves the copy where it was
        before = frozen(x)
        for p in target.clip.visual.parameters():
            p.add_(0.1)
        torch.testing.assert_close(frozen(x), before, rtol=0, atol=0)
        assert not torch.allclose(target(x), before)
