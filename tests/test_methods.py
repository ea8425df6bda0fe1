"""Every registered method: loss terms where theory pins them, one SGD step lowers the loss, frozen original;
the text-guided attention maps of TGA-ZSR and Comp-TGA against a hand-written computation of docs/protocols.md."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F

from pmgaft.attacks.pgd import sample_seeds
from pmgaft.errors import PmgaftError
from pmgaft.methods import METHODS, AttackSettings, attention_maps, build_method, image_tokens
from pmgaft.methods.comp_tga import NOT_TEMPLATE
from pmgaft.models import ZeroShotClassifier

TRAINABLE = [name for name, cls in METHODS.items() if cls.trainable]
ATTENTION = ["tga_zsr", "comp_tga"]  # the methods with text-guided attention-map terms
CLASSES = ["cat", "dog", "fish"]


def _config(method: str, **kw) -> SimpleNamespace:
    base = dict(method=method, model="pmgaft-micro", alpha=None, beta=None, kl_reduction="batchmean",
                kl_direction="official", batch_size=4)
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
    assert {"pmg_aft", "tecoa", "ft_clean", "fare", "tga_zsr", "comp_tga", "none"} <= set(METHODS)
    with pytest.raises(PmgaftError, match="Valid:"):
        build_method(_config("pmgaft"))
    for name in ("pmg_aft", "tga_zsr", "comp_tga"):
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
    x_adv = build_method(_config("fare")).attack(target, original, x, y, settings, sample_seeds(0, range(len(x))))
    assert (x_adv - x).abs().max() <= settings.eps + 1e-6
    assert build_method(_config("fare")).losses(target, original, x, x_adv, y)["total"] > 0


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_sgd_step_lowers_the_loss_and_spares_the_original(models, name: str) -> None:
    """From a target a little off the original, as after any step (at target == original the unsquared L2 map
    distances of TGA-ZSR / Comp-TGA sit on their kink at 0, which every step raises to first order)."""
    target, original, x, y = models
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in target.clip.visual.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=g))
    method = build_method(_config(name))
    before = {k: v.clone() for k, v in original.state_dict().items()}
    x_adv = method.attack(target, original, x, y, AttackSettings(), sample_seeds(0, range(len(x))))
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


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_attack_honours_the_reduction_setting(models, name: str) -> None:
    """An attacking method hands ``settings.reduction`` to PGD (a bad value fails there); ft_clean never attacks."""
    target, original, x, y = models
    method = build_method(_config(name))
    try:
        x_adv = method.attack(target, original, x, y, AttackSettings(reduction="median"))
    except PmgaftError as err:
        assert "reduction" in str(err)
    else:
        assert torch.equal(x_adv, x)


def test_lean_memory_gives_the_same_terms_and_gradients(models) -> None:
    from pmgaft.training.config import resolve_config

    target, original, x, y = models
    x_adv = (x + 4 / 255 * torch.randn_like(x).sign()).clamp(0, 1)
    results = []
    for memory in ("fast", "lean"):
        method = build_method(_config("pmg_aft", memory=memory))
        assert method.lean == (memory == "lean")
        target.zero_grad(set_to_none=True)
        terms = method.losses(target, original, x, x_adv, y)
        terms["total"].backward()
        results.append((terms, [p.grad.clone() for p in target.clip.visual.parameters()]))
    (fast, fast_grads), (lean, lean_grads) = results
    for key in fast:
        torch.testing.assert_close(lean[key], fast[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, lean_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert resolve_config({"memory": "lean"}).memory == "lean"
    with pytest.raises(PmgaftError, match="memory"):
        resolve_config({"memory": "small"})


def test_attack_reduction_config_key() -> None:
    from pmgaft.training.config import resolve_config

    assert resolve_config({}).attack_settings().reduction == "sum"  # pmgaft's arithmetic, both recipes
    assert resolve_config({"recipe": "official"}).attack_settings().reduction == "sum"
    assert resolve_config({"attack_reduction": "mean"}).attack_settings().reduction == "mean"
    with pytest.raises(PmgaftError, match="attack_reduction"):
        resolve_config({"attack_reduction": "median"})


def test_mean_reduction_is_the_released_arithmetic(micro_clip) -> None:
    """Batch-mean CE on raw-cosine logits under fp16 autocast underflows (docs/protocols.md): fewer pixels
    move than with pmgaft's summed objective. At fp32 the two take exactly the same sign steps."""
    model, tokenizer = micro_clip
    target = ZeroShotClassifier.build(model, tokenizer, [f"class {i}" for i in range(10)], ["a photo of a {}"],
                                      logit_scale=1.0)  # raw cosine, as the released PMG-AFT code
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 3, 32, 32, generator=g), torch.randint(0, 10, (256,), generator=g)
    method = build_method(_config("tecoa"))

    def moved(reduction: str, fp16: bool) -> tuple[torch.Tensor, float]:
        settings = AttackSettings(steps=1, random_start=False, reduction=reduction)
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            x_adv = method.attack(target, None, x, y, settings)
        return x_adv, ((x_adv - x).abs() > 0.5 / 255).float().mean().item()

    (sum32, _), (mean32, _) = moved("sum", False), moved("mean", False)
    assert torch.equal(sum32, mean32)  # B = 2^8: dividing by it is exact, so every sign agrees
    (_, sum16), (_, mean16) = moved("sum", True), moved("mean", True)
    assert sum16 > 0.99
    assert mean16 < sum16 - 0.03


def _handwritten_tokens(clip: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """docs/protocols.md's tokens, written out: all 1 + N output tokens after ln_post and the projection."""
    v = clip.visual
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    z = v.conv1((x - mean) / std).flatten(2).transpose(1, 2)  # [B, N, width] (32 px inputs: no resize)
    z = torch.cat([v.class_embedding.expand(len(x), 1, -1), z], dim=1) + v.positional_embedding
    z = v.transformer(v.ln_pre(z))
    return v.ln_post(z) @ v.proj  # [B, 1 + N, D]


def _handwritten_map(tokens: torch.Tensor, text: torch.Tensor, size: int, *, over_tokens: bool = True
                     ) -> torch.Tensor:
    if over_tokens:
        tokens = tokens / tokens.norm(dim=1, keepdim=True)  # each channel normalized across the tokens
    am = tokens[:, 1:] @ text.unsqueeze(-1)  # [B, N, 1]
    lo, hi = am.min(1, keepdim=True)[0], am.max(1, keepdim=True)[0]
    am = (am - lo) / (hi - lo)
    side = int(am.shape[1] ** 0.5)
    am = am.reshape(len(am), side, side, 1).permute(0, 3, 1, 2)
    return F.interpolate(am, size, mode="bilinear")


def test_tga_zsr_map_matches_the_handwritten_protocol(models) -> None:
    target, original, x, y = models
    pooled, tokens = image_tokens(target, x)
    assert tokens.shape == (4, 17, 32)  # class token + a 4x4 grid of 8 px patches, projected to D = 32
    assert target.clip.visual.output_tokens is False  # the flag is restored
    torch.testing.assert_close(pooled, target.image_features(x, normalize=False))
    with torch.no_grad():
        hand = _handwritten_tokens(target.clip, x)
    torch.testing.assert_close(tokens, hand, rtol=1e-5, atol=1e-5)
    text = target.text_embeddings[y]
    maps = attention_maps(tokens, text, (32, 32))
    torch.testing.assert_close(maps, _handwritten_map(hand, text, 32), rtol=1e-5, atol=1e-5)
    assert maps.shape == (4, 1, 32, 32) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    # the token-axis normalization changes the map: a version without it would fail the check above
    assert (maps - _handwritten_map(hand, text, 32, over_tokens=False)).abs().max() > 1e-2


def test_comp_tga_map_matches_the_handwritten_protocol(models, micro_clip) -> None:
    target, original, x, y = models
    method = build_method(_config("comp_tga"))
    _, tokenizer = micro_clip
    with torch.no_grad():
        not_text = F.normalize(target.clip.encode_text(tokenizer([NOT_TEMPLATE.format(c) for c in CLASSES])), dim=-1)
        hand = _handwritten_tokens(target.clip, x)
    assert NOT_TEMPLATE == "This is not a photo of a {}"
    torch.testing.assert_close(method.not_text_embeddings(target), not_text, rtol=1e-5, atol=1e-5)
    expected = (_handwritten_map(hand, target.text_embeddings[y], 32)
                * (1 - _handwritten_map(hand, not_text[y], 32)))  # each map upsampled, then the product
    maps = method.maps(target, image_tokens(target, x)[1], y, (32, 32))
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-5)
    assert method.hparams() == {"alpha": 0.10, "beta": 0.07, "not_template": NOT_TEMPLATE}


def test_comp_tga_needs_class_names(models) -> None:
    target, original, x, y = models
    bare = ZeroShotClassifier(target.clip, target.text_embeddings, image_size=target.image_size)
    with pytest.raises(PmgaftError, match="class names"):
        build_method(_config("comp_tga")).losses(bare, original, x, x, y)


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_terms_vanish_at_the_original_model(models, name: str) -> None:
    """Target == original and x_adv == x: both map distances are 0; an attacked batch moves the adversarial one."""
    target, original, x, y = models
    method = build_method(_config(name))
    out = method.losses(target, original, x, x, y)
    assert out["att_adv"] < 1e-5 and out["att_clean"] < 1e-5
    torch.testing.assert_close(out["ce"], F.cross_entropy(target(x), y))
    x_adv = method.attack(target, original, x, y, AttackSettings(eps=8 / 255, step_size=4 / 255, steps=2))
    out = method.losses(target, original, x, x_adv, y)
    assert out["att_adv"] > 1e-3 and out["att_clean"] < 1e-5
    torch.testing.assert_close(out["total"], out["ce"] + method.alpha * out["att_adv"] + method.beta * out["att_clean"])


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_maps_live_on_the_model_input_grid(models, monkeypatch, name: str) -> None:
    """Small images (CIFAR 32 px fed natively) still get maps at the model's input size, as TGA-ZSR's 224 px."""
    target, original, x, y = models
    method = build_method(_config(name))
    sizes = []
    real = method.maps
    monkeypatch.setattr(method, "maps", lambda *a: sizes.append(a[3]) or real(*a))
    small = F.interpolate(x, size=16)
    method.losses(target, original, small, small, y)
    assert sizes and all(s == (target.image_size, target.image_size) for s in sizes)


def _soft_ce(target, x: torch.Tensor, teacher: torch.Tensor, scale: float = 180.0) -> torch.Tensor:
    """AGFT's objective per image [B], written out: -sum_c p_T,c log softmax(s * cos(f(x), t))_c."""
    cos = F.normalize(target.image_features(x), dim=-1) @ target.text_embeddings.T
    return -(teacher * (scale * cos).log_softmax(-1)).sum(-1)


def test_agft_defaults_are_the_paper_run_and_bad_settings_fail() -> None:
    from pmgaft.training.config import resolve_config

    method = build_method(_config("agft"))
    assert (method.scale, method.ratio) == (180.0, 0.4)
    config = resolve_config({"method": "agft"})
    assert (config.agft_scale, config.agft_ratio, config.lr, config.logit_scale) == (180.0, 0.4, 4e-4, "model")
    assert resolve_config({"method": "tecoa"}).agft_scale is None  # other methods do not carry it
    assert build_method(resolve_config({"method": "agft", "agft_scale": 100, "agft_ratio": 1.0})).hparams() == \
        {"agft_scale": 100.0, "agft_ratio": 1.0}  # the released code's command-line defaults
    for values in ({"agft_scale": 0.0}, {"agft_ratio": -0.4}, {"agft_scale": float("inf")}):
        with pytest.raises(PmgaftError, match="agft_scale|agft_ratio"):
            resolve_config({"method": "agft", **values})


def test_agft_attack_ascends_the_soft_target_ce_without_labels(models) -> None:
    target, original, x, y = models
    method = build_method(_config("agft"))
    teacher = (72 * F.normalize(original.image_features(x), dim=-1) @ original.text_embeddings.T).softmax(-1)
    plain = AttackSettings(eps=8 / 255, step_size=2 / 255, steps=3, random_start=False)
    x_adv = method.attack(target, original, x, y, plain)
    assert (x_adv - x).abs().max() <= plain.eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert (_soft_ce(target, x_adv, teacher) > _soft_ce(target, x, teacher)).all()
    # no hard labels anywhere: other labels, the same adversary (bit for bit, same random starts)
    seeds = sample_seeds(3, range(len(x)))
    a = method.attack(target, original, x, y, AttackSettings(), seeds)
    b = method.attack(target, original, x, y[torch.randperm(len(y))].flip(0), AttackSettings(), seeds)
    assert torch.equal(a, b)
    # per-sample random starts and gradients: an image's adversary does not depend on the rest of its batch
    c = method.attack(target, original, x[1:3], y[1:3], AttackSettings(), seeds[1:3])
    torch.testing.assert_close(c, a[1:3], rtol=0, atol=1e-6)


def test_agft_step_is_the_hand_computed_sgd_update() -> None:
    """One ``train_step`` of ``agft`` against a hand-written PGD-2 on the soft target and a hand-written SGD step."""
    from pmgaft.bench.harness import build_harness
    from pmgaft.bench.train import build_step_context
    from pmgaft.training.step import attack_seeds, train_step

    harness = build_harness("pmgaft-micro", classes=4, device=torch.device("cpu"))
    ctx = build_step_context(harness, "agft", attack_steps=2)
    lr, eps = 0.1, 1 / 255
    ctx.optimizer.param_groups[0]["lr"] = lr
    x, y = harness.batch(3, seed=5)
    target, original = ctx.target, ctx.original
    before = {n: p.detach().clone() for n, p in target.clip.visual.named_parameters()}
    with torch.no_grad():
        teacher = (0.4 * 180 * F.normalize(original.image_features(x), dim=-1) @ original.text_embeddings.T
                   ).softmax(-1)
    # the adversary: a uniform start from each image's own seed, two sign steps on the summed soft CE
    delta = torch.stack([(2 * torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(int(s))) - 1) * eps
                         for s in attack_seeds(ctx.seed, 1, torch.arange(3))])
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(2):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(_soft_ce(target, x + delta, teacher).sum(), delta)
        delta = ((x + (delta.detach() + eps * grad.sign()).clamp(-eps, eps)).clamp(0, 1) - x).detach()
    loss = _soft_ce(target, x + delta, teacher).mean()
    grads = torch.autograd.grad(loss, list(target.clip.visual.parameters()))
    expected = {n: before[n] - lr * g for (n, _), g in zip(target.clip.visual.named_parameters(), grads)}

    result = train_step(ctx, 1, [(x, y, torch.arange(3))])
    assert result.finite and result.terms["total"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert set(result.terms) == {"soft_ce", "total"}
    for name, p in target.clip.visual.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(p, before[n]) for n, p in target.clip.visual.named_parameters())
    assert all(p.grad is None for p in original.parameters())
