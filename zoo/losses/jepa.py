"""JEPA regression loss (I-JEPA, Assran et al. 2023, arXiv 2301.08243, eq. 1; DMT-JEPA, arXiv 2405.17995, §3).

The predictor's outputs at the target patches regress the (stop-gradient) target representations. The paper writes
an L2 distance; the release (facebookresearch/ijepa src/train.py, and DMT-JEPA's) trains with smooth-L1 (Huber,
β = 1), which is zoo's default. Averaged over every target block, image, patch and channel; computed in fp32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

JEPALossKind = Literal["smooth_l1", "mse"]


def jepa_loss(predictions: Tensor, targets: Tensor, kind: JEPALossKind = "smooth_l1", beta: float = 1.0) -> Tensor:
    """Mean smooth-L1 (``beta``: the L1/L2 switch point) or squared error between same-shaped ``predictions`` and
    ``targets`` (e.g. [num_targets, B, K, D]); no gradient flows into ``targets``."""
    if predictions.shape != targets.shape:
        raise ValueError(f"jepa_loss: predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    if kind not in ("smooth_l1", "mse"):
        raise ValueError(f"jepa_loss: kind must be 'smooth_l1' or 'mse', got {kind!r}")
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        p, t = predictions.float(), targets.detach().float()
        if kind == "mse":
            return F.mse_loss(p, t)
        return F.smooth_l1_loss(p, t, beta=beta)
