"""Projection / prediction heads shared by the image methods."""

from __future__ import annotations

from torch import nn


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
