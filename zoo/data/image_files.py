"""Images of any size and format from files: decoding, padded collation, folders and lists, the datamodule.

The DataLoader workers only *decode*: :func:`decode_image` turns the bytes of a JPEG, PNG, WebP, BMP, TIFF or GIF
(first frame) file into an RGB ``uint8`` tensor, applying the EXIF orientation, compositing transparency on white,
converting grayscale, palette, CMYK and 16-bit images, and bounding the stored size (longer side ``<= max_side``,
aspect kept, antialiased). JPEG, PNG and WebP go through ``torchvision.io`` (libjpeg-turbo, libpng, libwebp);
the other formats, palette PNGs and anything torchvision rejects go through Pillow.

:func:`collate_images` pads the images of a batch to its largest height and width (zeros, bottom/right) and records
each image's valid ``(h, w)`` under ``"image_size"``: random crops are drawn inside that valid area on the device
(:mod:`zoo.data.views`), so every random number of a view stays a function of (seed, rank, batch, view).

Sources (:func:`scan_class_folders`, :func:`scan_flat_folder`, :func:`read_file_list`): a folder with one subfolder
per class (labels = sorted folder names), a flat folder (unlabelled), or a CSV/text list of ``path[,label]``
relative to a root.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.base import DataError, ZooDataModule

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS", "BadSample", "ImageFileDataset", "ImageFilesDataModule", "collate_images", "decode_image",
    "read_file_list", "scan_class_folders", "scan_flat_folder",
]

#: file name endings read as images (case-insensitive); other files in a folder are ignored and counted
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

# --------------------------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of palette images
_PNG_ALPHA_TYPES = (4, 6)  # gray + alpha, RGBA


def _sniff(data: bytes) -> str:
    """The container format from the first bytes: jpeg, png, webp, gif, or other (left to Pillow)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_MAGIC:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"GIF8",):
        return "gif"
    return "other"


def _torchvision_mode(kind: str, data: bytes) -> Any:
    """The ``ImageReadMode`` torchvision decodes ``data`` with, or None where Pillow decodes it.

    Palette PNGs go to Pillow: torchvision 0.29's RGB_ALPHA expansion of a palette without a tRNS chunk returns wrong
    colours. Gray/RGB PNGs with a tRNS colour key also go to Pillow (torchvision's RGB mode would drop the key).
    """
    from torchvision.io import ImageReadMode

    if kind == "jpeg":
        return ImageReadMode.RGB  # grayscale and CMYK are converted by libjpeg-turbo (checked against Pillow)
    if kind == "webp":
        return ImageReadMode.RGB_ALPHA
    if kind == "png" and len(data) >= 33:
        colour_type = data[25]
        idat = data.find(b"IDAT")
        if colour_type == _PNG_PALETTE or b"tRNS" in data[: idat if idat > 0 else len(data)]:
            return None
        return ImageReadMode.RGB_ALPHA if colour_type in _PNG_ALPHA_TYPES else ImageReadMode.RGB
    return None


def _decode_torchvision(data: bytes, mode: Any) -> Tensor:
    from torchvision.io import decode_image as tv_decode

    return tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode, apply_exif_orientation=True)


def _decode_pillow(data: bytes) -> Tensor:
    """[C, H, W] with C = 3 (RGB) or 4 (RGBA), uint8 or uint16 (16-bit gray), via Pillow (first frame of animations)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)  # GIF / multi-page TIFF: the first frame
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # 16-bit (or 32-bit integer) gray: keep the depth; _to_uint8 maps it to 8 bits
            arr = np.asarray(img).astype(np.int64)
            arr = np.clip(arr, 0, 65535).astype(np.uint16) if img.mode != "I" or arr.max() > 255 else arr.astype(np.uint8)
            return torch.from_numpy(np.ascontiguousarray(arr))[None].expand(3, -1, -1).contiguous()
        if img.mode == "F":  # float gray, taken to be in [0, 1] or [0, 255] by its range
            arr = np.asarray(img, dtype=np.float64)
            arr = arr * 255.0 if np.nanmax(arr) <= 1.0 else arr
            arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
            return torch.from_numpy(arr)[None].expand(3, -1, -1).contiguous()
        has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)
        img = img.convert("RGBA" if has_alpha else "RGB")
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def _to_uint8(image: Tensor) -> Tensor:
    """16-bit → 8-bit by rounding x / 257 (65535 ↦ 255, 257·k ↦ k exactly); uint8 passes through."""
    if image.dtype == torch.uint8:
        return image
    return torch.div(image.to(torch.int32) * 2 + 257, 514, rounding_mode="floor").to(torch.uint8)


def _on_white(image: Tensor) -> Tensor:
    """RGBA → RGB composited on a white background (integer, round half up); RGB passes through."""
    if image.shape[0] == 3:
        return image
    rgb, alpha = image[:3].to(torch.int32), image[3:].to(torch.int32)
    if bool((alpha == 255).all()):
        return image[:3].contiguous()
    return torch.div(rgb * alpha + 255 * (255 - alpha) + 127, 255, rounding_mode="floor").to(torch.uint8)


def bounded_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is at most ``max_side`` (aspect kept, each side >= 1)."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode_image(data: bytes, *, source: str, max_side: int | None = None, channels: int = 3) -> Tensor:
    """Decode the bytes of an image file to a ``uint8`` tensor ``[channels, H, W]``.

    Every format and mode becomes RGB: grayscale and palette images are expanded, CMYK converted, transparency
    composited on white, 16-bit samples rounded to 8 bits; the EXIF orientation is applied; animated GIFs give their
    first frame. With ``max_side``, an image whose longer side exceeds it is downscaled (antialiased, aspect kept).
    ``channels=1`` returns the ITU-R 601 luma instead (exact for grayscale files).

    Raises :class:`~zoo.data.base.DataError` ``"{source}: why"`` for empty, truncated, corrupt or non-image data.
    """
    if channels not in (1, 3):
        raise DataError(f"decode_image: channels must be 1 or 3, got {channels!r}")
    if max_side is not None and (int(max_side) != max_side or max_side < 1):
        raise DataError(f"decode_image: max_side must be None or an integer >= 1, got {max_side!r}")
    if len(data) == 0:
        raise DataError(f"{source}: empty file (0 bytes), not an image")
    kind = _sniff(data)
    mode = _torchvision_mode(kind, data)
    image = None
    if mode is not None:
        try:
            image = _decode_torchvision(data, mode)
        except RuntimeError as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            if "truncated" in reason or "incomplete" in reason:
                raise DataError(f"{source}: truncated or corrupt {kind.upper()} ({reason.split(', ')[-1]})") from None
            image = None  # unusual variants (e.g. arithmetic-coded JPEG): Pillow may still read them
    if image is None:
        image = _decode_with_pillow_or_raise(data, source, kind)
    if image.ndim == 4:  # animated image from torchvision: the first frame
        image = image[0]
    image = _on_white(_to_uint8(image))
    if channels == 1:
        # ITU-R 601 luma in integers (Pillow's "L" conversion): exact on gray files, whose three channels are equal
        r, g, b = image.to(torch.int32).unbind(0)
        image = torch.div(r * 299 + g * 587 + b * 114 + 500, 1000, rounding_mode="floor").to(torch.uint8)[None]
    height, width = image.shape[-2:]
    new_h, new_w = bounded_size(height, width, max_side)
    if (new_h, new_w) != (height, width):
        from torchvision.transforms.v2.functional import resize

        image = resize(image, [new_h, new_w], antialias=True)
    return image.contiguous()


def _decode_with_pillow_or_raise(data: bytes, source: str, kind: str) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        return _decode_pillow(data)
    except UnidentifiedImageError:
        if kind != "other":
            raise DataError(f"{source}: truncated or corrupt {kind.upper()} (its header cannot be read)") from None
        head = data[:8].hex(" ")
        raise DataError(f"{source}: not an image (unrecognised format; first bytes {head})") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{source}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        what = kind.upper() if kind != "other" else "image"
        reason = str(e) or type(e).__name__
        if "truncated" in reason or isinstance(e, EOFError):
            raise DataError(f"{source}: truncated or corrupt {what} ({reason})") from None
        raise DataError(f"{source}: cannot decode {what} ({reason})") from None


# --------------------------------------------------------------------------------------------------------------------
# collation
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadSample:
    """What a dataset returns in place of a file that failed to decode under ``on_bad_file="skip"``."""

    path: str
    reason: str
    index: int


def collate_images(samples: Sequence[dict[str, Any] | BadSample]) -> dict[str, Any]:
    """Pad a list of samples ``{"image": uint8 [C, H, W], "label": int (optional), "index": int}`` into a batch.

    Returns ``{"image": uint8 [B, C, Hmax, Wmax]`` (zero padding at the bottom/right), ``"image_size": int64 [B, 2]``
    (each image's valid ``(h, w)``), ``"label": int64 [B]`` (-1 where unlabelled), ``"index": int64 [B]}``, plus
    ``"skipped": list[str]`` (``"path: reason"``) when some samples are :class:`BadSample` (they are left out).
    """
    good = [s for s in samples if not isinstance(s, BadSample)]
    skipped = [f"{s.path}: {s.reason}" for s in samples if isinstance(s, BadSample)]
    if good:
        channels = {int(s["image"].shape[0]) for s in good}
        if len(channels) != 1:
            raise DataError(f"collate_images: samples have different channel counts {sorted(channels)}")
        sizes = torch.tensor([tuple(s["image"].shape[-2:]) for s in good], dtype=torch.int64)
        height, width = (int(v) for v in sizes.max(dim=0).values)
        images = torch.zeros(len(good), channels.pop(), height, width, dtype=torch.uint8)
        for i, s in enumerate(good):
            h, w = s["image"].shape[-2:]
            images[i, :, :h, :w] = s["image"]
    else:
        sizes = torch.zeros(0, 2, dtype=torch.int64)
        images = torch.zeros(0, 3, 0, 0, dtype=torch.uint8)
    batch: dict[str, Any] = {
        "image": images,
        "image_size": sizes,
        "label": torch.tensor([int(s.get("label", -1)) for s in good], dtype=torch.int64),
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.int64),
    }
    if skipped:
        batch["skipped"] = skipped
    return batch
