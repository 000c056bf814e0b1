"""Images of any size and format from files: decoding, padded collation, folders and lists, the datamodule.

The DataLoader workers only *decode*: :func:`decode_image` turns the bytes of a JPEG, PNG, WebP, BMP, TIFF or GIF
(first frame) file into an RGB ``uint8`` tensor, applying the EXIF orientation, compositing transparency on white,
converting grayscale, palette, CMYK and 16-bit images, and bounding the stored size (longer side ``<= max_side``,
aspect kept, antialiased). JPEG, PNG and WebP go through ``torchvision.io`` (libjpeg-turbo, libpng, libwebp);
the other formats, palette PNGs and anything torchvision rejects go through Pillow.

:func:`collate_images` pads the images of a batch to its largest height and width (zeros, bottom/right) and records
each image's valid ``(h, w)`` under ``"image_size"``: random crops are drawn inside that valid area on the device
(:mod:`zoo.nn.views`), so every random number of a view stays a function of (seed, rank, batch, view).

Sources (:func:`scan_class_folders`, :func:`scan_flat_folder`, :func:`read_file_list`): a folder with one subfolder
per class (labels = sorted folder names), a flat folder (unlabelled), or a CSV/text list of ``path[,label]``
relative to a root.
"""

from __future__ import annotations

import csv
import io
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
        # torchvision ignores a WebP's EXIF orientation: files with EXIF (VP8X flag 0x08) go to Pillow
        has_exif = data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x08)
        return None if has_exif else ImageReadMode.RGB_ALPHA
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


def eval_view(image: Tensor, size: int, crop_fraction: float) -> Tensor:
    """The evaluation view of a decoded image: the shorter side resized (antialiased) to ``size / crop_fraction``,
    then the central ``size`` square (ImageNet's 256 → 224 for size 224, crop_fraction 0.875)."""
    from torchvision.transforms.v2.functional import center_crop, resize

    short = max(size, round(size / crop_fraction))
    return center_crop(resize(image, short, antialias=True), [size, size])


def collate_images(samples: Sequence[dict[str, Any] | BadSample]) -> dict[str, Any]:
    """Pad a list of samples ``{"image": uint8 [C, H, W], "label": int (optional), "index": int}`` into a batch.

    Returns ``{"image": uint8 [B, C, Hmax, Wmax]`` (zero padding at the bottom/right), ``"image_size": int64 [B, 2]``
    (each image's valid ``(h, w)``), ``"label": int64 [B]`` (-1 where unlabelled), ``"index": int64 [B]}``, plus
    ``"skipped": list[str]`` (``"path: reason"``) when some samples are :class:`BadSample` (they are left out) or
    carry a ``"skipped"`` list of their own (files they stand in for).
    """
    good = [s for s in samples if not isinstance(s, BadSample)]
    skipped = [f"{s.path}: {s.reason}" for s in samples if isinstance(s, BadSample)]
    skipped += [item for s in good for item in s.get("skipped", ())]
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


# --------------------------------------------------------------------------------------------------------------------
# sources: class folders, flat folders, lists
# --------------------------------------------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class FileSource:
    """Image paths with labels (-1 where unlabelled), the class names (None: unlabelled or integer labels) and the
    files that were passed over (non-image files in a folder)."""

    paths: list[str]
    labels: np.ndarray  # int64 [N]
    classes: list[str] | None
    ignored: list[str]
    where: str

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


def _walk_images(folder: Path) -> tuple[list[str], list[str]]:
    """(image files, other files) under ``folder``, recursively, in sorted order; hidden entries are skipped."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            (images if _is_image_name(name) else others).append(os.path.join(dirpath, name))
    return images, others


def scan_class_folders(folder: str | Path, classes: Sequence[str] | None = None) -> FileSource:
    """One subfolder per class (labels = index in the sorted folder names, or in ``classes`` when given, e.g. the
    train split's classes for a val folder); images anywhere below a class folder belong to it.

    Raises :class:`DataError` for a missing folder, a folder without class subfolders, a class folder without
    images (train) or a class not in ``classes``.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DataError(f"{folder}: no class subfolders (for a flat folder of unlabelled images pass labels='none')")
    if classes is not None:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise DataError(f"{folder}: class folder(s) {unknown[:5]} are not among the train classes {list(classes)[:10]}")
    names = list(classes) if classes is not None else found
    index = {c: i for i, c in enumerate(names)}
    paths: list[str] = []
    labels: list[int] = []
    ignored = [str(folder / e.name) for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    for name in found:
        images, others = _walk_images(folder / name)
        ignored += others
        if not images and classes is None:
            extra = f" (only {_plural(len(others), 'non-image file')})" if others else ""
            raise DataError(
                f"{folder / name}: class folder '{name}' holds no images{extra}; add images or remove the folder "
                f"(image files end with {', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += images
        labels += [index[name]] * len(images)
    return FileSource(paths, np.asarray(labels, dtype=np.int64), names, sorted(ignored), str(folder))


def scan_flat_folder(folder: str | Path) -> FileSource:
    """Every image below ``folder`` (recursively, sorted), unlabelled."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    images, others = _walk_images(folder)
    return FileSource(images, np.full(len(images), -1, dtype=np.int64), None, others, str(folder))


def read_file_list(list_file: str | Path, root: str | Path | None = None, classes: Sequence[str] | None = None) -> FileSource:
    """A CSV or text list with one ``path[,label]`` per line; paths relative to ``root`` (default: the list's
    folder). Labels are integers, or class names: numbered by their place in ``classes`` when given (the train
    split's classes, for a val/test list), else in sorted order. Blank lines and lines starting with ``#`` are
    skipped; a first line ``path[,label]`` is a header. Every named file must exist."""
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise DataError(f"{list_file}: no such list file")
    base = Path(root).expanduser() if root is not None else list_file.parent
    rows: list[tuple[int, str, str | None]] = []
    with open(list_file, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if not rows and row[0].lower() in ("path", "file", "filename", "image"):
                continue  # header
            if len(row) > 2:
                raise DataError(f"{list_file} line {line_no}: expected 'path' or 'path,label', got {len(row)} columns")
            rows.append((line_no, row[0], row[1] if len(row) == 2 and row[1] != "" else None))
    if not rows:
        raise DataError(f"{list_file}: the list names no files")
    with_label = [r for r in rows if r[2] is not None]
    if with_label and len(with_label) != len(rows):
        line = next(r[0] for r in rows if r[2] is None)
        raise DataError(f"{list_file} line {line}: no label, but other lines have one (label every line or none)")
    paths = []
    for line_no, rel, _ in rows:
        path = base / rel
        if not path.is_file():
            raise DataError(f"{list_file} line {line_no}: {rel} does not exist (looked for {path})")
        paths.append(str(path))
    if not with_label:
        labels = np.full(len(rows), -1, dtype=np.int64)
    else:
        raw = [r[2] for r in rows]
        try:
            labels = np.asarray([int(v) for v in raw], dtype=np.int64)  # type: ignore[arg-type]
        except ValueError:
            names = list(classes) if classes is not None else sorted(set(raw))  # type: ignore[arg-type]
            index = {c: i for i, c in enumerate(names)}
            unknown = next((r for r in rows if r[2] not in index), None)
            if unknown is not None:
                raise DataError(f"{list_file} line {unknown[0]}: class {unknown[2]!r} is not among the train classes {names[:10]}") from None
            labels = np.asarray([index[v] for v in raw], dtype=np.int64)
            classes = names
        if (labels < 0).any():
            line = rows[int(np.argmax(labels < 0))][0]
            raise DataError(f"{list_file} line {line}: integer labels must be >= 0")
    return FileSource(paths, labels, list(classes) if classes is not None and with_label else None, [], str(list_file))


def _is_list_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".csv", ".txt", ".lst", ".tsv")


# --------------------------------------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------------------------------------


class ImageFileDataset(Dataset):
    """Decodes image files in the DataLoader workers (see :func:`decode_image`).

    ``eval_size``: resize the shorter side to ``round(eval_size / crop_fraction)`` (antialiased) and take the
    central ``eval_size`` square, the standard deterministic evaluation view (e.g. 256 → 224); None keeps the stored
    size (bounded by ``max_side``). ``on_bad_file="skip"`` replaces a file that cannot be read or decoded by the next
    readable one (in dataset order) and lists the bad file under the sample's ``"skipped"``; ``"error"`` raises the
    one-line :class:`DataError`.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        *,
        max_side: int | None = None,
        channels: int = 3,
        eval_size: int | None = None,
        crop_fraction: float = 0.875,
        on_bad_file: str = "error",
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.max_side = max_side
        self.channels = channels
        self.eval_size = eval_size
        self.crop_fraction = crop_fraction
        self.on_bad_file = on_bad_file

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any] | BadSample:
        skipped: list[str] = []
        # skip: the next readable file stands in for a bad one, so that batches keep their size (losses gathered
        # over ranks need equal batches); the bad files travel with the sample, for the per-epoch warning
        for offset in range(len(self.paths) if self.on_bad_file == "skip" else 1):
            i = (index + offset) % len(self.paths)
            sample = self._read(i)
            if not isinstance(sample, BadSample):
                if skipped:
                    sample["skipped"] = skipped
                return sample
            skipped.append(f"{sample.path}: {sample.reason}")
        return BadSample(self.paths[index], "no readable image left in the dataset", int(index))

    def _read(self, index: int) -> dict[str, Any] | BadSample:
        path = self.paths[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
            image = decode_image(
                data, source=path, max_side=None if self.eval_size else self.max_side, channels=self.channels
            )
        except (DataError, OSError) as e:
            if self.on_bad_file == "error":
                if isinstance(e, DataError):
                    raise
                raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
            reason = str(e).removeprefix(f"{path}: ") if isinstance(e, DataError) else f"cannot read ({e.strerror or e})"
            return BadSample(path, reason, int(index))
        if self.eval_size:
            image = eval_view(image, self.eval_size, self.crop_fraction)
        return {"image": image, "label": int(self.labels[index]), "index": int(index)}


# --------------------------------------------------------------------------------------------------------------------
# datamodule
# --------------------------------------------------------------------------------------------------------------------


class ImageFilesDataModule(ZooDataModule):
    """Your own images: a class-folder tree, a flat folder, or CSV/text lists, of any format, size and aspect.

    Train batches (:func:`collate_images`): ``{"image": uint8 [B, C, Hmax, Wmax]`` zero-padded, ``"image_size":
    [B, 2]`` valid (h, w), ``"label"`` (-1 unlabelled), ``"index"}``; every image stored with its longer side at most
    ``max_side``. The methods crop inside each valid area on the device (:class:`zoo.nn.views.ImageViews`), so
    their view configs need an ``output_size``. Evaluation batches (kNN bank, val, test, predict) hold the central
    ``eval_size`` square after resizing the shorter side to ``eval_size / crop_fraction`` (224 of 256), so
    ``method.embed(batch["image"])`` sees fixed-size images.

    Sources (each of ``train``, ``val``, ``test``: a folder or a ``.csv``/``.txt`` list; relative paths are under
    ``root``):

    - ``root`` alone: the training images. ``labels="auto"`` reads a folder with subfolders as one class per
      subfolder (labels from the sorted names) and a folder without subfolders as unlabelled images (RankMe only).
    - ``val`` / ``test``: separate folders or lists; otherwise ``val_size`` / ``test_size`` images (a count, or a
      fraction < 1) are held out of the train source by a ``seed``-ed permutation, as :class:`~zoo.data.images.ImageDataModule`
      does (val first, then test, the rest is train; ``train_subset`` keeps the first N of train).

    Args:
        root: the image folder (or the folder list paths are relative to).
        train, val, test: folder or list file per split (relative to ``root``); ``train`` defaults to ``root``.
        labels: ``"auto"``, ``"folders"`` (class subfolders) or ``"none"`` (unlabelled, recursive).
        val_size, test_size: images held out of train when ``val`` / ``test`` are not given.
        batch_size, num_workers, pin_memory, drop_last, seed, train_subset, knn_bank_size: as ImageDataModule.
        max_side: bound on the longer side of stored train images (antialiased downscale, aspect kept); None: as is.
        eval_size: side of the evaluation images; None keeps the stored size (only for folders of one image size).
        crop_fraction: evaluation centre-crop fraction (0.875: resize to 256, crop 224).
        channels: 3 (RGB) or 1 (luma; grayscale data such as Fashion-MNIST written out as PNG).
        on_bad_file: ``"error"`` stops on a file that cannot be decoded, naming it and why; ``"skip"`` puts the next
            readable file in its place (batches keep their size), counts it and warns once per epoch with the count
            and the first paths.
    """

    collate_fn = staticmethod(collate_images)  # images of different sizes: zero-padded, with their sizes

    def __init__(
        self,
        root: str | None = None,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        labels: Literal["auto", "folders", "none"] = "auto",
        val_size: float = 0,
        test_size: float = 0,
        batch_size: int = 256,
        num_workers: int = 0,
        max_side: int | None = 512,
        eval_size: int | None = 224,
        crop_fraction: float = 0.875,
        channels: int = 3,
        knn_bank_size: int = 10000,
        train_subset: int | None = None,
        seed: int = 0,
        pin_memory: bool = False,
        drop_last: bool = True,
        on_bad_file: Literal["error", "skip"] = "error",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if root is None and train is None:
            raise DataError("ImageFilesDataModule needs root= an image folder (or train= a folder or list file)")
        if labels not in ("auto", "folders", "none"):
            raise DataError(f"labels must be 'auto', 'folders' or 'none', got {labels!r}")
        if on_bad_file not in ("error", "skip"):
            raise DataError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels!r}")
        for arg, value, minimum in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("knn_bank_size", knn_bank_size, 0)):
            if isinstance(value, bool) or int(value) != value or value < minimum:
                raise DataError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        for arg, value in (("max_side", max_side), ("eval_size", eval_size), ("train_subset", train_subset)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise DataError(f"{arg} must be None or an integer >= 1, got {value!r}")
        for arg, value in (("val_size", val_size), ("test_size", test_size)):
            if isinstance(value, bool) or not (value >= 0) or (value >= 1 and int(value) != value):
                raise DataError(f"{arg} must be a count >= 0 or a fraction in [0, 1), got {value!r}")
        if not 0 < crop_fraction <= 1:
            raise DataError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        self.root = Path(root).expanduser() if root is not None else None
        self.sources = {"train": train, "val": val, "test": test}
        self.labels_mode = labels
        self.val_size, self.test_size = val_size, test_size
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.max_side = None if max_side is None else int(max_side)
        self.eval_size = None if eval_size is None else int(eval_size)
        self.crop_fraction = float(crop_fraction)
        self.channels = int(channels)
        self.knn_bank_size = int(knn_bank_size)
        self.train_subset = None if train_subset is None else int(train_subset)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.drop_last = bool(drop_last)
        self.on_bad_file = on_bad_file
        self._splits: dict[str, FileSource] | None = None
        self._classes: list[str] | None = None
        self._skipped: tuple[Any, list[str]] | None = None  # (stage, epoch), "path: reason" of this epoch

    # ---------------------------------------------------------------------------------------------------------------
    # sources

    def _resolve(self, value: str | None) -> Path:
        if value is None:
            assert self.root is not None
            return self.root
        path = Path(value).expanduser()
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path

    def _read_source(self, split: str, classes: list[str] | None) -> FileSource:
        path = self._resolve(self.sources[split])
        if _is_list_file(path):
            return read_file_list(path, self.root, classes)
        if not path.exists():
            raise DataError(f"{path}: no such image folder or list file ({split} split)")
        if not path.is_dir():
            raise DataError(f"{path}: the {split} source must be a folder or a .csv/.txt list of path[,label] lines")
        mode = self.labels_mode
        if mode == "auto":
            has_subdirs = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))
            mode = "folders" if has_subdirs or classes is not None else "none"
        source = scan_class_folders(path, classes) if mode == "folders" else scan_flat_folder(path)
        if not source.paths:
            extra = f"; {_plural(len(source.ignored), 'other file')} ignored" if source.ignored else ""
            raise DataError(
                f"{path}: no images found ({split} split; image files end with {', '.join(IMAGE_EXTENSIONS)}{extra})"
            )
        if source.ignored:
            shown = ", ".join(Path(p).name for p in source.ignored[:3])
            warnings.warn(
                f"{path}: ignored {_plural(len(source.ignored), 'non-image file')} (e.g. {shown})", stacklevel=2
            )
        return source

    @staticmethod
    def _count(size: float, n: int) -> int:
        return int(size) if size >= 1 else int(round(size * n))

    def setup(self, stage: str | None = None) -> None:
        """Scan the sources and split them (once; later calls do nothing). Files are decoded only by the loaders."""
        if self._splits is not None:
            return
        train = self._read_source("train", None)
        classes = train.classes if train.classes is not None and train.labelled else None
        held: dict[str, FileSource] = {}
        for split in ("val", "test"):
            if self.sources[split] is not None:
                held[split] = self._read_source(split, classes)
                if held[split].labelled != train.labelled:
                    raise DataError(
                        f"{held[split].where}: the {split} split is {'' if held[split].labelled else 'un'}labelled but "
                        f"the train split ({train.where}) is {'' if train.labelled else 'un'}labelled"
                    )
        n = len(train.paths)
        n_val = 0 if "val" in held else self._count(self.val_size, n)
        n_test = 0 if "test" in held else self._count(self.test_size, n)
        if n_val + n_test >= n:
            raise DataError(
                f"val_size={self.val_size} and test_size={self.test_size} hold out {n_val + n_test} of the {n} images "
                f"in {train.where}: nothing left to train on"
            )
        # as ImageDataModule: one seeded permutation; val first, then test, the rest trains
        perm = np.random.default_rng(self.seed).permutation(n)
        parts = {"val": perm[:n_val], "test": perm[n_val : n_val + n_test], "train": perm[n_val + n_test :]}
        if self.train_subset is not None:
            parts["train"] = parts["train"][: self.train_subset]
        splits = {}
        for split, idx in parts.items():
            if split in held:
                splits[split] = held[split]
            elif len(idx) or split == "train":
                splits[split] = FileSource([train.paths[i] for i in idx], train.labels[idx], train.classes, [], train.where)
        labelled = train.labelled
        if labelled and self.knn_bank_size > 0:
            bank = splits["train"]
            k = min(self.knn_bank_size, len(bank.paths))
            splits["knn_bank"] = FileSource(bank.paths[:k], bank.labels[:k], bank.classes, [], bank.where)
        self._classes = classes
        self._num_classes = (len(classes) if classes else int(train.labels.max()) + 1) if labelled else None
        self._splits = splits

    # ---------------------------------------------------------------------------------------------------------------
    # metadata

    @property
    def num_classes(self) -> int | None:
        """Number of classes (class folders, class names or max integer label + 1); None when unlabelled."""
        if self._splits is None:
            self.setup()
        return self._num_classes

    @property
    def class_names(self) -> list[str] | None:
        if self._splits is None:
            self.setup()
        return None if self._classes is None else list(self._classes)

    def files(self, split: str) -> tuple[list[str], np.ndarray]:
        """(paths, labels) of ``"train" | "val" | "test" | "knn_bank"`` (labels -1 where unlabelled)."""
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        if split not in ("train", "val", "test", "knn_bank"):
            raise DataError(f"unknown split {split!r}; valid splits: train, val, test, knn_bank")
        if split not in self._splits:
            raise DataError(f"this datamodule has no {split} split (give {split}= a folder or list, or a {split}_size)")
        source = self._splits[split]
        return list(source.paths), source.labels.copy()

    # ---------------------------------------------------------------------------------------------------------------
    # loaders

    def _dataset(self, split: str, train: bool) -> ImageFileDataset:
        paths, labels = self.files(split)
        return ImageFileDataset(
            paths, labels, max_side=self.max_side, channels=self.channels,
            eval_size=None if train else self.eval_size, crop_fraction=self.crop_fraction, on_bad_file=self.on_bad_file,
        )

    def split_dataset(self, split: str, train: bool) -> ImageFileDataset:
        return self._dataset(split, train)

    def has_split(self, split: str) -> bool:
        self.setup()
        assert self._splits is not None
        return split in self._splits

    def predict_dataloader(self) -> DataLoader:
        """The test split in file order, or every train image (in file order) when there is no test split."""
        split = "test" if self.has_split("test") else "train"
        ds = self._dataset(split, train=False)
        if split == "train":
            order = np.argsort(np.asarray(ds.paths, dtype=object), kind="stable")
            ds.paths, ds.labels = [ds.paths[i] for i in order], ds.labels[order]
        return self.make_loader(ds, shuffle=False, drop_last=False)

    # ---------------------------------------------------------------------------------------------------------------
    # skipped files: one warning per epoch (workers cannot warn the main process, so batches carry them)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "skipped" in batch:
            skipped = batch.pop("skipped")
            key = self._epoch_key()
            if self._skipped is not None and self._skipped[0] != key:
                self._flush_skipped()
            if self._skipped is None:
                self._skipped = (key, [])
            self._skipped[1].extend(skipped)
        elif self._skipped is not None and self._skipped[0] != self._epoch_key():
            self._flush_skipped()
        return batch

    def _epoch_key(self) -> Any:
        if self.trainer is None:
            return None
        stage = self.trainer.state.stage
        return (stage.value if stage is not None else "", self.trainer.current_epoch)

    def _flush_skipped(self) -> None:
        if self._skipped is None:
            return
        (key, items), self._skipped = self._skipped, None
        items = list(dict.fromkeys(items))  # a run of bad files is met from each of their indices
        where = f" in {key[0]} epoch {key[1]}".replace("  ", " ") if key else ""
        shown = "; ".join(items[:3])
        warnings.warn(
            f"skipped {_plural(len(items), 'unreadable image file')}{where} (on_bad_file='skip'): {shown}"
            + (" ..." if len(items) > 3 else ""),
            stacklevel=2,
        )

    def teardown(self, stage: str) -> None:
        self._flush_skipped()
