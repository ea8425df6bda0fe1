"""Test-time defences (TTC, random noise) and their adaptive attacks, as library functions.

TTC is checked against a per-sample re-implementation written from the paper's description; the adaptive attacks
are checked to be attacks: with the defence switched off the end-to-end attack is plain PGD, step for step, and
on a trained model it beats the non-adaptive attack on the defended pipeline (higher loss, lower accuracy).
"""
from __future__ import annotations

import math

import pytest
import torch

from pmgaft.attacks import pgd, sample_seeds
from pmgaft.attacks.losses import cross_entropy, margin
from pmgaft.attacks.pgd import initial_delta
from pmgaft.defences import (DEFENCES, TTC_ADAPTIVE, counterattack, eot_pgd, step_weights, stream_seeds,
                             tau_statistic, ttc, ttc_cost)
from pmgaft.errors import PmgaftError
from pmgaft.models import ZeroShotClassifier, load_clip


def _classifier(model, classes: int = 5) -> ZeroShotClassifier:
    names = [f"class {i}" for i in range(classes)]
    return ZeroShotClassifier.build(model.model, model.tokenizer, names, ["a photo of a {}."],
                                    cache=False).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return _classifier(load_clip("pmgaft-micro"))


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)


def _per_sample_ttc(model, x, delta0, *, eps, step_size, steps, beta, tau_thres):
    """TTC written from the paper's description, one image at a time, with plain Python weights."""
    out = []
    for xi, d in zip(x.split(1), delta0.split(1)):
        anchor = model.image_features(xi, normalize=False).detach()
        deltas, tau = [d], None
        for k in range(steps):
            d = d.detach().requires_grad_(True)
            moved = model.image_features(xi + d, normalize=False)
            if k == 0:
                tau = ((moved - anchor).norm() / anchor.norm()).item()
            (g,) = torch.autograd.grad(((moved - anchor) ** 2).sum(), d)
            d = (xi + (d.detach() + step_size * g.sign()).clamp(-eps, eps)).clamp(0, 1) - xi
            deltas.append(d)
        if steps and tau < tau_thres:
            w = [math.exp(beta * k) for k in range(steps + 1)]
            w = [v / sum(w) for v in w]
        else:
            w = [1.0] + [0.0] * steps
        out.append(xi + sum(wk * dk for wk, dk in zip(w, deltas)))
    return torch.cat(out)


def test_ttc_is_the_papers_algorithm(micro, images):
    x, _ = images
    seeds = stream_seeds(0, range(len(x)), "defence")
    taus = counterattack(micro, x, seeds=seeds).tau
    tau_thres = float(taus.median())  # both branches of the gate in one batch
    settings = dict(eps=4 / 255, step_size=1 / 255, steps=2, beta=2.0, tau_thres=tau_thres)
    out = counterattack(micro, x, seeds=seeds, **settings)
    assert 0 < int(out.counterattacked.sum()) < len(x)
    assert torch.equal(out.counterattacked, out.tau < tau_thres)
    delta0 = initial_delta(x, 4 / 255, "linf", seeds=seeds)
    torch.testing.assert_close(out.images, _per_sample_ttc(micro, x, delta0, **settings))
    # tau is the relative embedding change under delta_0; noise only (X + delta_0) where the gate did not fire
    torch.testing.assert_close(out.tau, tau_statistic(micro, x, delta0))
    kept = ~out.counterattacked
    torch.testing.assert_close(out.images[kept], (x + delta0)[kept])
    assert ((out.images - x).abs() <= 4 / 255 + 1e-6).all() and out.images.min() >= 0 and out.images.max() <= 1


def test_step_weights_and_defaults():
    w = step_weights(2, 2.0, torch.tensor([True, False]))
    torch.testing.assert_close(w[0], torch.tensor([0.0159, 0.1173, 0.8668]), atol=1e-4, rtol=0)
    assert w[1].tolist() == [1.0, 0.0, 0.0]
    assert DEFENCES["ttc"].settings() == {"eps": 4 / 255, "step_size": 1 / 255, "steps": 2, "beta": 2.0,
                                          "tau_thres": 0.2}
    assert ttc_cost(2, False) == {"forwards": 3, "backwards": 2} and ttc_cost(2, True)["forwards"] == 5
    assert ttc_cost(0, True) == {"forwards": 0, "backwards": 0}


def test_result_does_not_depend_on_the_batch(micro, images):
    x, _ = images
    seeds = stream_seeds(3, range(10, 18), "defence")
    whole = ttc(micro, x, seeds=seeds)
    parts = torch.cat([ttc(micro, x[i:i + 3], seeds=seeds[i:i + 3]) for i in range(0, len(x), 3)])
    torch.testing.assert_close(parts, whole)
    assert not torch.equal(ttc(micro, x, seeds=stream_seeds(4, range(10, 18), "defence")), whole)
    # the evaluation's noise stream is not the attacks' random-start stream
    assert not torch.equal(stream_seeds(3, range(8), "defence"), sample_seeds(3, range(8)))


def test_random_noise_is_ttc_without_steps(micro, images):
    x, _ = images
    seeds = stream_seeds(0, range(len(x)), "defence")
    spec = DEFENCES["random-noise"]
    out = spec(micro, x, settings=spec.settings(), seeds=seeds)
    torch.testing.assert_close(out.images, x + initial_delta(x, 4 / 255, "linf", seeds=seeds))
    assert out.tau.isnan().all() and not out.counterattacked.any()
    with pytest.raises(PmgaftError, match="does not take steps"):
        spec.settings(steps=2)


def test_the_reference_tower_decides_the_gate(micro, images):
    x, _ = images
    torch.manual_seed(5)
    reference = _classifier(load_clip("pmgaft-micro"))
    seeds = stream_seeds(0, range(len(x)), "defence")
    delta0 = initial_delta(x, 4 / 255, "linf", seeds=seeds)
    out = counterattack(micro, x, seeds=seeds, reference=reference)
    torch.testing.assert_close(out.tau, tau_statistic(reference, x, delta0))
    assert not torch.allclose(out.tau, tau_statistic(micro, x, delta0))


@pytest.mark.parametrize("settings, message", [
    ({"eps": -1 / 255}, "eps must be in"), ({"eps": 2.0}, "eps must be in"), ({"tau_thres": 0.0}, "positive"),
    ({"tau_thres": -0.2}, "positive"), ({"beta": float("nan")}, "finite"), ({"beta": float("inf")}, "finite"),
    ({"steps": -1}, "non-negative integer"), ({"steps": 1.5}, "non-negative integer"),
    ({"step_size": -0.01}, "step size"), ({"momentum": 0.9}, "does not take momentum"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(PmgaftError, match=message):
        DEFENCES["ttc"].settings(**settings)


@pytest.mark.parametrize("loss", [cross_entropy, margin])
def test_adaptive_attack_on_a_switched_off_defence_is_plain_pgd(micro, images, loss):
    """eps 0 and 0 steps: the defence is the identity, one draw is exact, and e2e takes PGD's every step."""
    x, y = images
    settings = DEFENCES["ttc"].settings(eps=0.0, steps=0)
    assert TTC_ADAPTIVE["tau"].applies(settings) is False  # nothing for tau-evasion to evade
    starts = sample_seeds(0, range(len(x)))
    objective = TTC_ADAPTIVE["e2e"].objective(micro, loss, settings, None)
    adaptive = eot_pgd(objective, x, y, eps=8 / 255, step_size=2 / 255, steps=4, draws=1, start_seeds=starts,
                       draw_seeds=stream_seeds(0, range(len(x)), "eot"))
    assert torch.equal(adaptive, pgd(micro, x, y, eps=8 / 255, step_size=2 / 255, steps=4, loss=loss,
                                     sample_seeds=starts))


def _defended_loss(model, x, y, draws: int = 4) -> float:
    """Mean CE of the defended pipeline over fresh noise draws (none of the attacks' or the evaluation's)."""
    positions = range(len(x))
    losses = [cross_entropy(model(ttc(model, x, seeds=stream_seeds(j, positions, "judge"))), y).mean().item()
              for j in range(draws)]
    return sum(losses) / draws


@pytest.mark.slow
def test_adaptive_attack_beats_the_non_adaptive_one(digits_clip):
    """On a trained model, in TTC's regime (attack budget below the defence's): end to end through TTC reaches a
    higher loss on the defended pipeline, and a lower defended accuracy, than attacking the undefended model."""
    from pathlib import Path

    from pmgaft.data import load_dataset, stratified_subset
    from pmgaft.prompts import get_prompts

    loaded = load_clip("pmgaft-micro", str(digits_clip))
    prompts = get_prompts("digits", "paper")
    model = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, prompts.classnames, prompts.templates,
                                     cache=False).eval().requires_grad_(False)
    ds = load_dataset("digits", Path("data"), "test", transform="tga-zsr", image_size=loaded.image_size)
    rows = stratified_subset(ds, 40, seed=0)
    x = torch.stack([ds[i][0] for i in rows])
    y = torch.tensor([ds.targets[i] for i in rows])
    positions, eps, step = range(len(x)), 2 / 255, 1 / 255
    starts = sample_seeds(0, positions)
    transfer = pgd(model, x, y, eps=eps, step_size=step, steps=6, sample_seeds=starts)
    objective = TTC_ADAPTIVE["e2e"].objective(model, cross_entropy, DEFENCES["ttc"].settings(), None)
    adaptive = eot_pgd(objective, x, y, eps=eps, step_size=step, steps=6, draws=2, start_seeds=starts,
                       draw_seeds=stream_seeds(0, positions, "eot:e2e"))
    assert ((adaptive - x).abs() <= eps + 1e-6).all()
    assert _defended_loss(model, adaptive, y) > _defended_loss(model, transfer, y) + 0.1

    def accuracy(images):
        with torch.no_grad():
            defended = ttc(model, images, seeds=stream_seeds(0, positions, "defence"))
            return (model(defended).argmax(1) == y).float().mean()
    assert accuracy(adaptive) < accuracy(transfer)
