"""DMT-JEPA: Mo & Yun 2024, "DMT-JEPA: Discriminative Masked Targets for Joint-Embedding Predictive
Architecture" (arXiv 2405.17995). Reference code: DMTJEPA/DMTJEPA (src/models/local_agg_head.py, src/train.py).

I-JEPA regresses each masked patch's own target feature; DMT-JEPA regresses a *discriminative* target instead: the
patch's semantically similar neighbours (top-k of its 3×3 window by cosine similarity of the layer-normed
target-encoder features), aggregated by a small class-attention head whose query is the image's mean patch
feature. The same head, applied online to the context features before the predictor, is trained by the loss, and
its EMA copy produces the targets. Everything else is I-JEPA's (:class:`zoo.methods.ijepa.IJEPA`).

Differences from the release, on purpose (see also :func:`window_neighbours`): neighbours never wrap around the
image border (the release's window indices are taken modulo the grid side), and the query of each patch is its own
image's mean feature (the release tiles the batch's means batch-major, so patches get other images' means).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from zoo.methods.ijepa import IJEPA
from zoo.nn.tokens import gather_tokens
from zoo.registry import register_method

#: offsets (row, col) of the 8 neighbours of a patch in its 3×3 window, in raster order
WINDOW_OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def window_neighbours(grid: tuple[int, int], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Each patch's 8 neighbours in its 3×3 window on a ``grid`` (raster order): ``index`` [N, 8] long and
    ``valid`` [N, 8] bool. Neighbours outside the grid are invalid (their index is the patch itself, a placeholder):
    a corner patch has 3 valid neighbours, an edge patch 5, an inner patch 8."""
    grid_h, grid_w = grid
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)[:, None]
    cols = torch.arange(grid_w, device=device).repeat(grid_h)[:, None]
    offsets = torch.tensor(WINDOW_OFFSETS, device=device)
    nrows, ncols = rows + offsets[:, 0], cols + offsets[:, 1]
    valid = (nrows >= 0) & (nrows < grid_h) & (ncols >= 0) & (ncols < grid_w)
    index = torch.where(valid, nrows * grid_w + ncols, rows * grid_w + cols)
    return index, valid


def select_neighbours(features: Tensor, grid: tuple[int, int], k: int) -> tuple[Tensor, Tensor]:
    """DMT-JEPA's neighbour selection (arXiv 2405.17995, §3.2): for each patch of ``features`` [B, N, D], the
    ``k`` valid window neighbours most similar to it by cosine similarity. Returns ``index`` [B, N, k] (patch
    indices) and ``valid`` [B, N, k]: where a border patch has fewer than ``k`` valid neighbours, the extra slots are
    invalid and must be ignored (the aggregation head masks them out of its attention)."""
    batch, num_patches, _ = features.shape
    if num_patches != grid[0] * grid[1]:
        raise ValueError(f"select_neighbours: {num_patches} patches but the grid is {grid[0]}×{grid[1]}")
    if not 1 <= k <= len(WINDOW_OFFSETS):
        raise ValueError(f"select_neighbours: k must be in 1..{len(WINDOW_OFFSETS)}, got {k}")
    index, valid = window_neighbours(grid, features.device)
    unit = F.normalize(features.float(), dim=-1)
    # [B, N, 8]: cosine of each patch with each of its window neighbours; invalid ones can never be chosen first
    similarity = (unit[:, index] * unit[:, :, None]).sum(-1).masked_fill(~valid, -torch.inf)
    top = similarity.topk(k, dim=-1).indices
    chosen = torch.gather(index.expand(batch, -1, -1), 2, top)
    return chosen, torch.gather(valid.expand(batch, -1, -1), 2, top)


class ClassAttentionBlock(nn.Module):
    """Pre-LN class-attention block (CaiT, Touvron et al. 2021, arXiv 2103.17239, §3; DMT-JEPA's head): one query
    token attends to [query; tokens] (q/k/v with bias), then an MLP (ratio 4, GELU), each with a residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"class attention: num_heads={num_heads} must divide dim={dim}")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def attend(self, query: Tensor, tokens: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """Class attention of ``query`` [M, 1, D] over LN([query; tokens]) ([M, 1 + L, D]) → [M, 1, D].
        ``key_valid`` [M, L] drops tokens from the keys (the query itself is always a key, so no row is empty)."""
        m, length, dim = tokens.shape
        u = self.norm1(torch.cat([query, tokens], dim=1))
        heads, head_dim = self.num_heads, dim // self.num_heads
        q = self.q(u[:, :1]).view(m, 1, heads, head_dim).transpose(1, 2)
        k = self.k(u).view(m, 1 + length, heads, head_dim).transpose(1, 2)
        v = self.v(u).view(m, 1 + length, heads, head_dim).transpose(1, 2)
        mask = None
        if key_valid is not None:
            mask = torch.cat([key_valid.new_ones(m, 1), key_valid], dim=1)[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(m, 1, dim))

    def feed_forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(self.norm2(x))


class LocalAggregationHead(nn.Module):
    """DMT-JEPA's aggregation head: ``depth`` class-attention blocks + a final LayerNorm, used in two modes.

    - :meth:`targets` (the EMA copy): per patch, query = the image's mean patch feature, keys/values = LN([query;
      its k selected neighbours]); the query is updated block by block and, after the final LayerNorm, is the
      patch's target.
    - :meth:`context` (the online head, before the predictor): per image, query = the mean of the current context
      tokens, keys/values = LN([query; context tokens]); the attention output is added to every context token, then
      each token's MLP residual (the release's ``loc=False`` path).
    """

    def __init__(self, dim: int, num_heads: int, depth: int = 2, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ClassAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):  # the release's init
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def targets(self, features: Tensor, neighbours: Tensor, neighbour_valid: Tensor) -> Tensor:
        """features [B, N, D] (layer-normed target-encoder output), neighbours [B, P, k] patch indices and their
        validity for P query patches → aggregated targets [B, P, D]."""
        batch, num_patches, dim = features.shape
        if neighbours.shape != neighbour_valid.shape or neighbours.shape[0] != batch:
            raise ValueError(f"aggregation head: neighbours {tuple(neighbours.shape)} / valid {tuple(neighbour_valid.shape)} do not match features {tuple(features.shape)}")
        _, p, k = neighbours.shape
        tokens = gather_tokens(features, neighbours.reshape(batch, p * k)).view(batch * p, k, dim)
        # each patch's query is its own image's mean patch feature
        query = features.mean(1, keepdim=True).expand(batch, p, dim).reshape(batch * p, 1, dim)
        valid = neighbour_valid.reshape(batch * p, k)
        for block in self.blocks:
            query = block.feed_forward(query + block.attend(query, tokens, valid))
        return self.norm(query).view(batch, p, dim)

    def context(self, tokens: Tensor) -> Tensor:
        """Context-encoder tokens [B, K, D] → [B, K, D]."""
        for block in self.blocks:
            tokens = block.feed_forward(tokens + block.attend(tokens.mean(1, keepdim=True), tokens))
        return self.norm(tokens)


@register_method("dmt_jepa")
class DMTJEPA(IJEPA):
    """DMT-JEPA (Mo & Yun 2024, arXiv 2405.17995): I-JEPA whose targets are class-attention aggregates of each
    masked patch's semantically similar neighbours.

    Algorithm: as :class:`~zoo.methods.ijepa.IJEPA`, except (1) the context features pass through the online
    aggregation head (context mode) before the predictor, and (2) the targets are LN(f_θ̄(x)) → top-k neighbours
    of each target patch in its 3×3 window by cosine similarity (valid neighbours only) → EMA aggregation head (query
    = the image's mean patch feature). The EMA (linear τ schedule) moves both the target encoder and the target head.
    ``embed`` is I-JEPA's: mean-pooled target-encoder patch features (the heads are training-only).
    """

    def __init__(self, num_neighbours: int = 4, head_depth: int = 2, **kwargs: Any) -> None:
        """
        Args:
            num_neighbours: k of the top-k neighbour selection (paper: 4 of the 8 window neighbours).
            head_depth: class-attention blocks of the aggregation head (paper: 2); heads = the encoder's.
            **kwargs: every :class:`~zoo.methods.ijepa.IJEPA` arg (encoder, masking, predictor, optimisation, EMA).
        """
        super().__init__(**kwargs)
        if not 1 <= num_neighbours <= len(WINDOW_OFFSETS):
            raise ValueError(f"num_neighbours must be in 1..{len(WINDOW_OFFSETS)}, got {num_neighbours}")
        if head_depth < 1:
            raise ValueError(f"head_depth must be >= 1, got {head_depth}")
        self.head = LocalAggregationHead(self.encoder.num_features, self.encoder.num_heads, head_depth)
        self.target_head = self.make_target(self.head)

    def context_features(self, context: Tensor) -> Tensor:
        return self.head.context(context)

    def target_features(self, patch_features: Tensor) -> Tensor:
        """Every patch's target [B, N, D]: the EMA head's aggregate of its top-k neighbours in LN(f_θ̄(x)). Each
        patch's target depends only on its own image and its neighbours, so taking the target blocks of all of them
        equals aggregating at the target patches only (N aggregations instead of M·K_tgt, 0.6-0.8 N at I-JEPA's
        scales, with patches shared by several blocks counted once)."""
        normed = F.layer_norm(patch_features, patch_features.shape[-1:])
        neighbours, valid = select_neighbours(normed, self.encoder.grid_size, self.hparams.num_neighbours)
        return self.target_head.targets(normed, neighbours, valid)
