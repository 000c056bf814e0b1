import pytest
import torch
from lightly.loss import NegativeCosineSimilarity

from zoo.losses.byol import byol_loss, symmetric_byol_loss


def test_equals_squared_distance_of_normalised_vectors():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    manual = ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()
    torch.testing.assert_close(byol_loss(p, z), manual)


def test_symmetric_loss_matches_lightly():
    g = torch.Generator().manual_seed(1)
    p1, p2, z1, z2 = (torch.randn(10, 6, generator=g) for _ in range(4))
    lightly = NegativeCosineSimilarity()  # −mean cos
    expected = (2 + 2 * lightly(p1, z2)) + (2 + 2 * lightly(p2, z1))
    torch.testing.assert_close(symmetric_byol_loss(p1, p2, z1, z2), expected)


def test_no_gradient_into_the_target_and_zero_at_alignment():
    p = torch.randn(4, 3, requires_grad=True)
    z = (3 * p).detach().requires_grad_(True)
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert z.grad is None


def test_fp32_under_bf16_autocast_and_shape_errors():
    p, z = torch.randn(8, 4), torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = byol_loss(p.bfloat16(), z.bfloat16())
    assert loss.dtype == torch.float32
    with pytest.raises(ValueError, match="same"):
        byol_loss(torch.randn(4, 3), torch.randn(4, 2))
