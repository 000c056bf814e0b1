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

from zoo.deprecation import renamed
from zoo.nn.tokens import gather_tokens, sincos_1d


class TabularEncoderConfig(TypedDict, total=False):
    """JSON-able spec of the ``encoder:`` block of a tabular method config."""

    embed_dim: int  # token width h
    depth: int  # transformer layers L
    num_heads: int
    ff_dim: int  # feed-forward width F
    dropout: float
    num_reg_tokens: int  # R


#: T-JEPA's reference run (Jannis: h = 64, L = 16, 2 heads, F = 64); R and dropout are not stated there ⚠.
DEFAULT_TABULAR_ENCODER: TabularEncoderConfig = {
    "embed_dim": 64, "depth": 16, "num_heads": 2, "ff_dim": 64, "dropout": 0.0, "num_reg_tokens": 2,
}  # fmt: skip
#: old config keys → timm's words (old configs keep loading, with a FutureWarning)
RENAMED_KEYS = {"dim": "embed_dim", "heads": "num_heads"}


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
    """[REG] tokens + feature tokens + sin-cos positions → post-norm transformer → Dropout → LN → Linear → Dropout → LN.

    ``num_columns`` D input columns give ``num_tokens`` = R + D output tokens of width ``num_features`` = h."""

    def __init__(self, num_numeric: int, cardinalities: Sequence[int], config: TabularEncoderConfig | None = None) -> None:
        super().__init__()
        config = renamed(config, RENAMED_KEYS, "tabular encoder")
        unknown = set(config) - set(DEFAULT_TABULAR_ENCODER)
        if unknown:
            raise ValueError(f"unknown tabular encoder key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_TABULAR_ENCODER)}")
        cfg: dict[str, Any] = {**DEFAULT_TABULAR_ENCODER, **config}
        dim, heads = int(cfg["embed_dim"]), int(cfg["num_heads"])
        if dim % heads or dim % 2:
            raise ValueError(f"tabular encoder: embed_dim={dim} must be even and divisible by num_heads={heads}")
        if int(cfg["num_reg_tokens"]) < 0:
            raise ValueError(f"num_reg_tokens must be >= 0, got {cfg['num_reg_tokens']}")
        self.embed_dim = self.num_features = dim
        self.num_reg_tokens = int(cfg["num_reg_tokens"])
        self.tokenizer = FeatureTokenizer(num_numeric, cardinalities, dim)
        self.num_columns = num_numeric + len(self.tokenizer.cardinalities)
        self.num_tokens = self.num_reg_tokens + self.num_columns
        self.reg_tokens = nn.Parameter(torch.randn(self.num_reg_tokens, dim) * 0.02)
        self.register_buffer("positions", sincos_1d(self.num_tokens, dim, base=100.0), persistent=False)
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
