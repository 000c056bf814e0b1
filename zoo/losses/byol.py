"""BYOL's regression loss (Grill et al. 2020, arXiv 2006.07733, eq. 2): ℓ(p, z) = ‖p̂ − ẑ‖² = 2 − 2·cos(p, z),
with ẑ from the target network under stop-gradient. Computed in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of 2 − 2·cos(prediction, target); no gradient flows into ``target``."""
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"byol_loss: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must be the same [n, d]")
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        cos = F.cosine_similarity(prediction.float(), target.detach().float(), dim=1)
        return (2.0 - 2.0 * cos).mean()


def symmetric_byol_loss(p1: Tensor, p2: Tensor, z1_target: Tensor, z2_target: Tensor) -> Tensor:
    """L = ℓ(q(z₁), sg(z′₂)) + ℓ(q(z₂), sg(z′₁)) (BYOL's symmetrised loss, per-sample mean of each term)."""
    return byol_loss(p1, z2_target) + byol_loss(p2, z1_target)


class BYOLLoss(nn.Module):
    def forward(self, p1: Tensor, p2: Tensor, z1_target: Tensor, z2_target: Tensor) -> Tensor:
        return symmetric_byol_loss(p1, p2, z1_target, z2_target)
