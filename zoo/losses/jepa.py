"""JEPA regression losses in representation space. T-JEPA (Thimonier et al. 2025) and I-JEPA's paper (Assran et al.
2023, eq. 1) use the squared L2 distance (mean squared error) between the predictor's outputs and the target
encoder's outputs at the target positions; the I-JEPA release uses smooth-L1. Computed in fp32, no gradient into the
targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("mse", "smooth_l1")


def jepa_loss(predictions: Tensor, targets: Tensor, kind: str = "mse") -> Tensor:
    """Mean over every predicted element of (p − sg(t))² (``"mse"``) or smooth-L1 (β = 1, ``"smooth_l1"``)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"jepa_loss: predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    if kind not in LOSSES:
        raise ValueError(f"unknown JEPA loss {kind!r}; valid: {', '.join(LOSSES)}")
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        p, t = predictions.float(), targets.detach().float()
        return F.mse_loss(p, t) if kind == "mse" else F.smooth_l1_loss(p, t)
