"""Projection / prediction heads shared by the image methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPHead(nn.Sequential):
    """``[Linear → BN → ReLU] × (num_layers − 1) → Linear [→ BN]``.

    SimCLR v1 projector (Chen et al. 2020, tf2/model.py): ``MLPHead(d, d, 128, num_layers=2, last_batch_norm=True)``
    — hidden Linear with bias, last Linear without bias followed by BN without β (centring is redundant before a
    cosine loss). SimCLR v2 uses ``num_layers=3``. BYOL's projector/predictor (Grill et al. 2020) are
    ``MLPHead(d, 4096, 256)`` with ``last_batch_norm=False``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        hidden_batch_norm: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=True))
            if hidden_batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            bn = nn.BatchNorm1d(out_dim)
            bn.bias.requires_grad_(False)  # "BN without β": the shift stays at zero
            layers.append(bn)
        super().__init__(*layers)
        self.out_dim = out_dim


class Prototypes(nn.Module):
    """SwAV's prototypes C (Caron et al. 2020, arXiv 2006.09882): a bias-free linear layer whose K rows are kept on
    the unit sphere, so scores z·Cᵀ of a normalised z are cosines. (lightly's ``SwaVPrototypes`` adds a bias; the
    original has none.)"""

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        if num_prototypes < 2:
            raise ValueError(f"num_prototypes must be >= 2, got {num_prototypes}")
        self.layer = nn.Linear(dim, num_prototypes, bias=False)
        self.normalize()

    @torch.no_grad()
    def normalize(self) -> None:
        """Project every prototype back onto the unit sphere (SwAV does this before every forward)."""
        self.layer.weight.copy_(F.normalize(self.layer.weight, dim=1))

    @property
    def weight(self) -> Tensor:
        return self.layer.weight

    def forward(self, z: Tensor) -> Tensor:
        return self.layer(z)
