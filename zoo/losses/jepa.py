"""JEPA regression losses in representation space: the predictor's outputs at the target positions regress the
(stop-gradient) target encoder's outputs there.

- T-JEPA (Thimonier et al. 2025) and I-JEPA's paper (Assran et al. 2023, arXiv 2301.08243, eq. 1) write the squared
  L2 distance (``"mse"``);
- the I-JEPA release (facebookresearch/ijepa src/train.py) and DMT-JEPA (arXiv 2405.17995, §3) train with smooth-L1
  (Huber, β = 1; ``"smooth_l1"``).

Each method passes its paper's choice explicitly. Averaged over every predicted element; computed in fp32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

JEPALossKind = Literal["mse", "smooth_l1"]
LOSSES = ("mse", "smooth_l1")


def jepa_loss(predictions: Tensor, targets: Tensor, kind: JEPALossKind, beta: float = 1.0) -> Tensor:
    """Mean of (p − sg(t))² (``"mse"``) or smooth-L1 with switch point ``beta`` (``"smooth_l1"``) over same-shaped
    ``predictions`` and ``targets`` (the JEPAs: [M·B, K, D], mask-major); no gradient flows into ``targets``."""
    if predictions.shape != targets.shape:
        raise ValueError(f"jepa_loss: predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    if kind not in LOSSES:
        raise ValueError(f"unknown JEPA loss kind {kind!r}; valid: {', '.join(LOSSES)}")
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        p, t = predictions.float(), targets.detach().float()
        return F.mse_loss(p, t) if kind == "mse" else F.smooth_l1_loss(p, t, beta=beta)
