"""T-JEPA's feature masks (Thimonier et al. 2025, §3; release jose-melo/t-jepa src/mask.py), with feature positions
offset past the [REG] tokens.

Per batch, a context size n_ctx and a target size n_tgt are drawn from share ranges of the D features; per sample the
features are shuffled, the first n_ctx form the context, and each of the ``num_targets`` target masks is a random
n_tgt-subset of the remaining D − n_ctx features. So every target mask is disjoint from the context; target masks
may overlap each other.

Indices address the encoder's R + D token sequence: the R [REG] tokens (positions 0…R−1) are always in the context,
and feature j is position R + j. (The release indexes features without the offset, so it sometimes masks a [REG]
token and never masks the last R features.)
"""

from __future__ import annotations

import torch

from zoo.nn.tokens import TokenMasks


def mask_sizes(num_features: int, context_share: tuple[float, float], target_share: tuple[float, float], generator: torch.Generator | None = None) -> tuple[int, int]:
    """(n_ctx, n_tgt) for one batch: shares drawn uniformly from the ranges, each at least 1 feature and together at
    most D (the context keeps priority)."""
    if num_features < 2:
        raise ValueError(f"T-JEPA masking needs at least 2 features (a context and a target), got {num_features}")
    for name, (lo, hi) in (("context_share", context_share), ("target_share", target_share)):
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
    u = torch.rand(2, generator=generator, device=generator.device if generator is not None else "cpu").tolist()
    ctx_share = context_share[0] + u[0] * (context_share[1] - context_share[0])
    tgt_share = target_share[0] + u[1] * (target_share[1] - target_share[0])
    n_ctx = min(num_features - 1, max(1, round(ctx_share * num_features)))
    n_tgt = min(num_features - n_ctx, max(1, round(tgt_share * num_features)))
    return n_ctx, n_tgt


def sample_tabular_masks(
    batch_size: int,
    num_features: int,
    num_reg_tokens: int,
    context_share: tuple[float, float] = (0.2, 0.4),
    target_share: tuple[float, float] = (0.2, 0.4),
    num_targets: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TokenMasks:
    """Context and target token indices for a batch (defaults: the spec's shares and 4 target masks): the context
    [B, R + n_ctx] is the R [REG] positions then the context feature positions (sorted); the targets [M, B, n_tgt]
    are feature positions (sorted per mask), all >= R."""
    if num_targets < 1:
        raise ValueError(f"num_targets must be >= 1, got {num_targets}")
    device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    n_ctx, n_tgt = mask_sizes(num_features, context_share, target_share, generator)
    # per-sample random permutation of the features: argsort of uniform noise
    perm = torch.rand(batch_size, num_features, generator=generator, device=device).argsort(dim=1) + num_reg_tokens
    context_features, rest = perm[:, :n_ctx], perm[:, n_ctx:]
    reg = torch.arange(num_reg_tokens, device=device).expand(batch_size, -1)
    context = torch.cat([reg, context_features.sort(dim=1).values], dim=1)
    # each target: the first n_tgt of a fresh random permutation of the non-context features
    picks = torch.rand(num_targets, batch_size, rest.shape[1], generator=generator, device=device).argsort(dim=2)[..., :n_tgt]
    targets = rest.unsqueeze(0).expand(num_targets, -1, -1).gather(2, picks).sort(dim=2).values
    return TokenMasks(context=context, targets=targets)
