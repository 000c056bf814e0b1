import pytest
import torch

from zoo.losses.sce import scaled_cosine_error


def test_zero_for_perfect_reconstruction_and_scale_invariant():
    target = torch.randn(20, 6)
    assert scaled_cosine_error(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    assert scaled_cosine_error(3.0 * target, target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_matches_a_manual_reference(beta):
    torch.manual_seed(0)
    pred, target = torch.randn(7, 5), torch.randn(7, 5)
    manual = []
    for p, t in zip(pred.tolist(), target.tolist()):
        dot = sum(a * b for a, b in zip(p, t))
        norm = (sum(a * a for a in p) ** 0.5) * (sum(b * b for b in t) ** 0.5)
        manual.append((1 - dot / norm) ** beta)
    assert scaled_cosine_error(pred, target, beta).item() == pytest.approx(sum(manual) / len(manual), rel=1e-5)


def test_opposite_vectors_give_two_to_the_beta_and_no_gradient_reaches_the_target():
    pred = torch.randn(4, 3, requires_grad=True)
    target = (-pred.detach()).requires_grad_(True)
    loss = scaled_cosine_error(pred, target, beta=2.0)
    assert loss.item() == pytest.approx(4.0, rel=1e-5)
    loss.backward()
    assert target.grad is None and pred.grad is not None


def test_bad_arguments():
    with pytest.raises(ValueError, match="must be the same"):
        scaled_cosine_error(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta"):
        scaled_cosine_error(torch.ones(3, 2), torch.ones(3, 2), beta=0.5)
    empty = torch.zeros(0, 4, requires_grad=True)
    assert scaled_cosine_error(empty, torch.zeros(0, 4)).item() == 0.0
