"""The loss functions against their written formulas (docs/training.md)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pmgaft.errors import PmgaftError
from pmgaft.losses import attention_distance, fare_loss, kl_divergence, pmg_aft_loss


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
