"""Batched, per-sample random image views computed on the device after the batch transfer.

The DataLoader only decodes images; a method calls :class:`ImageViews` from Lightning's
``on_after_batch_transfer`` so that cropping, flipping and colour distortion run as a handful of batched tensor
ops on the accelerator. Each sample of the batch gets its own random parameters, and every random number comes
from an explicit :class:`torch.Generator` (see :func:`view_generator`), never the global RNG, so a view is a
deterministic function of (images, seed keys).

Pipeline and defaults follow SimCLR (Chen et al. 2020, arXiv 2002.05709, Appendix A): random resized crop
(area 0.08-1, aspect 3/4-4/3) + horizontal flip, colour jitter ``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)`` with
strength s = 0.5 (0.4/0.4/0.4/0.1, the paper's CIFAR-10 setting, Appendix B.9; ImageNet uses s = 1) applied with
p = 0.8, grayscale with p = 0.2; then Gaussian blur and solarisation, the two extra ops of BYOL (Grill et al.
2020, arXiv 2006.07733, Appendix B), off by default.

Input: ``uint8`` [B, C, H, W] in 0..255 or floating [B, C, H, W] in [0, 1], C in {1, 3}.
Output: float32 [B, C, S, S] in [0, 1], *not* mean/std normalised (the encoder does that).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_VIEW_CONFIG", "ImageViewConfig", "ImageViews", "view_generator"]


class ImageViewConfig(TypedDict, total=False):
    """Plain, JSON-able view configuration; every key is optional and missing keys take :data:`DEFAULT_VIEW_CONFIG`."""

    output_size: int | None  # square output side; None -> the input height
    crop_scale: tuple[float, float]  # RandomResizedCrop area fraction range
    crop_ratio: tuple[float, float]  # aspect ratio (w/h) range, sampled log-uniform
    flip_prob: float  # horizontal flip probability
    jitter_prob: float  # probability that a sample gets colour jitter
    brightness: float  # factor ~ U[max(0, 1-b), 1+b]; x * f
    contrast: float  # factor ~ U[max(0, 1-c), 1+c]; (x - mean(gray(x))) * f + mean(gray(x))
    saturation: float  # factor ~ U[max(0, 1-s), 1+s]; blend with gray(x); C == 3 only
    hue: float  # rotation of the YIQ chroma plane by U[-h, h] * 360 degrees, h <= 0.5; C == 3 only
    grayscale_prob: float  # ITU-R 601 luma, kept as 3 channels; C == 3 only
    blur_prob: float  # Gaussian blur probability (BYOL: 1.0 / 0.1 for its two views)
    blur_sigma: tuple[float, float]  # sigma ~ U[blur_sigma]
    solarize_prob: float  # x -> where(x >= 0.5, 1 - x, x) (BYOL: 0.0 / 0.2)


DEFAULT_VIEW_CONFIG: ImageViewConfig = {
    "output_size": None,
    "crop_scale": (0.08, 1.0),
    "crop_ratio": (3 / 4, 4 / 3),
    "flip_prob": 0.5,
    "jitter_prob": 0.8,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.4,
    "hue": 0.1,
    "grayscale_prob": 0.2,
    "blur_prob": 0.0,
    "blur_sigma": (0.1, 2.0),
    "solarize_prob": 0.0,
}
"""SimCLR defaults (arXiv 2002.05709, Appendix A) with blur and solarisation off; ``output_size`` None = input H."""

_PROB_KEYS = ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")
_STRENGTH_KEYS = ("brightness", "contrast", "saturation", "hue")
_CROP_ATTEMPTS = 10  # candidates per sample, as torchvision's RandomResizedCrop

# ITU-R BT.601 luma weights (also torchvision's rgb_to_grayscale); they sum to 1.
_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ (FCC NTSC). The I and Q rows sum to 0, so grays have no chroma and a chroma rotation keeps them.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.5959, -0.2746, -0.3213),
    (0.2115, -0.5227, 0.3112),
)


# --------------------------------------------------------------------------------------------------------------------
# seeding


def view_generator(device: torch.device | str, *keys: int) -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded deterministically from integer ``keys``.

    Typical keys: ``(base_seed, rank, batches_seen, view_idx)``, as ``SSLMethod.view_generator`` passes them. The
    keys are encoded injectively (their count, then each as two 32-bit words) before numpy's :class:`~numpy.random.SeedSequence` hashes them to a 64-bit seed,
    so distinct key tuples - including ``(1,)`` vs ``(1, 0)`` and ``(2**32,)`` vs ``(0, 1)``, which SeedSequence
    alone maps to the same state - give distinct seeds (up to 64-bit hash collisions).

    Keys must be integers in ``[0, 2**64)``.
    """
    words = [len(keys)]
    for key in keys:
        try:
            value = int(key.__index__())  # ints, numpy ints; rejects floats
        except (AttributeError, TypeError):
            raise ValueError(f"view_generator keys must be integers, got {key!r}") from None
        if isinstance(key, bool) or not 0 <= value < 2**64:
            raise ValueError(f"view_generator keys must be integers in [0, 2**64), got {key!r}")
        words += [value & 0xFFFF_FFFF, value >> 32]
    seed = int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


# --------------------------------------------------------------------------------------------------------------------
# config validation


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _pair(key: str, value: Any) -> tuple[float, float]:
    is_pair = not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) == 2
    if not is_pair or not all(map(_is_real, value)):
        raise ValueError(f"ImageViews config {key!r} must be a pair of finite numbers, got {value!r}")
    return float(value[0]), float(value[1])


def _resolve_config(config: ImageViewConfig | None) -> dict[str, Any]:
    """Merge ``config`` with the defaults and validate it; every error is a ValueError naming the key and value."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_VIEW_CONFIG))
    if unknown:
        raise ValueError(f"unknown ImageViews config key(s) {unknown}; valid keys: {sorted(DEFAULT_VIEW_CONFIG)}")
    cfg: dict[str, Any] = {**DEFAULT_VIEW_CONFIG, **config}

    size = cfg["output_size"]
    if size is not None:
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
            raise ValueError(f"ImageViews config 'output_size' must be an integer >= 1 or None, got {size!r}")
        cfg["output_size"] = int(size)

    for key in _PROB_KEYS:
        value = cfg[key]
        if not _is_real(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"ImageViews config {key!r} must be a probability in [0, 1], got {value!r}")
        cfg[key] = float(value)

    for key in _STRENGTH_KEYS:
        value = cfg[key]
        if not _is_real(value) or value < 0:
            raise ValueError(f"ImageViews config {key!r} must be a non-negative number, got {value!r}")
        cfg[key] = float(value)
    if cfg["hue"] > 0.5:
        raise ValueError(f"ImageViews config 'hue' must be in [0, 0.5], got {cfg['hue']!r}")

    lo, hi = cfg["crop_scale"] = _pair("crop_scale", cfg["crop_scale"])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"ImageViews config 'crop_scale' must satisfy 0 < lo <= hi <= 1, got {(lo, hi)!r}")
    lo, hi = cfg["crop_ratio"] = _pair("crop_ratio", cfg["crop_ratio"])
    if not 0.0 < lo <= hi:
        raise ValueError(f"ImageViews config 'crop_ratio' must satisfy 0 < lo <= hi, got {(lo, hi)!r}")
    lo, hi = cfg["blur_sigma"] = _pair("blur_sigma", cfg["blur_sigma"])
    if not 0.0 < lo <= hi:
        raise ValueError(f"ImageViews config 'blur_sigma' must satisfy 0 < lo <= hi, got {(lo, hi)!r}")
    return cfg


# --------------------------------------------------------------------------------------------------------------------
# random parameters


def _uniform(shape: tuple[int, ...], lo: float, hi: float, generator: torch.Generator, device: torch.device) -> Tensor:
    """U[lo, hi) float32 samples from ``generator``; exactly ``lo`` when ``lo == hi``."""
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def _sample_crop_boxes(
    batch: int,
    height: int | Tensor,
    width: int | Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """Per-sample RandomResizedCrop boxes ``[B, 4]`` = (x0, y0, w, h) in input pixels (continuous, not rounded).

    ``height`` and ``width`` are the image size, or each sample's valid size (``[B]`` tensors) when the images of a
    padded batch differ: every box lies inside its own image. Vectorised torchvision sampling: ``_CROP_ATTEMPTS``
    candidates per sample with area fraction ~ U(scale) and log aspect ratio ~ U(log ratio); the first candidate that
    fits the image wins. Samples with no fitting candidate fall back to torchvision's central crop: the ratio clamped
    to the range, the largest such box. The offset is uniform over the positions that keep the box inside the image.
    """
    height = torch.as_tensor(height, device=device, dtype=torch.float32).expand(batch)
    width = torch.as_tensor(width, device=device, dtype=torch.float32).expand(batch)
    area = (height * width)[:, None]
    shape = (batch, _CROP_ATTEMPTS)
    target_area = area * _uniform(shape, scale[0], scale[1], generator, device)
    aspect = torch.exp(_uniform(shape, math.log(ratio[0]), math.log(ratio[1]), generator, device))
    cand_w = torch.sqrt(target_area * aspect)
    cand_h = torch.sqrt(target_area / aspect)
    eps = 1e-4  # float slack so that e.g. scale = ratio = 1 on a square image fits exactly
    fits = (cand_w <= width[:, None] + eps) & (cand_h <= height[:, None] + eps)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting candidate (0 if none fits)
    w = torch.minimum(cand_w.gather(1, first).squeeze(1), width)
    h = torch.minimum(cand_h.gather(1, first).squeeze(1), height)

    in_ratio = width / height
    fallback_w = torch.where(in_ratio > ratio[1], height * ratio[1], width)
    fallback_h = torch.where(in_ratio < ratio[0], width / ratio[0], height)
    any_fits = fits.any(dim=1)
    w = torch.where(any_fits, w, fallback_w)
    h = torch.where(any_fits, h, fallback_h)

    offsets = torch.rand((batch, 2), generator=generator, device=device, dtype=torch.float32)
    x0 = offsets[:, 0] * (width - w)
    y0 = offsets[:, 1] * (height - h)
    # the fallback is centred (torchvision); random candidates get a uniform offset
    x0 = torch.where(any_fits, x0, (width - w) / 2)
    y0 = torch.where(any_fits, y0, (height - h) / 2)
    return torch.stack([x0, y0, w, h], dim=1)


@dataclass
class _ViewParams:
    """All per-sample random parameters of one call (each leading dim is the batch)."""

    boxes: Tensor  # [B, 4] (x0, y0, w, h) crop boxes in input pixels
    flip: Tensor  # [B] bool
    jitter: Tensor  # [B] bool, colour jitter applied
    jitter_factors: Tensor  # [B, 4]: brightness, contrast, saturation factors; hue rotation in turns
    jitter_order: Tensor  # [B, 4] long, a permutation of the 4 jitter ops (0 b, 1 c, 2 s, 3 h)
    grayscale: Tensor  # [B] bool
    blur: Tensor  # [B] bool
    blur_sigma: Tensor  # [B]
    solarize: Tensor  # [B] bool


# --------------------------------------------------------------------------------------------------------------------
# ops


def _resample_weights(start: Tensor, length: Tensor, valid: Tensor, size: int, input_size: int) -> Tensor:
    """Per-sample resampling matrices ``[B, size, input_size]`` along one axis: output pixel i of sample b is the
    weighted mean of input pixels j with weight ``weights[b, i, j]``.

    The box ``[start, start + length)`` (input pixels, continuous) maps onto ``size`` output pixels; output pixel i
    reads around its centre ``c = start + (i + 0.5) * length / size`` with a triangle filter whose radius is the
    scale ``length / size`` when downscaling (antialiasing: each output pixel averages the input pixels it covers)
    and 1 when upscaling (bilinear interpolation). Taps outside ``[0, valid)`` (the padding of smaller images in a
    batch) get no weight, and each row is normalised. This is the filter of PIL's and torch's antialiased bilinear
    resize (``F.interpolate(..., antialias=True)``), for a box with non-integer corners.
    """
    scale = (length / size)[:, None, None]  # [B, 1, 1] input pixels per output pixel
    radius = scale.clamp(min=1.0)
    outputs = torch.arange(size, device=start.device, dtype=torch.float32)[None, :, None]
    centres = start[:, None, None] + (outputs + 0.5) * scale  # [B, size, 1]
    taps = torch.arange(input_size, device=start.device, dtype=torch.float32)[None, None, :] + 0.5
    weights = (1.0 - (taps - centres).abs() / radius).clamp(min=0.0)
    weights = weights * (taps < valid[:, None, None])
    return weights / weights.sum(dim=2, keepdim=True).clamp(min=1e-12)


def _resized_crop_flip(images: Tensor, boxes: Tensor, flip: Tensor, size: int, valid: Tensor | None = None) -> Tensor:
    """Crop each sample's box, resize it to ``size x size`` (antialiased when downscaling) and mirror the flipped
    ones: two batched matmuls with per-sample separable resampling matrices (:func:`_resample_weights`).

    ``valid`` [B, 2] (h, w) marks each image's valid area in a zero-padded batch; the padding never reaches a view.
    The antialiasing matters for real photos (e.g. a 500 px crop to 224, or 224 to SwAV's 96): plain bilinear
    sampling reads 2 pixels per output pixel and aliases fine texture into false low frequencies.
    """
    batch, _, height, width = images.shape
    if valid is None:
        valid_h = torch.full((batch,), float(height), device=images.device)
        valid_w = torch.full((batch,), float(width), device=images.device)
    else:
        valid_h, valid_w = valid.to(device=images.device, dtype=torch.float32).unbind(1)
    x0, y0, w, h = boxes.unbind(1)
    rows = _resample_weights(y0, h, valid_h, size, height)  # [B, S, H]
    cols = _resample_weights(x0, w, valid_w, size, width)  # [B, S, W]
    cols = torch.where(flip[:, None, None], cols.flip(1), cols)
    # contract the longer input axis first: the second product is then over the shorter one
    if width >= height:
        return rows[:, None] @ (images @ cols[:, None].transpose(-1, -2))
    return (rows[:, None] @ images) @ cols[:, None].transpose(-1, -2)


@functools.cache
def _color_constants(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(luma [3], RGB->YIQ [3, 3], YIQ->RGB [3, 3]) in float32 on ``device``, made once per device: copying them
    from the host on every call would synchronise a CUDA stream. Never modified in place."""
    rgb_to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    yiq_to_rgb = torch.linalg.inv(rgb_to_yiq)
    constants = (torch.tensor(_LUMA, dtype=torch.float64), rgb_to_yiq, yiq_to_rgb)
    return tuple(c.to(device=device, dtype=torch.float32) for c in constants)  # type: ignore[return-value]


def _luma(channels: int, device: torch.device) -> Tensor:
    """Grayscale weights [C]: ITU-R 601 for RGB, 1 for a single channel."""
    if channels == 1:
        return torch.ones(1, device=device, dtype=torch.float32)
    return _color_constants(device)[0]


def _grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma, broadcast back to all channels (SimCLR keeps 3 channels)."""
    gray = torch.einsum("bchw,c->bhw", x, _luma(x.shape[1], x.device)).unsqueeze(1)
    return gray.expand_as(x)


def _brightness_matrix(factor: Tensor, channels: int) -> Tensor:
    """[B, C, C] for ``x * f`` (torchvision's adjust_brightness: blend with black)."""
    eye = torch.eye(channels, device=factor.device, dtype=torch.float32)
    return factor[:, None, None] * eye


def _contrast_matrix(factor: Tensor, channels: int) -> Tensor:
    """Linear part [B, C, C] of ``(x - m) * f + m``; the offset ``(1 - f) * m`` needs the image mean ``m``."""
    return _brightness_matrix(factor, channels)


def _saturation_matrix(factor: Tensor, channels: int) -> Tensor:
    """[B, C, C] for ``x * f + gray(x) * (1 - f)`` (torchvision's adjust_saturation); identity for C == 1."""
    eye = torch.eye(channels, device=factor.device, dtype=torch.float32)
    if channels == 1:
        return eye.expand(factor.shape[0], 1, 1)
    to_gray = _luma(channels, factor.device).expand(channels, channels)  # every row: the luma weights
    f = factor[:, None, None]
    return f * eye + (1 - f) * to_gray


def _hue_matrix(turns: Tensor, channels: int) -> Tensor:
    """[B, C, C]: rotate the chroma (I, Q) plane of YIQ by ``turns * 360`` degrees; identity for C == 1.

    A linear stand-in for torchvision's HSV hue shift (same role, cheaper, not numerically identical). Written as
    ``I + T^-1 (R - I) T`` so that a zero angle gives the identity exactly.
    """
    batch = turns.shape[0]
    eye = torch.eye(channels, device=turns.device, dtype=torch.float32)
    if channels == 1:
        return eye.expand(batch, 1, 1)
    _, rgb_to_yiq, yiq_to_rgb = _color_constants(turns.device)
    angle = 2 * math.pi * turns
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation_minus_eye = torch.zeros(batch, 3, 3, device=turns.device, dtype=torch.float32)
    rotation_minus_eye[:, 1, 1] = cos - 1
    rotation_minus_eye[:, 1, 2] = -sin
    rotation_minus_eye[:, 2, 1] = sin
    rotation_minus_eye[:, 2, 2] = cos - 1
    return eye + yiq_to_rgb @ rotation_minus_eye @ rgb_to_yiq


def _color_jitter(x: Tensor, factors: Tensor, order: Tensor, apply: Tensor) -> Tensor:
    """ColorJitter with a random op order *per sample*, on the samples where ``apply`` is set.

    ``factors`` [B, 4] holds the brightness, contrast and saturation factors and the hue rotation (in turns);
    ``order`` [B, 4] is each sample's permutation of the ops (0 brightness, 1 contrast, 2 saturation, 3 hue).
    Every op is a per-sample affine colour map ``x -> M x + b`` (only contrast has an offset, from the current
    image's mean luma), so each of the 4 positions is a single batched matmul: sample i gets the matrix of the op
    its permutation puts there (the identity if not jittered). Clamped to [0, 1] after each op, as torchvision.
    Neutral factors (1, 1, 1, 0) are exact identities, so a strength of 0 disables its op.
    """
    batch, channels = x.shape[:2]
    brightness, contrast, saturation, hue = factors.unbind(1)
    eye = torch.eye(channels, device=x.device, dtype=torch.float32).expand(batch, channels, channels)
    matrices = torch.stack(  # [B, 5, C, C]; slot 4 = identity for samples that are not jittered
        [
            _brightness_matrix(brightness, channels),
            _contrast_matrix(contrast, channels),
            _saturation_matrix(saturation, channels),
            _hue_matrix(hue, channels),
            eye,
        ],
        dim=1,
    )
    luma = _luma(channels, x.device)
    rows = torch.arange(batch, device=x.device)
    for position in range(4):
        op = torch.where(apply, order[:, position], 4)
        mean_luma = x.mean(dim=(2, 3)) @ luma  # [B]; luma is linear, so mean(gray(x)) = luma . mean(x)
        offset = torch.where(op == 1, (1 - contrast) * mean_luma, 0.0)
        x = torch.einsum("bij,bjhw->bihw", matrices[rows, op], x) + offset[:, None, None, None]
        x = x.clamp(0.0, 1.0)
    return x


def _blur_kernel_size(size: int) -> int:
    """Odd kernel side of about 10% of the image side, at least 3 (SimCLR; BYOL uses 23 for 224)."""
    return max(3, int(round(0.1 * size)) | 1)


def _gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` [B]: grouped convs (groups = B*C), reflect padding."""
    batch, channels, height, width = x.shape
    radius = kernel_size // 2
    taps = torch.arange(kernel_size, device=x.device, dtype=torch.float32) - radius
    kernel = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None] ** 2))  # [B, k]
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(channels, dim=0)  # [B*C, k], row b*C + c for sample b, channel c
    groups = batch * channels
    mode = "reflect" if radius < min(height, width) else "replicate"
    flat = F.pad(x.reshape(1, groups, height, width), (radius, radius, radius, radius), mode=mode)
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=groups)  # along W
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=groups)  # along H
    return flat.reshape(batch, channels, height, width)


def _solarize(x: Tensor) -> Tensor:
    """BYOL solarisation on [0, 1]: invert the pixels at or above 0.5."""
    return torch.where(x >= 0.5, 1.0 - x, x)


def _to_float(images: Tensor) -> Tensor:
    """uint8 0..255 -> float32 /255; floating inputs are taken to be in [0, 1] and cast to float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


# --------------------------------------------------------------------------------------------------------------------
# module


class ImageViews(nn.Module):
    """SimCLR-style view generator (Chen et al. 2020, arXiv 2002.05709, Appendix A).

    Per sample: random resized crop + horizontal flip (antialiased separable resampling), colour jitter in a per-sample random
    op order with probability ``jitter_prob``, grayscale, Gaussian blur and solarisation (BYOL, arXiv 2006.07733).
    No Python loops over the batch; all randomness comes from the ``generator`` passed to :meth:`forward`, which
    must live on the images' device (use :func:`view_generator`). Everything is computed in float32, autocast or
    not. The module has no parameters or buffers.

    Call it once per view with a different generator, e.g.
    ``views(x, view_generator(x.device, seed, rank, epoch, batch_idx, view_idx))``.
    """

    def __init__(self, config: ImageViewConfig | None = None) -> None:
        super().__init__()
        self.config: dict[str, Any] = _resolve_config(config)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items())

    def _sample_params(
        self, batch: int, channels: int, height: int | Tensor, width: int | Tensor, generator: torch.Generator
    ) -> _ViewParams:
        """Draw every per-sample parameter, always all of them and in a fixed order (so that e.g. turning blur on
        does not change the crops of the same seed)."""
        cfg = self.config
        device = generator.device

        def uniform(*shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
            return _uniform(shape, lo, hi, generator, device)

        boxes = _sample_crop_boxes(batch, height, width, cfg["crop_scale"], cfg["crop_ratio"], generator, device)
        flip = uniform(batch) < cfg["flip_prob"]
        jitter = uniform(batch) < cfg["jitter_prob"]
        factors = torch.stack(
            [
                uniform(batch, lo=max(0.0, 1 - cfg["brightness"]), hi=1 + cfg["brightness"]),
                uniform(batch, lo=max(0.0, 1 - cfg["contrast"]), hi=1 + cfg["contrast"]),
                uniform(batch, lo=max(0.0, 1 - cfg["saturation"]), hi=1 + cfg["saturation"]),
                uniform(batch, lo=-cfg["hue"], hi=cfg["hue"]),
            ],
            dim=1,
        )
        order = uniform(batch, 4).argsort(dim=1)
        grayscale = uniform(batch) < cfg["grayscale_prob"]
        blur = uniform(batch) < cfg["blur_prob"]
        sigma = uniform(batch, lo=cfg["blur_sigma"][0], hi=cfg["blur_sigma"][1])
        solarize = uniform(batch) < cfg["solarize_prob"]
        return _ViewParams(boxes, flip, jitter, factors, order, grayscale, blur, sigma, solarize)

    def forward(self, images: Tensor, generator: torch.Generator, sizes: Tensor | None = None) -> Tensor:
        """One random view of each image: ``[B, C, H, W]`` uint8 or [0, 1] float -> float32 ``[B, C, S, S]``.

        ``sizes`` (int ``[B, 2]``, the ``"image_size"`` of :func:`zoo.data.image_files.collate_images`) gives each
        image's valid ``(h, w)`` in a zero-padded batch: its crop is drawn inside that area, with RandomResizedCrop's
        area and aspect law relative to the image's own size. Such batches need ``output_size`` set.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"ImageViews expects [B, C, H, W] images with C in (1, 3), got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"ImageViews expects uint8 or floating images, got {images.dtype}")
        if generator.device.type != images.device.type:
            raise ValueError(
                f"generator is on {generator.device} but images are on {images.device}; "
                "create it with view_generator(images.device, ...)"
            )
        cfg = self.config
        batch, channels, height, width = images.shape
        valid_h, valid_w = height, width
        if sizes is not None:
            if sizes.shape != (batch, 2) or sizes.is_floating_point() or sizes.is_complex():
                raise ValueError(f"ImageViews: sizes must be integer [B={batch}, 2] (h, w), got {sizes.dtype} {tuple(sizes.shape)}")
            sizes = sizes.to(images.device)
            limits = sizes.new_tensor([height, width])
            if batch and bool(((sizes < 1) | (sizes > limits)).any()):  # one host sync per view
                raise ValueError(f"ImageViews: sizes must lie in [1, {height}] x [1, {width}] (the padded batch), got {sizes.tolist()}")
            if cfg["output_size"] is None and batch and not bool((sizes == limits).all()):
                raise ValueError(
                    "ImageViews: the images of this batch differ in size; set output_size in the view config (e.g. "
                    "224; SwAV: large_crop_size) so every view has the same side"
                )
            valid_h, valid_w = sizes[:, 0], sizes[:, 1]
        size = cfg["output_size"] or height
        if batch == 0:
            return torch.empty(0, channels, size, size, device=images.device)

        with torch.autocast(device_type=images.device.type, enabled=False):
            x = _to_float(images)
            p = self._sample_params(batch, channels, valid_h, valid_w, generator)
            x = _resized_crop_flip(x, p.boxes, p.flip, size, sizes)

            strengths = [cfg["brightness"], cfg["contrast"]]
            if channels == 3:
                strengths += [cfg["saturation"], cfg["hue"]]
            if cfg["jitter_prob"] > 0 and any(s > 0 for s in strengths):
                x = _color_jitter(x, p.jitter_factors, p.jitter_order, p.jitter)
            if channels == 3 and cfg["grayscale_prob"] > 0:
                x = torch.where(p.grayscale[:, None, None, None], _grayscale(x), x)
            if cfg["blur_prob"] > 0:
                blurred = _gaussian_blur(x, p.blur_sigma, _blur_kernel_size(size))
                x = torch.where(p.blur[:, None, None, None], blurred, x)
            if cfg["solarize_prob"] > 0:
                x = torch.where(p.solarize[:, None, None, None], _solarize(x), x)
        return x
