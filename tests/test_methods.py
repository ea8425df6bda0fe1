"""Every registered method: loss terms where theory pins them, one SGD step lowers the loss, frozen original."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from pmgaft.errors import PmgaftError
from pmgaft.methods import METHODS, AttackSettings, attention_maps, build_method, image_tokens
from pmgaft.models import ZeroShotClassifier

TRAINABLE = [name for name, cls in METHODS.items() if cls.trainable]
CLASSES = ["cat", "dog", "fish"]


def _config(method: str, **kw) -> SimpleNamespace:
    base = dict(method=method, alpha=None, beta=None, kl_reduction="batchmean", kl_direction="official",
                batch_size=4)
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture
def models(micro_clip):
    model, tokenizer = micro_clip
    target = ZeroShotClassifier.build(model, tokenizer, CLASSES, ["a photo of a {}"])
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    original = ZeroShotClassifier(frozen, target.text_embeddings, image_size=target.image_size).eval()
    target.requires_grad_(False)
    target.clip.visual.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0])
    return target.train(), original, x, y


def test_registry_and_bad_arguments() -> None:
    assert {"pmg_aft", "tecoa", "ft_clean", "fare", "tga_zsr", "none"} <= set(METHODS)
    with pytest.raises(PmgaftError, match="Valid:"):
        build_method(_config("pmgaft"))
    for name in ("pmg_aft", "tga_zsr"):
        with pytest.raises(PmgaftError, match="alpha and beta"):
            build_method(_config(name, alpha=-0.1))
        with pytest.raises(PmgaftError, match="alpha and beta"):
            build_method(_config(name, beta=-1.0))
    with pytest.raises(PmgaftError, match="nothing to train"):
        build_method(_config("none")).losses(None, None, None, None, None)


def test_tecoa_is_ce_on_zero_shot_logits(models) -> None:
    target, original, x, y = models
    out = build_method(_config("tecoa")).losses(target, original, x, x, y)
    torch.testing.assert_close(out["total"], F.cross_entropy(target(x), y))
    out = build_method(_config("ft_clean")).losses(target, original, x, torch.zeros_like(x), y)
    torch.testing.assert_close(out["total"], F.cross_entropy(target(x), y))


def test_pmg_aft_kl_terms_vanish_at_the_original_model(models) -> None:
    target, original, x, y = models
    out = build_method(_config("pmg_aft")).losses(target, original, x, x, y)
    assert out["kl_general"].abs() < 1e-5 and out["kl_clean"].abs() < 1e-5
    torch.testing.assert_close(out["ce"], F.cross_entropy(target(x), y))


def test_fare_is_zero_when_models_coincide_and_no_attack(models) -> None:
    target, original, x, y = models
    out = build_method(_config("fare")).losses(target, original, x, x, y)
    assert out["total"].abs() < 1e-8


def test_fare_attack_maximizes_embedding_distance(models) -> None:
    target, original, x, y = models
    settings = AttackSettings(eps=4 / 255, step_size=1 / 255, steps=3)
    x_adv = build_method(_config("fare")).attack(target, original, x, y, settings, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= settings.eps + 1e-6
    assert build_method(_config("fare")).losses(target, original, x, x_adv, y)["total"] > 0


def test_tga_zsr_attention_maps_shape_and_range(models) -> None:
    target, original, x, y = models
    pooled, tokens = image_tokens(target, x)
    assert pooled.shape == (4, 32) and tokens.shape == (4, 16, 32)  # 32 px / 8 px patches = 4x4 grid
    torch.testing.assert_close(pooled, target.image_features(x, normalize=False))
    assert target.clip.visual.output_tokens is False  # the flag is restored
    maps = attention_maps(tokens, target.text_embeddings[y], (32, 32))
    assert maps.shape == (4, 1, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert maps.flatten(1).amax(1).min() > 0.9  # min-max normalized per image
    out = build_method(_config("tga_zsr")).losses(target, original, x, x, y)
    assert out["att_adv"] < 1e-5 and out["att_clean"] < 1e-5  # target == original, x_adv == x


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_sgd_step_lowers_the_loss_and_spares_the_original(models, name: str) -> None:
    target, original, x, y = models
    method = build_method(_config(name))
    before = {k: v.clone() for k, v in original.state_dict().items()}
    x_adv = method.attack(target, original, x, y, AttackSettings(), torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in target.parameters())  # the attack leaves no parameter gradients
    optimizer = torch.optim.SGD(target.clip.visual.parameters(), lr=1e-3)
    loss = method.losses(target, original, x, x_adv, y)["total"]
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = method.losses(target, original, x, x_adv, y)["total"]
    assert after < loss.detach()
    assert all(p.grad is None for p in original.parameters())
    assert all(torch.equal(v, before[k]) for k, v in original.state_dict().items())
    assert all(p.grad is None for n, p in target.clip.named_parameters() if not n.startswith("visual."))


def test_tga_zsr_maps_live_on_the_model_input_grid(models, monkeypatch) -> None:
    """Small images (CIFAR 32 px fed natively) still get maps at the model's input size, as TGA-ZSR's 224 px."""
    from pmgaft.methods import tga_zsr

    target, original, x, y = models
    sizes = []
    real = tga_zsr.attention_maps
    monkeypatch.setattr(tga_zsr, "attention_maps", lambda *a: sizes.append(a[2]) or real(*a))
    small = torch.nn.functional.interpolate(x, size=16)
    build_method(_config("tga_zsr")).losses(target, original, small, small, y)
    assert sizes and all(s == (target.image_size, target.image_size) for s in sizes)
