"""Collapse signals: the spread of the L2-normalised embeddings, and the warning a run gives when it (or RankMe) drops.

``embedding_std`` is the mean over dimensions of the per-dimension standard deviation of z/‖z‖, times √d (SimSiam,
Chen & He 2021, arXiv 2011.10566, §4.1 uses the unscaled value, which is ≈ 1/√d for well-spread outputs and 0 when
every sample maps to one point). Scaled by √d it reads the same for any width: ≈ 1 spread, → 0 collapsed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class CollapseWarning(UserWarning):
    """The representation looks collapsed (RankMe or embedding std under the method's threshold)."""


class EmbeddingStd(Metric):
    """√d · mean_j std_j(z/‖z‖) over every embedding seen since the last reset (sums are reduced across ranks)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor([], dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", default=torch.tensor([], dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, embeddings: Tensor) -> None:  # type: ignore[override]
        z = torch.nn.functional.normalize(embeddings.detach().double(), dim=1)
        if self.total.numel() == 0:  # width known at the first batch
            self.total = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
            self.total_sq = torch.zeros_like(self.total)
        self.count += z.shape[0]
        self.total += z.sum(0)
        self.total_sq += (z * z).sum(0)

    def compute(self) -> Tensor:
        if self.count < 2:
            return torch.tensor(float("nan"), device=self.device)
        mean = self.total / self.count
        variance = (self.total_sq / self.count - mean * mean).clamp_min(0) * self.count / (self.count - 1)
        return (variance.sqrt().mean() * math.sqrt(self.total.numel())).float()


def collapse_message(metrics: dict[str, float], min_rankme: float | None, min_std: float | None, where: str) -> str | None:
    """A warning naming ``where`` (e.g. "epoch 3") and every signal under its threshold; None when all is well."""
    low = []
    if min_rankme is not None and metrics.get("rankme", math.inf) < min_rankme:
        low.append(f"RankMe {metrics['rankme']:.3g} < collapse_min_rankme={min_rankme}")
    if min_std is not None and metrics.get("embedding_std", math.inf) < min_std:
        low.append(f"embedding std {metrics['embedding_std']:.3g} < collapse_min_std={min_std}")
    if not low:
        return None
    return f"possible representation collapse at {where}: " + ", ".join(low) + " (check lr, temperature, augmentations)"
