"""Tabular transformer encoder: FT-Transformer feature tokenizer (Gorishniy et al. 2021, arXiv 2106.11959, §3.3)
with T-JEPA's [REG] tokens and encoder layout (Thimonier et al. 2025; release jose-melo/t-jepa src/encoder.py).

- Tokenizer (width h): numeric feature j → x_j·W_j + b_j; categorical feature j → Emb_j[c_j] + b_j.
- R learnable regularisation tokens ("[REG]") are prepended: the sequence has R + D tokens, token R + j is feature j.
- Fixed sinusoidal positional encoding over the R + D positions (base 100, as in the release).
- Post-norm ``TransformerEncoder`` (ReLU, feed-forward width F, L layers) → Dropout → LN → Linear(h, h) → Dropout → LN.

``forward(features, keep)`` encodes only the token positions in ``keep`` (the context encoder of T-JEPA), or the whole
sequence when ``keep`` is None (the target encoder, and downstream use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import torch
from torch import Tensor, nn


class TabularEncoderConfig(TypedDict, total=False):
    """JSON-able spec of the ``encoder:`` block of a tabular method config."""

    dim: int  # token width h
    depth: int  # transformer layers L
    heads: int
    ff_dim: int  # feed-forward width F
    dropout: float
    num_reg_tokens: int  # R


#: T-JEPA's reference run (Jannis: h = 64, L = 16, 2 heads, F = 64); R and dropout are not stated there ⚠.
DEFAULT_TABULAR_ENCODER: TabularEncoderConfig = {
    "dim": 64, "depth": 16, "heads": 2, "ff_dim": 64, "dropout": 0.0, "num_reg_tokens": 2,
}  # fmt: skip


def sinusoidal_positions(num_positions: int, dim: int, base: float = 100.0) -> Tensor:
    """Fixed sin/cos table [num_positions, dim] (Vaswani et al. 2017) with ``base`` in place of 10000: tabular
    sequences are short, and the T-JEPA release uses 100."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens[b, index[b, k]]``: [B, T, h] × [B, K] → [B, K, h]."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class FeatureTokenizer(nn.Module):
    """FT-Transformer tokenizer: one h-dim token per feature (numeric: scaled vector; categorical: embedding), plus a
    per-feature bias. Input: ``features`` float [B, D], numeric values first, then categorical codes."""

    def __init__(self, num_numeric: int, cardinalities: Sequence[int], dim: int) -> None:
        super().__init__()
        self.num_numeric, self.cardinalities = num_numeric, [int(c) for c in cardinalities]
        num_features = num_numeric + len(self.cardinalities)
        if num_features < 1:
            raise ValueError("tabular tokenizer: the schema has no features")
        # FT-Transformer's init: uniform(±1/√h)
        bound = 1 / math.sqrt(dim)
        self.numeric_weight = nn.Parameter(torch.empty(num_numeric, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_features, dim).uniform_(-bound, bound))
        # all categorical tables in one embedding, column j's codes offset by the sizes of the tables before it
        self.embedding = nn.Embedding(max(1, sum(self.cardinalities)), dim)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        # an all-numeric table never reads it: frozen, so DDP does not wait for its gradient (it stays in the state
        # dict, so checkpoints load either way)
        self.embedding.weight.requires_grad_(bool(self.cardinalities))
        offsets = torch.tensor([0, *self.cardinalities[:-1]], dtype=torch.long).cumsum(0) if self.cardinalities else torch.zeros(0, dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("max_codes", torch.tensor(self.cardinalities, dtype=torch.long), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        d = self.num_numeric + len(self.cardinalities)
        if features.ndim != 2 or features.shape[1] != d:
            raise ValueError(f"tabular encoder expects features [B, {d}] ({self.num_numeric} numeric + {len(self.cardinalities)} categorical), got {tuple(features.shape)}")
        numeric = features[:, : self.num_numeric].unsqueeze(-1) * self.numeric_weight
        tokens = [numeric]
        if self.cardinalities:
            codes = features[:, self.num_numeric :].round().long()
            # unseen or out-of-range codes go to the unknown bucket 0 rather than indexing another column's table
            codes = torch.where((codes >= 0) & (codes < self.max_codes), codes, torch.zeros_like(codes))
            tokens.append(self.embedding(codes + self.offsets))
        return torch.cat(tokens, dim=1) + self.bias


class TabularTransformer(nn.Module):
    """[REG] tokens + feature tokens + sin-cos positions → post-norm transformer → Dropout → LN → Linear → Dropout → LN."""

    def __init__(self, num_numeric: int, cardinalities: Sequence[int], config: TabularEncoderConfig | None = None) -> None:
        super().__init__()
        unknown = set(config or {}) - set(DEFAULT_TABULAR_ENCODER)
        if unknown:
            raise ValueError(f"unknown tabular encoder key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_TABULAR_ENCODER)}")
        cfg: dict[str, Any] = {**DEFAULT_TABULAR_ENCODER, **(config or {})}
        dim, heads = int(cfg["dim"]), int(cfg["heads"])
        if dim % heads or dim % 2:
            raise ValueError(f"tabular encoder: dim={dim} must be even and divisible by heads={heads}")
        if int(cfg["num_reg_tokens"]) < 0:
            raise ValueError(f"num_reg_tokens must be >= 0, got {cfg['num_reg_tokens']}")
        self.dim, self.num_reg_tokens = dim, int(cfg["num_reg_tokens"])
        self.tokenizer = FeatureTokenizer(num_numeric, cardinalities, dim)
        self.num_features = num_numeric + len(self.tokenizer.cardinalities)
        self.num_tokens = self.num_reg_tokens + self.num_features
        self.reg_tokens = nn.Parameter(torch.randn(self.num_reg_tokens, dim) * 0.02)
        self.register_buffer("positions", sinusoidal_positions(self.num_tokens, dim), persistent=False)
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(cfg["ff_dim"]), float(cfg["dropout"]), activation="relu", batch_first=True, norm_first=False
        )
        self.transformer = nn.TransformerEncoder(layer, int(cfg["depth"]), enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.Dropout(float(cfg["dropout"])), nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Dropout(float(cfg["dropout"])), nn.LayerNorm(dim)
        )

    def tokens(self, features: Tensor) -> Tensor:
        """Input sequence [B, R + D, h] before the transformer: [REG] tokens and feature tokens, plus positions."""
        feature_tokens = self.tokenizer(features)
        reg = self.reg_tokens.unsqueeze(0).expand(features.shape[0], -1, -1)
        return torch.cat([reg.to(feature_tokens.dtype), feature_tokens], dim=1) + self.positions.to(feature_tokens.dtype)

    def forward(self, features: Tensor, keep: Tensor | None = None) -> Tensor:
        """Encoded tokens [B, K, h] of positions ``keep`` [B, K] (indices into the R + D sequence), or all R + D."""
        x = self.tokens(features)
        if keep is not None:
            x = gather_tokens(x, keep)
        return self.head(self.transformer(x))
