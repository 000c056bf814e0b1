"""Symmetric cross-modal InfoNCE of CLIP (Radford et al. 2021, arXiv 2103.00020, Fig. 3) as used by CLAP (Elizalde
et al. 2023, arXiv 2206.04769): logits = s · âᵀt̂ over the batch, cross-entropy towards the diagonal in both
directions, averaged; s = exp(learned log-scale), initialised at 1/0.07 and clamped at 100. The contrastive baseline
of SLAP; unlike SLAP it has cross-sample terms (in-batch negatives). Computed in fp32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: CLIP's initial temperature 0.07 and its cap on the scale
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def symmetric_info_nce(audio: Tensor, text: Tensor, log_scale: Tensor) -> Tensor:
    """½[CE(s·ÂT̂ᵀ, diag) + CE(s·T̂Âᵀ, diag)] for paired rows of ``audio`` and ``text`` [n, d]."""
    if audio.shape != text.shape or audio.ndim != 2:
        raise ValueError(f"symmetric_info_nce: audio {tuple(audio.shape)} and text {tuple(text.shape)} must be the same [n, d]")
    with torch.autocast(device_type=audio.device.type, enabled=False):
        a, t = F.normalize(audio.float(), dim=1), F.normalize(text.float(), dim=1)
        logits = log_scale.float().clamp(max=MAX_LOGIT_SCALE).exp() * a @ t.T
        target = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
