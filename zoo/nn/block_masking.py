"""Masks for masked-prediction methods, generated on the device from an explicit generator.

Image multi-block masking (I-JEPA, Assran et al. 2023, arXiv 2301.08243, §3 "Targets"/"Context" and Appendix C;
facebookresearch/ijepa src/masks/multiblock.py): per batch, one target block size (scale U(0.15, 0.2) of the
patches, aspect ratio U(0.75, 1.5)) and one context block size (scale U(0.85, 1.0), aspect 1); per image, 4 target
blocks and 1 context block at random positions, the context minus every target patch, at least ``min_keep``
context patches; all context masks of the batch truncated to the batch minimum so that they stack.

Differences from the release, on purpose:
- scale and aspect are drawn independently (the release draws both from one uniform, so they are correlated);
- truncation keeps a random subset of each image's context patches (the release keeps the first ones in raster
  order, which drops the bottom rows of the context more often than the top ones);
- an image whose context keeps fewer than ``min_keep`` patches gets its blocks redrawn, up to ``max_tries`` times,
  then the call fails with a clear error (the release silently lowers ``min_keep``).
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor

from zoo.nn.tokens import TokenMasks


class MultiBlockMaskConfig(TypedDict, total=False):
    """JSON-able multi-block masking spec (the ``masking:`` block of a JEPA config)."""

    num_targets: int
    target_scale: tuple[float, float]  # fraction of the patches per target block
    target_aspect: tuple[float, float]  # height / width of a target block
    context_scale: tuple[float, float]
    context_aspect: tuple[float, float]
    min_keep: int  # fewest context patches per image
    max_tries: int  # redraws of an image whose context is too small, before giving up


#: I-JEPA's ImageNet settings (arXiv 2301.08243, Appendix C; release configs/in1k_vith14_ep300.yaml)
DEFAULT_MULTI_BLOCK: MultiBlockMaskConfig = {
    "num_targets": 4,
    "target_scale": (0.15, 0.2),
    "target_aspect": (0.75, 1.5),
    "context_scale": (0.85, 1.0),
    "context_aspect": (1.0, 1.0),
    "min_keep": 10,
    "max_tries": 20,
}


def resolve_multi_block_config(config: MultiBlockMaskConfig | None) -> MultiBlockMaskConfig:
    """Defaults merged with ``config``, validated: one clear error naming the bad key."""
    unknown = set(config or {}) - set(DEFAULT_MULTI_BLOCK)
    if unknown:
        raise ValueError(f"unknown masking key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_MULTI_BLOCK)}")
    cfg: MultiBlockMaskConfig = {**DEFAULT_MULTI_BLOCK, **(config or {})}  # type: ignore[typeddict-item]
    for key in ("target_scale", "target_aspect", "context_scale", "context_aspect"):
        lo, hi = (float(v) for v in cfg[key])  # type: ignore[literal-required]
        positive_max = 1.0 if key.endswith("scale") else math.inf
        if not 0 < lo <= hi <= positive_max:
            raise ValueError(f"masking {key} must be a range 0 < lo <= hi{' <= 1' if key.endswith('scale') else ''}, got {(lo, hi)}")
        cfg[key] = (lo, hi)  # type: ignore[literal-required]
    if int(cfg["num_targets"]) < 1 or int(cfg["min_keep"]) < 1 or int(cfg["max_tries"]) < 1:
        raise ValueError(f"masking num_targets, min_keep, max_tries must be >= 1, got {cfg['num_targets']}, {cfg['min_keep']}, {cfg['max_tries']}")
    return cfg


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + (hi - lo) * torch.rand((), generator=generator, device=generator.device).item()


def block_size(grid: tuple[int, int], scale: float, aspect: float) -> tuple[int, int]:
    """Height and width (in patches) of a block covering ``scale`` of the grid with height/width ``aspect``,
    rounded, at least 1 and strictly smaller than the grid (as the release: a block never covers a whole side)."""
    grid_h, grid_w = grid
    area = scale * grid_h * grid_w
    h = max(1, round(math.sqrt(area * aspect)))
    w = max(1, round(math.sqrt(area / aspect)))
    return min(h, max(1, grid_h - 1)), min(w, max(1, grid_w - 1))


def _block_masks(batch: int, count: int, grid: tuple[int, int], size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """``count`` blocks of ``size`` per image at uniform random positions: boolean [batch, count, H, W]."""
    (grid_h, grid_w), (h, w), device = grid, size, generator.device
    top = torch.randint(0, grid_h - h + 1, (batch, count, 1, 1), generator=generator, device=device)
    left = torch.randint(0, grid_w - w + 1, (batch, count, 1, 1), generator=generator, device=device)
    rows = torch.arange(grid_h, device=device).view(1, 1, -1, 1)
    cols = torch.arange(grid_w, device=device).view(1, 1, 1, -1)
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def multi_block_masks(
    batch_size: int, grid: tuple[int, int], generator: torch.Generator, config: MultiBlockMaskConfig | None = None
) -> TokenMasks:
    """I-JEPA's multi-block masks for a batch of ``batch_size`` images on a ``grid`` of patches, on
    ``generator.device``, a deterministic function of the generator's state: patch indices in raster order, the
    context [B, K_ctx] sorted per row and disjoint from every target block of its image, the targets
    [num_targets, B, h·w] (one block size per batch)."""
    cfg = resolve_multi_block_config(config)
    if batch_size < 1 or min(grid) < 2:
        raise ValueError(f"multi_block_masks: need batch_size >= 1 and a grid of at least 2×2, got {batch_size}, {grid}")
    grid_h, grid_w = grid
    num_patches, num_targets = grid_h * grid_w, int(cfg["num_targets"])
    # one target size and one context size per batch, so every target block of the batch has the same length
    target_size = block_size(grid, _uniform(*cfg["target_scale"], generator), _uniform(*cfg["target_aspect"], generator))
    context_size = block_size(grid, _uniform(*cfg["context_scale"], generator), _uniform(*cfg["context_aspect"], generator))

    targets = _block_masks(batch_size, num_targets, grid, target_size, generator)
    context = _block_masks(batch_size, 1, grid, context_size, generator)[:, 0] & ~targets.any(1)
    short = context.flatten(1).sum(1) < cfg["min_keep"]
    tries = 1
    # redraw only the images whose context is too small; a fixed number of generator calls per try keeps the
    # result a function of the seed
    while short.any() and tries < cfg["max_tries"]:
        new_targets = _block_masks(batch_size, num_targets, grid, target_size, generator)
        new_context = _block_masks(batch_size, 1, grid, context_size, generator)[:, 0] & ~new_targets.any(1)
        targets = torch.where(short.view(-1, 1, 1, 1), new_targets, targets)
        context = torch.where(short.view(-1, 1, 1), new_context, context)
        short = context.flatten(1).sum(1) < cfg["min_keep"]
        tries += 1
    if short.any():
        raise ValueError(
            f"multi-block masking: {int(short.sum())} image(s) kept fewer than min_keep={cfg['min_keep']} context patches "
            f"after {cfg['max_tries']} draws on a {grid_h}×{grid_w} grid (target blocks {target_size[0]}×{target_size[1]}, "
            f"context {context_size[0]}×{context_size[1]}); lower min_keep or the target scale"
        )

    context = context.flatten(1)
    keep = int(context.sum(1).min())
    # random subset of each image's context patches, truncated to the batch minimum, back in raster order
    scores = torch.rand(batch_size, num_patches, generator=generator, device=generator.device)
    scores = scores.masked_fill(~context, 2.0)
    context_index = scores.argsort(1)[:, :keep].sort(1).values
    # each target block is a full h×w rectangle: exactly h·w True entries, listed in raster order
    target_flat = targets.flatten(2).transpose(0, 1)  # [num_targets, B, N]
    target_index = target_flat.nonzero()[:, 2].view(num_targets, batch_size, target_size[0] * target_size[1])
    return TokenMasks(context=context_index, targets=target_index)
