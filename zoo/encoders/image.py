"""Image encoders: timm backbones behind one small wrapper that owns input handling.

The wrapper takes images as the data pipeline and the views produce them — ``uint8`` in [0, 255] or float in
[0, 1], shape [B, C, H, W] — and normalises them with the dataset statistics it was configured with, so that a model
loaded with ``from_pretrained`` embeds raw images with no outside preprocessing.
"""

from __future__ import annotations

from typing import Any, Sequence, TypedDict

import timm
import torch
from torch import Tensor, nn


class ImageEncoderConfig(TypedDict, total=False):
    """JSON-able encoder spec (the ``encoder:`` block of a method config)."""

    name: str  # any timm model name, e.g. "resnet18", "resnet50", "vit_small_patch16_224"
    in_chans: int  # 1 for grey images (Fashion-MNIST), 3 for RGB
    small_image_stem: bool  # ResNet: 3×3 stride-1 first conv, no max-pool (CIFAR-size images; SimCLR B.9)
    mean: Sequence[float]  # per-channel normalisation applied to [0, 1] inputs
    std: Sequence[float]
    model_kwargs: dict[str, Any]  # extra timm.create_model kwargs, e.g. {"layers": [1, 1, 1, 1]}
    grad_checkpointing: bool  # recompute block activations in backward (timm's set_grad_checkpointing): less memory


DEFAULT_IMAGE_ENCODER: ImageEncoderConfig = {
    "name": "resnet18",
    "in_chans": 3,
    "small_image_stem": False,
    "mean": (0.5,),
    "std": (0.5,),
    "model_kwargs": {},
    "grad_checkpointing": False,
}


def _apply_small_image_stem(backbone: nn.Module, name: str) -> None:
    conv1 = getattr(backbone, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(backbone, "maxpool"):
        raise ValueError(
            f"small_image_stem needs a timm ResNet with a single-conv stem (conv1 + maxpool); {name!r} has none"
        )
    backbone.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    backbone.maxpool = nn.Identity()


def normalize_images(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] images ``[B, C, H, W]`` → ``(x − mean) / std`` with [1, C, 1, 1] statistics;
    shared by every image encoder so that all of them accept the same raw inputs."""
    in_chans = mean.shape[1]
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise ValueError(f"image encoder expects [B, {in_chans}, H, W] images, got shape {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return (x - mean.to(x.dtype)) / std.to(x.dtype)


class ImageEncoder(nn.Module):
    """timm backbone (classifier removed, globally pooled) with input normalisation built in."""

    def __init__(self, config: ImageEncoderConfig | None = None) -> None:
        super().__init__()
        unknown = set(config or {}) - set(DEFAULT_IMAGE_ENCODER)
        if unknown:
            raise ValueError(f"unknown image encoder key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_IMAGE_ENCODER)}")
        cfg = {**DEFAULT_IMAGE_ENCODER, **(config or {})}
        name, in_chans = cfg["name"], int(cfg["in_chans"])
        mean, std = list(cfg["mean"]), list(cfg["std"])
        if len(mean) == 1:
            mean, std = mean * in_chans, std * in_chans
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"image encoder: mean/std have {len(mean)}/{len(std)} entries but in_chans={in_chans}")
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r} for the image encoder (see timm.list_models())")
        self.backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **cfg["model_kwargs"])
        if cfg["small_image_stem"]:
            _apply_small_image_stem(self.backbone, name)
        if cfg["grad_checkpointing"]:
            self.backbone.set_grad_checkpointing(True)
        self.in_chans = in_chans
        self.channels_last = False
        self.num_features: int = self.backbone.num_features
        # derived from the config, so kept out of the state dict
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def use_channels_last(self) -> None:
        """Convolution weights and inputs in channels-last memory format (the method's ``channels_last`` option)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] images → normalised float."""
        return normalize_images(images, self.mean, self.std)

    def forward(self, images: Tensor) -> Tensor:
        x = self.normalize(images)
        # views and uint8 inputs arrive as fp32; under bf16-true / 16-true the weights are half precision
        # (under autocast they stay fp32 and autocast does the casting)
        weight_dtype = next(self.backbone.parameters()).dtype
        x = x.to(weight_dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)
