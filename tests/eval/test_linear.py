import torch

from zoo.eval.linear import fit_linear_classifier, linear_probe_accuracy


def test_separable_classes_are_classified_and_noise_is_at_chance():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    labels = torch.arange(800) % 4
    features = centres[labels] + torch.randn(800, 16, generator=g)
    accuracy = linear_probe_accuracy(features[:600], labels[:600], features[600:], labels[600:], 4)
    assert accuracy > 0.97
    noise = torch.randn(800, 16, generator=g)
    chance = linear_probe_accuracy(noise[:600], labels[:600], noise[600:], labels[600:], 4)
    assert chance < 0.4


def test_classifier_reaches_the_regularised_optimum():
    g = torch.Generator().manual_seed(1)
    features, labels = torch.randn(200, 5, generator=g), torch.randint(0, 3, (200,), generator=g)
    weight, bias, mean, std = fit_linear_classifier(features, labels, 3, l2=1e-2)
    x = ((features - mean) / std).requires_grad_()
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, labels) + 1e-2 * w.pow(2).sum()
    grad_w, grad_b = torch.autograd.grad(loss, [w, b])
    assert grad_w.abs().max() < 1e-3 and grad_b.abs().max() < 1e-3  # stationary point of the convex objective
