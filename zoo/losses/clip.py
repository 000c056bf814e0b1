"""Symmetric cross-modal InfoNCE of CLIP (Radford et al. 2021, arXiv 2103.00020, Fig. 3) as used by CLAP (Elizalde
et al. 2023, arXiv 2206.04769): logits = s · âᵀt̂ over the batch, cross-entropy towards the diagonal in both
directions, averaged; s = exp(learned log-scale), initialised at 1/0.07 and clamped at 100. The contrastive baseline
of SLAP; unlike SLAP it has cross-sample terms (in-batch negatives). Computed in fp32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.nn.distributed import gather_with_grad, rank

#: CLIP's initial temperature 0.07 and its cap on the scale
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def symmetric_info_nce(audio: Tensor, text: Tensor, log_scale: Tensor, gather_distributed: bool = True) -> Tensor:
    """½[CE(s·ÂT̂ᵀ, diag) + CE(s·T̂Âᵀ, diag)] for paired rows of ``audio`` and ``text`` [n, d].

    With ``gather_distributed`` each rank scores its own rows against the other modality of the *global* batch,
    gathered with gradient (the positive of local row i on rank r is column r·n + i), so that with DDP's gradient
    average the update equals one process on the whole batch; without it every rank only sees in-rank negatives.
    """
    if audio.shape != text.shape or audio.ndim != 2:
        raise ValueError(f"symmetric_info_nce: audio {tuple(audio.shape)} and text {tuple(text.shape)} must be the same [n, d]")
    with torch.autocast(device_type=audio.device.type, enabled=False):
        a, t = F.normalize(audio.float(), dim=1), F.normalize(text.float(), dim=1)
        if gather_distributed:
            a_all, t_all, offset = gather_with_grad(a), gather_with_grad(t), rank() * len(a)
        else:
            a_all, t_all, offset = a, t, 0
        scale = log_scale.float().clamp(max=MAX_LOGIT_SCALE).exp()
        target = torch.arange(len(a), device=a.device) + offset
        return 0.5 * (F.cross_entropy(scale * a @ t_all.T, target) + F.cross_entropy(scale * t @ a_all.T, target))
