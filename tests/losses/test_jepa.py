import pytest
import torch

from zoo.losses.jepa import jepa_loss


def test_mse_matches_a_manual_reference_and_stops_gradient_into_targets():
    torch.manual_seed(0)
    predictions = torch.randn(4, 3, 5, 8, requires_grad=True)
    targets = torch.randn(4, 3, 5, 8, requires_grad=True)
    loss = jepa_loss(predictions, targets, "mse")
    pairs = zip(predictions.flatten().tolist(), targets.flatten().tolist())
    manual = sum((p - t) ** 2 for p, t in pairs) / predictions.numel()
    assert loss.item() == pytest.approx(manual, rel=1e-6)
    loss.backward()
    assert targets.grad is None
    torch.testing.assert_close(predictions.grad, 2 * (predictions - targets).detach() / predictions.numel())


def test_smooth_l1_matches_the_huber_formula():
    torch.manual_seed(0)
    p, t = torch.randn(4, 2, 3, 5) * 2, torch.randn(4, 2, 3, 5)
    d = (p - t).abs()
    manual = torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    torch.testing.assert_close(jepa_loss(p, t, "smooth_l1"), manual)
    # β = 1: 0.5·x² for |x| < 1, |x| − 0.5 beyond
    assert jepa_loss(torch.tensor([0.5, 3.0]), torch.zeros(2), "smooth_l1").item() == pytest.approx((0.5 * 0.25 + 2.5) / 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="differ in shape"):
        jepa_loss(torch.zeros(2, 3), torch.zeros(3, 2), "mse")
    with pytest.raises(ValueError, match="unknown JEPA loss kind"):
        jepa_loss(torch.zeros(2), torch.zeros(2), "l3")  # type: ignore[arg-type]
