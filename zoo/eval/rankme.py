"""RankMe: the effective rank of a batch of embeddings (Garrido et al. 2023, arXiv 2210.02885, eq. 1).

RankMe(Z) = exp(−Σ_k p_k log p_k), p_k = σ_k / ‖σ‖₁ + ε, with σ the singular values of Z. It needs no labels and
tracks downstream accuracy; a value near 1 means collapse. The SVD runs in fp32 whatever the autocast state.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from zoo.eval.states import concatenated


@torch.no_grad()
def rankme(embeddings: Tensor, eps: float = 1e-7) -> Tensor:
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"rankme needs a [n >= 2, d] matrix, got shape {tuple(embeddings.shape)}")
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        singular_values = torch.linalg.svdvals(embeddings.float())
        p = singular_values / singular_values.sum().clamp_min(eps) + eps
        return torch.exp(-(p * p.log()).sum())


class RankMe(Metric):
    """RankMe over all embeddings seen since the last reset (concatenated across ranks)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, max_samples: int = 16384, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_samples = max_samples
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: Tensor) -> None:  # type: ignore[override]
        self.embeddings.append(embeddings.detach().float())

    def compute(self) -> Tensor:
        z = concatenated(self.embeddings)
        if z is None or z.shape[0] < 2:
            return torch.tensor(float("nan"), device=self.device)
        return rankme(z[: self.max_samples])
