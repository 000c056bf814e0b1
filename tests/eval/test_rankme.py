import math

import pytest
import torch

from zoo.eval.rankme import RankMe, rankme


def test_isotropic_embeddings_have_full_rank():
    z = torch.eye(8).repeat(4, 1)  # equal singular values → entropy log 8 → RankMe 8
    assert rankme(z).item() == pytest.approx(8.0, rel=1e-4)


def test_collapsed_embeddings_have_rank_one():
    z = torch.randn(64, 1) @ torch.randn(1, 16)
    assert rankme(z).item() == pytest.approx(1.0, abs=1e-3)


def test_matches_the_formula_and_runs_in_fp32_under_autocast():
    z = torch.randn(50, 10)
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum() + 1e-7
    expected = math.exp(-(p * p.log()).sum().item())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = rankme(z.bfloat16())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-2)  # bf16 input rounding only
    assert rankme(z).item() == pytest.approx(expected, rel=1e-5)


def test_metric_concatenates_batches():
    z = torch.randn(40, 6)
    metric = RankMe()
    for chunk in z.split(7):
        metric.update(chunk)
    assert metric.compute().item() == pytest.approx(rankme(z).item(), rel=1e-5)


def test_bad_shape():
    with pytest.raises(ValueError, match="rankme"):
        rankme(torch.randn(1, 4))
