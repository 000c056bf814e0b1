"""Offline linear evaluation: multinomial logistic regression on frozen embeddings.

The standard linear-probe protocol (e.g. SimCLR §B.6, lightly/solo-learn benchmarks) trains a linear classifier on
the frozen training-set embeddings and reports top-1 accuracy on the test set. Here the embeddings are standardised
with the training statistics and the classifier is fitted to convergence by full-batch L-BFGS with a small L2
penalty: deterministic, no learning-rate or epoch choice to tune, and seconds on a CPU for 60k × 512 features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_linear_classifier(
    features: Tensor, labels: Tensor, num_classes: int, l2: float = 1e-4, max_iter: int = 300
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(weight [C, d], bias [C], mean [d], std [d]) of an L2-regularised softmax classifier on standardised
    ``features`` [N, d] (fp32)."""
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features {tuple(features.shape)} must be [N, d] with N = {labels.shape[0]} labels")
    x = features.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    y = labels.long()
    weight = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def linear_probe_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, num_classes: int,
    l2: float = 1e-4, max_iter: int = 300,
) -> float:
    """Top-1 test accuracy of :func:`fit_linear_classifier` trained on the training embeddings."""
    weight, bias, mean, std = fit_linear_classifier(train_features, train_labels, num_classes, l2, max_iter)
    logits = ((test_features.float() - mean) / std) @ weight.T + bias
    return (logits.argmax(1) == test_labels.long()).float().mean().item()
