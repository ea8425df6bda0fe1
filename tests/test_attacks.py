"""Attacks: strength on a real CIFAR-10 ResNet-18, batch-size and precision independence, threat-model bounds."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pmgaft.attacks import ATTACKS, autoattack, margin, pgd, plan_autoattack
from pmgaft.errors import PmgaftError


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_clean_accuracy_of_real_model(cifar_resnet, cifar_images):
    x, y = cifar_images
    assert accuracy(cifar_resnet, x, y) >= 0.9


@pytest.mark.parametrize("eps255", [0.5, 1.0, 8.0])
def test_pgd_at_least_as_strong_as_torchattacks(cifar_resnet, cifar_images, eps255):
    import torchattacks

    x, y = cifar_images
    eps, alpha = eps255 / 255, eps255 / 4 / 255
    ours = pgd(cifar_resnet, x, y, eps=eps, step_size=alpha, steps=10, random_start=False)
    ref = torchattacks.PGD(cifar_resnet, eps=eps, alpha=alpha, steps=10, random_start=False)(x, y)
    assert accuracy(cifar_resnet, ours, y) <= accuracy(cifar_resnet, ref, y)
    assert accuracy(cifar_resnet, ours, y) < accuracy(cifar_resnet, x, y)
    assert (ours - x).abs().max() <= eps + 1e-6


def test_autoattack_runs_and_beats_pgd(cifar_resnet, cifar_images):
    x, y = cifar_images
    x, y = x[:10], y[:10]
    eps = 8 / 255
    x_aa, info = autoattack(cifar_resnet, x, y, eps=eps)
    x_pgd = pgd(cifar_resnet, x, y, eps=eps, step_size=2 / 255, steps=10)
    assert info["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"] and info["n_target_classes"] == 9
    assert accuracy(cifar_resnet, x_aa, y) <= accuracy(cifar_resnet, x_pgd, y)
    assert (x_aa - x).abs().max() <= eps + 1e-6 and x_aa.min() >= 0 and x_aa.max() <= 1


def test_pgd_independent_of_batch_size(cifar_resnet, cifar_images):
    """NOTES.md: adversarial predictions agree on >= 95% of samples between batch 1 and 20, same robust acc."""
    x, y = cifar_images
    kw = dict(eps=1 / 255, step_size=0.25 / 255, steps=10, random_start=False)
    full = pgd(cifar_resnet, x, y, **kw)
    preds = {20: cifar_resnet(full).argmax(1)}
    for bs in (1, 5):
        adv = torch.cat([pgd(cifar_resnet, x[i:i + bs], y[i:i + bs], **kw) for i in range(0, len(x), bs)])
        with torch.no_grad():
            preds[bs] = cifar_resnet(adv).argmax(1)
        assert (adv - full).abs().max() <= 2 / 255 + 1e-6
    for bs in (1, 5):
        assert (preds[bs] == preds[20]).float().mean() >= 0.95
        assert abs((preds[bs] == y).sum().item() - (preds[20] == y).sum().item()) <= 1


def test_pgd_under_bf16_autocast_matches_fp32(cifar_resnet, cifar_images):
    x, y = cifar_images
    kw = dict(eps=1 / 255, step_size=0.25 / 255, steps=5, random_start=False)
    fp32 = pgd(cifar_resnet, x, y, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = pgd(cifar_resnet, x, y, **kw)
    assert bf16.dtype == torch.float32
    with torch.no_grad():
        agree = (cifar_resnet(bf16).argmax(1) == cifar_resnet(fp32).argmax(1)).float().mean()
    assert agree >= 0.95


def test_parameters_get_no_gradient(cifar_resnet, cifar_images):
    x, y = cifar_images
    pgd(cifar_resnet, x[:4], y[:4], eps=1 / 255, step_size=1 / 255, steps=2)
    assert all(p.grad is None for p in cifar_resnet.parameters())
    assert not cifar_resnet.training  # mode untouched


class CosineNet(nn.Module):
    """A few conv layers ending in raw-cosine logits in [-1, 1], as the released PMG-AFT code uses."""

    def __init__(self, classes: int = 10, feature_scale: float = 3e4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 32))
        self.text = nn.Parameter(torch.randn(classes, 32))
        self.feature_scale = feature_scale  # large unnormalized embeddings: tiny input gradients

    def forward(self, x):
        f = F.normalize(self.features(x) * self.feature_scale, dim=-1)
        return f @ F.normalize(self.text, dim=-1).T.to(f.dtype)


def _boundary_fraction(x_adv, x, eps):
    d = (x_adv - x).abs()
    return ((d > 0.99 * eps) | (x_adv == 0) | (x_adv == 1)).float().mean().item()


def test_half_precision_gradients_do_not_underflow():
    """The released evaluation's failure: cos logits + batch-mean CE + fp16 -> input grads underflow, sign(0)=0.

    Our PGD differentiates the summed per-sample loss, so under fp16 autocast it moves every pixel to the
    eps-ball boundary just as in fp32; the batch-mean variant visibly stalls.
    """
    torch.manual_seed(0)
    model = CosineNet().eval()
    x, y = torch.rand(1024, 3, 16, 16), torch.randint(0, 10, (1024,))
    eps, kw = 1 / 255, dict(eps=1 / 255, step_size=1 / 255, steps=2, random_start=False)
    fp32 = _boundary_fraction(pgd(model, x, y, **kw), x, eps)
    with torch.autocast("cpu", dtype=torch.float16):
        ours = _boundary_fraction(pgd(model, x, y, **kw), x, eps)
        batch_mean = _boundary_fraction(
            pgd(model, x, y, loss=lambda out, t: F.cross_entropy(out.float(), t).expand(len(t)) / len(t), **kw),
            x, eps)
    assert fp32 > 0.95  # pixels with an exactly-zero gradient (dead ReLUs) stay put in any precision
    assert ours >= fp32 - 0.005
    assert batch_mean < 0.5  # the failure is real on this model, so the check above means something


@st.composite
def attack_case(draw):
    b = draw(st.integers(1, 4))
    hw = draw(st.integers(4, 12))
    eps = draw(st.sampled_from([0.0, 1 / 255, 4 / 255, 0.05, 0.3, 1.0]))
    seed = draw(st.integers(0, 1000))
    return b, hw, eps, seed


@settings(max_examples=30, deadline=None)
@given(case=attack_case(), name=st.sampled_from(["none", "pgd", "cw"]), norm=st.sampled_from(["linf", "l2"]))
def test_every_attack_stays_in_the_ball_and_the_image_box(case, name, norm):
    b, hw, eps, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, hw, hw, generator=g)
    x[:, :, 0] = 0.0  # pixels on the box boundary
    x[:, :, -1] = 1.0
    y = torch.randint(0, 5, (b,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * hw * hw, 5))
    if name == "none" or norm == "linf":
        x_adv, _ = ATTACKS[name](model, x, y, eps=eps, step_size=eps / 2, steps=3, seed=seed)
        dist = (x_adv - x).abs().flatten(1).amax(1)
    else:
        x_adv = pgd(model, x, y, eps=eps, step_size=eps / 2, steps=3, norm="l2", loss=name.replace("pgd", "ce"))
        dist = (x_adv - x).flatten(1).norm(dim=1)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (dist <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_cw_margin_loss():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert torch.allclose(margin(logits, torch.tensor([0, 2])), torch.tensor([-1.0, 4.0]))


@pytest.mark.parametrize("classes, attacks, targets", [
    (2, ["apgd-ce"], 1),
    (3, ["apgd-ce", "fab-t", "square"], 2),
    (5, ["apgd-ce", "apgd-t", "fab-t", "square"], 4),
    (1000, ["apgd-ce", "apgd-t", "fab-t", "square"], 9),
])
def test_autoattack_class_count_rules(classes, attacks, targets):
    assert plan_autoattack(classes) == (attacks, targets)


def test_autoattack_on_two_classes_runs_apgd_ce_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 2, (6,))
    x_adv, info = autoattack(model, x, y, eps=2 / 255)
    assert info["attacks"] == ["apgd-ce"]
    assert (x_adv - x).abs().max() <= 2 / 255 + 1e-6


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=-0.1), "eps must be in"), (dict(eps=1.5), "eps must be in"), (dict(steps=-1), "steps must be"),
    (dict(step_size=-1.0), "step_size"), (dict(norm="l3"), "unknown norm"), (dict(loss="hinge"), "unknown attack loss"),
])
def test_bad_arguments(kwargs, match):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    args = dict(eps=0.1, step_size=0.01, steps=1) | kwargs
    with pytest.raises(PmgaftError, match=match):
        pgd(model, torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), **args)


def test_bad_images():
    model = nn.Flatten()
    with pytest.raises(PmgaftError, match=r"\[B, C, H, W\]"):
        pgd(model, torch.rand(3, 4, 4), torch.tensor([0]), eps=0.1, step_size=0.1, steps=1)
    with pytest.raises(PmgaftError, match=r"must be in \[0, 1\]"):
        pgd(model, torch.rand(1, 3, 4, 4) * 255, torch.tensor([0]), eps=0.1, step_size=0.1, steps=1)


# --- the streaming engine: early exit and refill change no result ---------------------------------------------

def _stream(model, x, y, *, batch_size, early_exit, eps, steps=10, loss="ce"):
    from pmgaft.attacks import pgd_stream, sample_seeds

    return pgd_stream(model, lambda ids: (x[ids], y[ids]), len(x), eps=eps, step_size=eps / 4, steps=steps,
                      seeds=sample_seeds(0, range(len(x))), batch_size=batch_size, early_exit=early_exit, loss=loss)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_stream_without_early_exit_is_pgd(cifar_resnet, cifar_images, loss):
    from pmgaft.attacks import sample_seeds

    x, y = cifar_images
    eps = 1 / 255
    result = _stream(cifar_resnet, x, y, batch_size=len(x), early_exit=False, eps=eps, loss=loss)
    x_adv = pgd(cifar_resnet, x, y, eps=eps, step_size=eps / 4, steps=10, loss=loss,
                sample_seeds=sample_seeds(0, range(len(x))))
    with torch.no_grad():
        assert torch.equal(result.final_pred, cifar_resnet(x_adv).argmax(1))
    assert (result.steps_run == 10).all()


@pytest.mark.parametrize("eps", [0.5 / 255, 2 / 255])
def test_early_exit_gives_the_same_robust_set_for_less_work(cifar_resnet, cifar_images, eps):
    x, y = cifar_images
    with torch.no_grad():
        clean = cifar_resnet(x).argmax(1) == y
    full = _stream(cifar_resnet, x, y, batch_size=len(x), early_exit=False, eps=eps)
    fast = _stream(cifar_resnet, x, y, batch_size=7, early_exit=True, eps=eps)  # refilled batches of 7
    assert torch.equal(fast.robust(y, "worst", clean), full.robust(y, "worst", clean))
    assert torch.equal(fast.fooled_at, full.fooled_at)  # the first fooling iterate, found on the same path
    assert fast.steps_run.sum() < full.steps_run.sum()
    fooled = full.fooled_at >= 0
    assert (fast.steps_run[fooled] == full.fooled_at[fooled].clamp(max=9) + 1).all()  # stopped right there


def test_stream_random_starts_do_not_depend_on_the_batch(cifar_resnet, cifar_images):
    x, y = cifar_images
    from pmgaft.attacks.pgd import initial_delta, sample_seeds

    seeds = sample_seeds(0, range(len(x)))
    whole = initial_delta(x, 4 / 255, "linf", seeds=seeds)
    pieces = torch.cat([initial_delta(x[i:i + 3], 4 / 255, "linf", seeds=seeds[i:i + 3]) for i in range(0, 20, 3)])
    assert torch.equal(whole, pieces) and whole.abs().max() <= 4 / 255
    a = _stream(cifar_resnet, x, y, batch_size=20, early_exit=False, eps=1 / 255, steps=0)
    b = _stream(cifar_resnet, x, y, batch_size=3, early_exit=False, eps=1 / 255, steps=0)
    assert torch.equal(a.final_pred, b.final_pred)


def test_registry_metadata_describes_every_attack():
    for name, spec in ATTACKS.items():
        assert spec.name == name and spec.description
        assert spec.iterative == (spec.loss is not None) or spec.is_clean
        assert set(spec.scorings) <= {"worst", "final"}
    assert [n for n, s in ATTACKS.items() if s.iterative] == ["pgd", "cw"]
    assert ATTACKS["autoattack"].params() == ("eps",) and ATTACKS["none"].params() == ()


def test_tga_zsr_apgd_variant_runs_ce_and_dlr():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    x_adv, info = ATTACKS["apgd-ce-dlr"](model, x, y, eps=4 / 255, step_size=0, steps=0, seed=0)
    assert info["attacks"] == ["apgd-ce", "apgd-dlr"] and (x_adv - x).abs().max() <= 4 / 255 + 1e-6


def test_every_attack_says_what_it_costs_as_pyautoattack_runs_it():
    """The passes per image ``pmgaft reproduce`` estimates with: every registered attack gives them, and
    AutoAttack's stage settings are those pyautoattack sets for the version (one restart each)."""
    from pyautoattack import AutoAttack

    from pmgaft.attacks.autoattack import APGD_SETTINGS, SQUARE_QUERIES, TARGETED_ITERATIONS, autoattack_passes

    for name, spec in ATTACKS.items():
        assert spec.passes is not None, name
        assert all(p.gradients >= 0 and p.forwards >= 0 for p in spec.passes(7, 10)), name
    assert [p.gradients for p in ATTACKS["pgd"].passes(7, 10)] == [7] and ATTACKS["none"].passes(7, 10) == ()
    for version in ("standard", "rand"):
        aa = AutoAttack(nn.Identity(), version=version, eps=1 / 255)
        assert (aa.apgd.n_iter, aa.apgd.eot_iter, aa.apgd.n_restarts) == (
            APGD_SETTINGS[version]["n_iter"], APGD_SETTINGS[version]["eot_iter"], 1)
    aa = AutoAttack(nn.Identity(), version="standard", eps=1 / 255)
    assert (aa.apgd_targeted.n_iter, aa.apgd_targeted.n_restarts, aa.apgd_targeted.n_target_classes) == (
        TARGETED_ITERATIONS, 1, 9)
    assert (aa.fab.n_iter, aa.fab.n_restarts, aa.fab.n_target_classes) == (TARGETED_ITERATIONS, 1, 9)
    assert (aa.square.n_queries, aa.square.n_restarts) == (SQUARE_QUERIES, 1)
    stages = autoattack_passes(1000, "standard")  # APGD-CE, APGD-T, FAB-T, Square
    assert [(p.gradients, p.forwards) for p in stages] == [(100, 0), (900, 0), (900, 900), (0, 5000)]
    with pytest.raises(PmgaftError, match="no cost model for AutoAttack version 'plus'"):
        autoattack_passes(10, "plus")
