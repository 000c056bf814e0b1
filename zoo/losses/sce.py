"""Scaled cosine error (GraphMAE: Hou et al. 2022, arXiv 2205.10803), the loss of SkeletonMAE (Yan et al.,
ICCV 2023): L = mean_i (1 − cos(x_i, z_i))^β over the masked nodes, β ≥ 1. Raising the error to β
down-weights easy nodes (cos near 1) relative to hard ones; both papers use β = 2 for their main results."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def scaled_cosine_error(prediction: Tensor, target: Tensor, beta: float = 2.0, reduction: str = "mean") -> Tensor:
    """Mean (or, with ``reduction="sum"``, sum) over rows of (1 − cos(prediction, target))^β; rows are nodes, the
    last dim is the feature. No gradient flows into ``target``. Computed in fp32 (cosines of near-parallel vectors
    are fragile in half precision)."""
    if prediction.shape != target.shape or prediction.ndim < 2:
        raise ValueError(f"scaled_cosine_error: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must be the same [..., d]")
    if beta < 1:
        raise ValueError(f"scaled_cosine_error: beta must be >= 1 (GraphMAE), got {beta}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"scaled_cosine_error: reduction must be 'mean' or 'sum', got {reduction!r}")
    if prediction.numel() == 0:  # no masked node in the batch: nothing to reconstruct
        return prediction.sum() * 0.0
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        cos = F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1, eps=1e-8)
        # clamp: rounding can put cos a hair above 1, and a negative base under a fractional power is NaN
        errors = (1.0 - cos).clamp_min(0.0).pow(beta)
        return errors.mean() if reduction == "mean" else errors.sum()
