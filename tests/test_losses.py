"""The loss functions against their written formulas (docs/training.md)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pmgaft.errors import PmgaftError
from pmgaft.losses import agft_loss, attention_distance, fare_loss, kl_divergence, pmg_aft_loss, soft_cross_entropy


def _kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """sum_c P_c (log P_c - log Q_c), per row [B], written out."""
    p = p_logits.softmax(-1)
    return (p * (p.log() - q_logits.softmax(-1).log())).sum(-1)


@pytest.mark.parametrize("reduction", ["batchmean", "sum"])
@pytest.mark.parametrize("direction", ["official", "reversed"])
def test_pmg_aft_loss_matches_formula(reduction: str, direction: str) -> None:
    g = torch.Generator().manual_seed(0)
    z_adv, z_ori, z_clean = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 3 for _ in range(3))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    out = pmg_aft_loss(z_adv, z_ori, z_clean, y, alpha=0.7, beta=1.3, reduction=reduction, direction=direction)
    reduce = (lambda t: t.sum()) if reduction == "sum" else (lambda t: t.mean())
    if direction == "official":
        kl_g, kl_c = reduce(_kl_rows(z_ori, z_adv)), reduce(_kl_rows(z_clean, z_adv))
    else:
        kl_g, kl_c = reduce(_kl_rows(z_adv, z_ori)), reduce(_kl_rows(z_adv, z_clean))
    ce = F.cross_entropy(z_adv, y)
    torch.testing.assert_close(out["ce"], ce.float())
    torch.testing.assert_close(out["kl_general"], kl_g.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["kl_clean"], kl_c.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["total"], (ce + 0.7 * kl_g + 1.3 * kl_c).float(), rtol=1e-5, atol=1e-6)
    assert set(out) == {"ce", "kl_general", "kl_clean", "total"}


def test_kl_terms_vanish_when_logits_coincide() -> None:
    z = torch.randn(4, 7)
    out = pmg_aft_loss(z, z.clone(), z.clone(), torch.arange(4), reduction="sum")
    assert out["kl_general"].abs() < 1e-6 and out["kl_clean"].abs() < 1e-6
    torch.testing.assert_close(out["total"], out["ce"], atol=1e-6, rtol=0)


def test_kl_is_nonnegative_and_bad_args_fail() -> None:
    assert kl_divergence(torch.randn(3, 4), torch.randn(3, 4)) >= 0
    with pytest.raises(PmgaftError, match="alpha and beta"):
        pmg_aft_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                     alpha=-1)
    with pytest.raises(PmgaftError, match="direction"):
        pmg_aft_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                     direction="backwards")
    with pytest.raises(PmgaftError, match="reduction"):
        kl_divergence(torch.zeros(1, 2), torch.zeros(1, 2), reduction="mean")


def test_fare_and_attention_distances() -> None:
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    torch.testing.assert_close(fare_loss(a, b), ((a - b) ** 2).sum(1).mean())
    assert fare_loss(a, a) == 0
    m, r = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(attention_distance(m, r), (m - r).flatten(1).norm(dim=1).mean())
    assert attention_distance(m, m) == 0


def _cosines(seed: int, shape: tuple[int, int] = (6, 5)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("scale, ratio", [(180.0, 0.4), (100.0, 1.0), (50.0, 2.5)])
def test_agft_loss_is_torch_soft_label_ce_and_kl_plus_entropy(scale: float, ratio: float) -> None:
    cos_adv, cos_orig = _cosines(0), _cosines(1)
    out = agft_loss(cos_adv, cos_orig, logit_scale=scale, scale_ratio=ratio)
    assert set(out) == {"soft_ce", "total"} and out["total"] is out["soft_ce"]
    teacher = (ratio * scale * cos_orig).softmax(-1)
    # torch's own soft-label cross-entropy (nn.CrossEntropyLoss with probabilities, as AGFT's code calls it)
    torch.testing.assert_close(out["total"], F.cross_entropy(scale * cos_adv, teacher).float())
    # CE(p, q) = KL(p || q) + H(p), written with kl_div and an explicit entropy
    kl = F.kl_div((scale * cos_adv).log_softmax(-1), teacher, reduction="batchmean")
    entropy = -(teacher * teacher.log()).sum(-1).mean()
    torch.testing.assert_close(out["total"], (kl + entropy).float())


def test_agft_loss_limits_and_gradient() -> None:
    cos_orig = _cosines(2).float()
    # student == teacher distribution (rho = 1, same cosines): KL = 0, the loss is the teacher's entropy, a minimum
    cos = cos_orig.clone().requires_grad_(True)
    out = agft_loss(cos, cos_orig, logit_scale=30.0, scale_ratio=1.0)
    p = (30 * cos_orig).softmax(-1)
    torch.testing.assert_close(out["total"], -(p * p.log()).sum(-1).mean())
    out["total"].backward()
    assert cos.grad.abs().max() < 1e-6
    # rho -> 0: a uniform teacher, CE against 1/C = logsumexp(z) - mean(z)
    z = 180 * cos_orig
    uniform = agft_loss(cos_orig, _cosines(3).float(), scale_ratio=1e-12)["total"]
    torch.testing.assert_close(uniform, (z.logsumexp(-1) - z.mean(-1)).mean())
    # a very sharp teacher: the hard-label CE with the original model's argmax as the label
    cos_adv = _cosines(4).float()
    sharp = agft_loss(cos_adv, cos_orig, logit_scale=180.0, scale_ratio=1e4)["total"]
    torch.testing.assert_close(sharp, F.cross_entropy(180 * cos_adv, cos_orig.argmax(-1)))
    # d loss / d cos_adv = s (softmax(z_S) - p_T) / B; the teacher's cosines get no gradient
    cos_adv.requires_grad_(True)
    teacher_cos = cos_orig.clone().requires_grad_(True)
    agft_loss(cos_adv, teacher_cos)["total"].backward()
    expected = 180 * ((180 * cos_adv.detach()).softmax(-1) - (72 * cos_orig).softmax(-1)) / len(cos_adv)
    torch.testing.assert_close(cos_adv.grad, expected)
    assert teacher_cos.grad is None


def test_soft_cross_entropy_per_sample_and_bad_agft_scales() -> None:
    z, p = torch.randn(4, 3), torch.rand(4, 3).softmax(-1)
    torch.testing.assert_close(soft_cross_entropy(z, p), F.cross_entropy(z, p, reduction="none"))
    for kw in ({"logit_scale": 0.0}, {"logit_scale": -180.0}, {"scale_ratio": float("nan")},
               {"scale_ratio": float("inf")}, {"logit_scale": True}):
        with pytest.raises(PmgaftError, match="positive finite"):
            agft_loss(torch.zeros(1, 2), torch.zeros(1, 2), **kw)
