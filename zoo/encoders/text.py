"""Text encoder trained from scratch: token + learned position embeddings → pre-norm Transformer encoder → masked
mean pooling. A small stand-in for SLAP's RoBERTa-base (arXiv 2506.17815 trains both encoders from scratch too).
Token ids come from :class:`zoo.nn.tokenizers.WordTokenizer` (0 = padding)."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor, nn

from zoo.deprecation import renamed


class TextEncoderConfig(TypedDict, total=False):
    embed_dim: int
    depth: int
    num_heads: int
    max_length: int
    dropout: float


DEFAULT_TEXT_ENCODER: TextEncoderConfig = {"embed_dim": 128, "depth": 2, "num_heads": 4, "max_length": 32, "dropout": 0.1}
#: old config keys → timm's words (old configs keep loading, with a FutureWarning)
RENAMED_KEYS = {"dim": "embed_dim", "heads": "num_heads"}


class TextEncoder(nn.Module):
    """``[B, L]`` token ids → ``[B, embed_dim]``."""

    def __init__(self, vocab_size: int, config: TextEncoderConfig | None = None) -> None:
        super().__init__()
        config = renamed(config, RENAMED_KEYS, "text encoder")
        unknown = set(config) - set(DEFAULT_TEXT_ENCODER)
        if unknown:
            raise ValueError(f"unknown text encoder key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_TEXT_ENCODER)}")
        cfg = {**DEFAULT_TEXT_ENCODER, **config}
        dim, heads = int(cfg["embed_dim"]), int(cfg["num_heads"])
        if dim % heads:
            raise ValueError(f"text encoder embed_dim={dim} must be divisible by num_heads={heads}")
        self.config = cfg
        self.max_length = int(cfg["max_length"])
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position_embedding = nn.Parameter(torch.zeros(1, self.max_length, dim))
        nn.init.trunc_normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, float(cfg["dropout"]), batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, int(cfg["depth"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim

    def forward(self, ids: Tensor) -> Tensor:
        if ids.ndim != 2 or ids.shape[1] > self.max_length:
            raise ValueError(f"TextEncoder expects ids [batch, <= {self.max_length}], got shape {tuple(ids.shape)}")
        pad = ids == 0
        x = self.token_embedding(ids) + self.position_embedding[:, : ids.shape[1]]
        x = self.norm(self.transformer(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
