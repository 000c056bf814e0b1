"""Vision Transformer encoder for the JEPAs: timm's ``VisionTransformer`` blocks, no CLS token, fixed 2-D sin-cos
positions, patch tokens out.

I-JEPA (Assran et al. 2023, arXiv 2301.08243, §3 and Appendix A; facebookresearch/ijepa
src/models/vision_transformer.py): the context encoder sees only the context patches, so positions must be added
before tokens are dropped and no CLS token may take part; positions are the fixed 2-D sin-cos embedding of MAE
(half the channels encode the row, half the column); a final LayerNorm closes the encoder. The patch size is free,
so 28×28 images with patch 4 give a 7×7 grid and 224×224 with patch 16 a 14×14 grid (ViT-S/16 etc.).

Input handling is the one of :class:`zoo.encoders.image.ImageEncoder`: ``uint8`` [0, 255] or float [0, 1] images,
normalised inside with the configured mean/std, so a Hub checkpoint embeds raw images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import torch
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from zoo.encoders.image import normalize_images
from zoo.nn.tokens import PosEmbedOrder, gather_tokens, sincos_2d
from zoo.validation import check_image_size


class ViTEncoderConfig(TypedDict, total=False):
    """JSON-able ViT spec (the ``encoder:`` block of a JEPA config)."""

    img_size: int  # square input side (28 for Fashion-MNIST, 224 for ImageNet-size images)
    patch_size: int  # must divide img_size; grid = img_size / patch_size per side
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int  # must divide embed_dim
    mlp_ratio: float
    mean: Sequence[float]
    std: Sequence[float]
    model_kwargs: dict[str, Any]  # extra timm VisionTransformer kwargs, e.g. {"drop_path_rate": 0.1}
    grad_checkpointing: bool  # recompute each block's activations in backward: memory O(1) in depth, ~1/3 more compute


#: ViT-S/16 at 224×224 (the I-JEPA ablation size), ImageNet-style normalisation of grey or RGB images
DEFAULT_VIT_ENCODER: ViTEncoderConfig = {
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "embed_dim": 384,
    "depth": 12,
    "num_heads": 6,
    "mlp_ratio": 4.0,
    "mean": (0.5,),
    "std": (0.5,),
    "model_kwargs": {},
    "grad_checkpointing": False,
}

# the ones ViTEncoder itself sets: a class token or learned positions would defeat the point of this wrapper
_RESERVED_TIMM_KWARGS = {"class_token", "pos_embed", "global_pool", "num_classes", "reg_tokens", "no_embed_class", "dynamic_img_size"}


class ViTEncoder(nn.Module):
    """ViT over patch tokens (no CLS token), fixed 2-D sin-cos positions (:func:`zoo.nn.tokens.sincos_2d` in
    ``pos_embed_order``, "xy" being the I-JEPA release's layout), final LayerNorm.

    ``forward(images)`` → ``[B, N, D]`` patch features in raster order; ``forward(images, keep)`` with ``keep`` a
    [B, K] index tensor runs the transformer on those K patches only (the I-JEPA context encoder). ``num_features``
    is D; ``grid_size`` is (rows, cols).
    """

    def __init__(self, config: ViTEncoderConfig | None = None, pos_embed_order: PosEmbedOrder = "xy") -> None:
        super().__init__()
        unknown = set(config or {}) - set(DEFAULT_VIT_ENCODER)
        if unknown:
            raise ValueError(f"unknown ViT encoder key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_VIT_ENCODER)}")
        cfg = {**DEFAULT_VIT_ENCODER, **(config or {})}
        img_size, patch_size, in_chans = int(cfg["img_size"]), int(cfg["patch_size"]), int(cfg["in_chans"])
        embed_dim, num_heads = int(cfg["embed_dim"]), int(cfg["num_heads"])
        if patch_size < 1 or img_size % patch_size:
            raise ValueError(f"ViT encoder: patch_size={patch_size} must divide img_size={img_size}")
        if embed_dim % num_heads:
            raise ValueError(f"ViT encoder: num_heads={num_heads} must divide embed_dim={embed_dim}")
        reserved = _RESERVED_TIMM_KWARGS & set(cfg["model_kwargs"])
        if reserved:
            raise ValueError(f"ViT encoder: model_kwargs may not set {sorted(reserved)} (fixed by the JEPA encoder)")
        mean, std = list(cfg["mean"]), list(cfg["std"])
        if len(mean) == 1:
            mean, std = mean * in_chans, std * in_chans
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"ViT encoder: mean/std have {len(mean)}/{len(std)} entries but in_chans={in_chans}")
        # timm builds the patch embedding, blocks and final norm; the CLS token and learned positions are off, and
        # forward is ours, because the context encoder must drop tokens between the position embedding and block 1
        self.backbone = VisionTransformer(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="",
            embed_dim=embed_dim, depth=int(cfg["depth"]), num_heads=num_heads, mlp_ratio=float(cfg["mlp_ratio"]),
            class_token=False, pos_embed="none", **cfg["model_kwargs"],
        )
        # timm's flag; its own forward_features honours it, ours (below) reads it too
        self.backbone.set_grad_checkpointing(bool(cfg["grad_checkpointing"]))
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_features: int = embed_dim
        self.num_heads = num_heads
        # derived from the config, so kept out of the state dict
        self.pos_embed_order = pos_embed_order
        self.register_buffer("pos_embed", sincos_2d(self.grid_size, embed_dim, pos_embed_order)[None], persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def set_pos_embed_order(self, order: PosEmbedOrder) -> None:
        """Rebuild the fixed position table in ``order`` (weights trained with one layout need that layout)."""
        self.pos_embed = sincos_2d(self.grid_size, self.num_features, order)[None].to(self.pos_embed)
        self.pos_embed_order = order

    def patch_tokens(self, images: Tensor) -> Tensor:
        """Normalised images → patch embeddings + positions, ``[B, N, D]`` (before any transformer block)."""
        # before any layer: a wrong size would otherwise fail deep inside timm's patch embedding
        check_image_size(images, (self.img_size, self.img_size), "ViT encoder")
        x = normalize_images(images, self.mean, self.std)
        # views and uint8 inputs arrive as fp32; under bf16-true the weights are half precision
        weight_dtype = self.backbone.patch_embed.proj.weight.dtype
        tokens = self.backbone.patch_embed(x.to(weight_dtype))
        return tokens + self.pos_embed.to(tokens.dtype)

    def forward(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        x = self.patch_tokens(images)
        if keep is not None:
            x = gather_tokens(x, keep)
        if self.backbone.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint_seq(self.backbone.blocks, x)
        else:
            x = self.backbone.blocks(x)
        return self.backbone.norm(x)
