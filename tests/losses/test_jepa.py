import pytest
import torch

from zoo.losses.jepa import jepa_loss


def test_smooth_l1_matches_the_huber_formula():
    torch.manual_seed(0)
    p, t = torch.randn(4, 2, 3, 5) * 2, torch.randn(4, 2, 3, 5)
    d = (p - t).abs()
    manual = torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    torch.testing.assert_close(jepa_loss(p, t), manual)
    torch.testing.assert_close(jepa_loss(p, t, "mse"), ((p - t) ** 2).mean())


def test_no_gradient_into_targets():
    p, t = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    jepa_loss(p, t).backward()
    assert p.grad is not None and t.grad is None


def test_shape_mismatch_and_unknown_kind_are_clear_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        jepa_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="kind"):
        jepa_loss(torch.zeros(2), torch.zeros(2), "l1")  # type: ignore[arg-type]
