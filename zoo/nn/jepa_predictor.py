"""The I-JEPA predictor (Assran et al. 2023, arXiv 2301.08243, §3 and Appendix A; facebookresearch/ijepa
src/models/vision_transformer.py ``VisionTransformerPredictor``), over a 1-D token sequence as T-JEPA uses it.

Context-encoder outputs are projected Linear(h → p) and get the fixed sin-cos position of their token; each target
position gets a learnable mask token plus its position; a width-p transformer runs on [context; mask tokens]; its
outputs at the mask tokens go through LN → Linear(p → h). The M target masks of a batch are processed at once by
repeating the context M times along the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.encoders.tabular import gather_tokens, sinusoidal_positions


class JEPAPredictor(nn.Module):
    def __init__(self, embed_dim: int, num_positions: int, dim: int = 16, depth: int = 16, heads: int = 2, dropout: float = 0.0) -> None:
        """
        Args:
            embed_dim: encoder width h.
            num_positions: sequence length of the encoder (R + D for T-JEPA).
            dim, depth, heads: predictor width p, layers and heads (T-JEPA reference run: 16, 16, 2).
        """
        super().__init__()
        if dim % heads or dim % 2:
            raise ValueError(f"predictor dim={dim} must be even and divisible by heads={heads}")
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # I-JEPA's init of the mask token
        self.register_buffer("positions", sinusoidal_positions(num_positions, dim), persistent=False)
        # pre-norm blocks, as the ViT blocks of I-JEPA's predictor
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)

    def forward(self, context: Tensor, context_index: Tensor, target_index: Tensor) -> Tensor:
        """Predictions [M, B, K_t, h] for the target positions ``target_index`` [M, B, K_t], given the context
        encoder's outputs ``context`` [B, K_c, h] at positions ``context_index`` [B, K_c]."""
        m, b, k_t = target_index.shape
        pos = self.positions.unsqueeze(0).expand(b, -1, -1)
        x = self.embed(context) + gather_tokens(pos, context_index).to(context.dtype)
        x = x.repeat(m, 1, 1)  # [M·B, K_c, p], mask-major like target_index.flatten(0, 1)
        target_flat = target_index.reshape(m * b, k_t)
        queries = self.mask_token.to(x.dtype) + gather_tokens(pos.repeat(m, 1, 1), target_flat).to(x.dtype)
        x = self.blocks(torch.cat([x, queries], dim=1))
        return self.proj(self.norm(x[:, -k_t:])).reshape(m, b, k_t, -1)
