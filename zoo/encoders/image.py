"""Image encoders: timm backbones behind one small wrapper that owns input handling.

The wrapper takes images as the data pipeline and the views produce them — ``uint8`` in [0, 255] or float in
[0, 1], shape [B, C, H, W] — and normalises them with the dataset statistics it was configured with, so that a model
loaded with ``from_pretrained`` embeds raw images with no outside preprocessing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import timm
import torch
from torch import Tensor, nn

from zoo.errors import InputError
from zoo.network import hub_unreachable_reason


class ImageEncoderConfig(TypedDict, total=False):
    """JSON-able encoder spec (the ``encoder:`` block of a method config)."""

    name: str  # any timm model name, e.g. "resnet18", "resnet50", "vit_small_patch16_224"
    in_chans: int  # 1 for grey images (Fashion-MNIST), 3 for RGB
    small_image_stem: bool  # ResNet: 3×3 stride-1 first conv, no max-pool (CIFAR-size images; SimCLR B.9)
    stem_pool: bool  # ResNet: the stem's stride-2 max-pool; false doubles the resolution of every stage
    mean: Sequence[float]  # per-channel normalisation applied to [0, 1] inputs
    std: Sequence[float]
    model_kwargs: dict[str, Any]  # extra timm.create_model kwargs, e.g. {"layers": [1, 1, 1, 1]}
    pretrained: bool | str  # initial weights: false (random), true (timm's own, downloaded), or a local file path
    grad_checkpointing: bool  # recompute block activations in backward (timm's set_grad_checkpointing): less memory


DEFAULT_IMAGE_ENCODER: ImageEncoderConfig = {
    "name": "resnet18",
    "in_chans": 3,
    "small_image_stem": False,
    "stem_pool": True,
    "mean": (0.5,),
    "std": (0.5,),
    "model_kwargs": {},
    "pretrained": False,
    "grad_checkpointing": False,
}

#: seconds to wait for the Hub before ``pretrained: true`` gives up (huggingface_hub itself retries for ~50 s)
HUB_PROBE_TIMEOUT = 3.0
_SKIP_PRETRAINED = contextvars.ContextVar("zoo_skip_pretrained", default=False)


@contextmanager
def saved_weights_follow() -> Iterator[None]:
    """Image encoders built inside skip their ``pretrained`` initial weights: the caller (``from_pretrained``, a
    checkpoint rebuild) loads saved weights over them, so fetching the initial ones would be wasted, and would fail
    offline or where the file named in the config is not."""
    token = _SKIP_PRETRAINED.set(True)
    try:
        yield
    finally:
        _SKIP_PRETRAINED.reset(token)


def create_backbone(name: str, in_chans: int, model_kwargs: dict[str, Any], pretrained: bool | str) -> nn.Module:
    """``timm.create_model(name, num_classes=0)`` started from ``pretrained`` weights: a file (safetensors, or
    ``torch.load(weights_only=True)``: no pickled code runs) loaded strictly, or ``True``: timm's download, failing in
    one line when offline."""
    kwargs = {"num_classes": 0, "in_chans": in_chans, **model_kwargs}
    if pretrained is False or pretrained is None or _SKIP_PRETRAINED.get():
        return timm.create_model(name, pretrained=False, **kwargs)
    if pretrained is True:
        from huggingface_hub import constants

        offline = hub_unreachable_reason(HUB_PROBE_TIMEOUT) is not None  # HF_HUB_OFFLINE included
        saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, offline  # offline: the local cache only, no retries
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except (OSError, RuntimeError, ValueError) as e:  # not cached offline, a failed download, weights that do not fit
            where = "the Hub is unreachable and they are not in the local cache" if offline else str(e).strip().splitlines()[0]
            raise ValueError(
                f"encoder.pretrained: true: cannot get timm's pretrained {name} weights ({where}); "
                "to start offline, give a weights file: encoder.pretrained: /path/to/weights.safetensors"
            ) from None
        finally:
            constants.HF_HUB_OFFLINE = saved
    if not isinstance(pretrained, (str, Path)):
        raise ValueError(f"encoder.pretrained must be true, false or a file path, got {pretrained!r}")
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"encoder.pretrained: {path} is not a file (expected a safetensors or torch state dict of timm's {name})")
    model = timm.create_model(name, pretrained=False, **kwargs)
    try:
        model.load_state_dict(_timm_state_dict(model, path, in_chans), strict=True)  # timm's own loader would tolerate missing tensors
    except Exception as e:  # unreadable file, a pickle with code (refused by weights_only), missing or misshapen tensors
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"encoder.pretrained: {path} does not load into timm's {name}: {detail[:300]}") from None
    return model


def _timm_state_dict(model: nn.Module, path: Path, in_chans: int) -> dict[str, Tensor]:
    """A timm checkpoint file as ``model`` takes it: unwrapped by timm's loader (safetensors, or torch.load with
    weights_only), the first conv adapted to ``in_chans`` as timm adapts its pretrained weights, the classifier
    left out (the encoder has none)."""
    from timm.models import load_state_dict
    from timm.models._manipulate import adapt_input_conv

    state = load_state_dict(str(path), weights_only=True)
    cfg = model.pretrained_cfg
    first = f"{cfg.get('first_conv')}.weight"
    if first in state and state[first].ndim == 4 and state[first].shape[1] != in_chans:
        state[first] = adapt_input_conv(in_chans, state[first])
    heads = cfg.get("classifier") or ()
    for head in [heads] if isinstance(heads, str) else heads:
        state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    return state


def _apply_stem(backbone: nn.Module, name: str, small: bool, pool: bool) -> None:
    """The ResNet stem options: ``small`` (3×3 stride-1 conv, no max-pool) or no max-pool (``pool`` false)."""
    if not small and pool:
        return
    conv1 = getattr(backbone, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(backbone, "maxpool"):
        option = "small_image_stem" if small else "stem_pool: false"
        raise ValueError(f"{option} needs a timm ResNet with a single-conv stem (conv1 + maxpool); {name!r} has none")
    if small:
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


def _guard_cpu_bf16_strided_conv(name: str, conv: nn.Conv2d, args: tuple[Tensor, ...]) -> None:
    """Refuse the one input where the CPU's bf16 convolution is known to return wrong weight gradients.

    On torch 2.14 (oneDNN), a bf16 convolution with a kernel wider than 1 and a stride above 1 computes garbage —
    often NaN, otherwise values off by up to 1e37 — for its weight gradient when its input is 1 pixel wide (measured
    on this project's AVX512-BF16 CPUs, autocast and bf16-true alike; widths ≥ 2 are exact). Tiny crops reach it:
    a 4-px SwAV small crop through a small-stem ResNet is 1×1 at layer4. Training would go on silently on corrupt
    weights, so stop with the fix instead.
    """
    x = args[0]
    if x.device.type != "cpu" or not torch.is_grad_enabled() or x.shape[-1] != 1:
        return
    if not (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16) and conv.weight.dtype != torch.bfloat16:
        return
    if conv.weight.requires_grad:
        raise InputError(
            f"image encoder: {name} (stride {conv.stride[-1]}) gets a feature map 1 px wide ({x.shape[-2]}×1), where "
            "torch's bf16 convolution on the CPU returns wrong weight gradients. Use larger images or crops, or train "
            "in fp32: --trainer.precision 32-true (with configs/trainer/cpu_bf16.yaml: --trainer.plugins.init_args.precision "
            "32-true)"
        )


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
        self.backbone = create_backbone(name, in_chans, dict(cfg["model_kwargs"]), cfg["pretrained"])
        _apply_stem(self.backbone, name, bool(cfg["small_image_stem"]), bool(cfg["stem_pool"]))
        self.config = cfg  # what rebuilds the backbone (the timm export reads it)
        if cfg["grad_checkpointing"]:
            self.backbone.set_grad_checkpointing(True)
        self.in_chans = in_chans
        self.channels_last = False
        self.num_features: int = self.backbone.num_features
        for module_name, module in self.backbone.named_modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size[-1] > 1 and module.stride[-1] > 1:
                module.register_forward_pre_hook(partial(_guard_cpu_bf16_strided_conv, f"backbone.{module_name}"))
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
