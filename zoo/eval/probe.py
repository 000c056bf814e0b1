"""Online linear probe: a linear classifier trained alongside SSL pre-training on detached features.

It never sends gradient into the encoder (inputs are detached) and has its own optimizer parameter group (own lr,
no weight decay), so it measures the representation without shaping it (solo-learn / lightly practice).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class OnlineLinearProbe(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(features.detach().float())

    def loss(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy and logits on detached features."""
        logits = self(features)
        return F.cross_entropy(logits, labels.long()), logits
