"""Masked-token toolbox of the JEPAs (I-JEPA, DMT-JEPA, T-JEPA) and the encoders they mask: the one masks type,
token gathering by index lists, and the fixed sin-cos position tables.

Masks are index lists, as in the I-JEPA release (facebookresearch/ijepa src/masks/utils.py ``apply_masks``): a
context mask ``[B, K_ctx]`` (the tokens the context encoder sees) and ``M`` target masks ``[M, B, K_tgt]`` (the
tokens to predict). :func:`apply_masks` gathers every target mask of a batch at once, mask-major along the batch
(``[M·B, K, D]``), which is the layout of the predictor's output, so a JEPA's targets are always
``apply_masks(target_features, masks.targets)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

#: channel layout of a 2-D sin-cos table: "xy" puts the column (x) coordinate in the first half of the channels and
#: the row (y) in the second (MAE / I-JEPA ``get_2d_sincos_pos_embed``); "yx" is its transpose
PosEmbedOrder = Literal["xy", "yx"]
POS_EMBED_ORDERS = ("xy", "yx")


class TokenMasks(NamedTuple):
    """One batch's masks, as token indices (raster order for image patches; [REG] + feature positions for tables)."""

    context: Tensor  # [B, K_ctx] long, sorted per row: the tokens the context encoder sees
    targets: Tensor  # [M, B, K_tgt] long: each target mask's tokens (all masks of a batch the same length)


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens[b, index[b, k]]``: tokens [B, N, ...] and token indices [B, K] → [B, K, ...]."""
    if index.ndim != 2 or tokens.ndim < 2 or index.shape[0] != tokens.shape[0]:
        raise ValueError(f"gather_tokens: index must be [B={tokens.shape[0]}, K], got {tuple(index.shape)}")
    trailing = tokens.shape[2:]
    return torch.gather(tokens, 1, index.view(*index.shape, *(1,) * len(trailing)).expand(-1, -1, *trailing))


def apply_masks(x: Tensor, masks: Tensor | Sequence[Tensor]) -> Tensor:
    """The I-JEPA release's ``apply_masks``: x [B, N, ...] at each mask's tokens, masks [M, B, K] (or M tensors
    [B, K]) → [M·B, K, ...], mask-major (rows m·B … m·B + B − 1 are mask m)."""
    return torch.cat([gather_tokens(x, m) for m in masks], dim=0)


def sincos_2d(grid: tuple[int, int], dim: int, order: PosEmbedOrder = "xy") -> Tensor:
    """Fixed 2-D sin-cos position table ``[grid_h · grid_w, dim]`` over a grid in raster order: each half of the
    channels encodes one coordinate p as [sin(p·ω), cos(p·ω)] with ω_i = 1 / 10000^(i / (dim/4)); ``order`` "xy"
    is the I-JEPA release's layout (column first), "yx" its transpose.

    Computed in float64 and rounded once to float32, as the release does (numpy, then ``.float()``), so a table
    matches it bit for bit. ``timm.layers.build_sincos2d_pos_embed`` is not used: it computes in float32 (1 ulp off
    in places) and none of its flags gives the column-first layout on a square grid (``reverse_coord`` changes the
    enumeration order of the positions, not which coordinate the first channels encode)."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need an embedding dim divisible by 4, got {dim}")
    if order not in POS_EMBED_ORDERS:
        raise ValueError(f"pos_embed_order must be one of {POS_EMBED_ORDERS}, got {order!r}")
    grid_h, grid_w = grid
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def encode(positions: Tensor) -> Tensor:
        angles = positions.to(torch.float64)[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows = torch.arange(grid_h).repeat_interleave(grid_w)
    cols = torch.arange(grid_w).repeat(grid_h)
    halves = [encode(cols), encode(rows)] if order == "xy" else [encode(rows), encode(cols)]
    return torch.cat(halves, dim=1).float()


def sincos_1d(num_positions: int, dim: int, base: float = 10000.0) -> Tensor:
    """Fixed 1-D sin-cos table ``[num_positions, dim]`` (Vaswani et al. 2017), sin and cos interleaved per frequency;
    T-JEPA's tabular sequences are short and its release uses ``base`` 100. (timm's sin-cos builders are 2-D only.)"""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table
