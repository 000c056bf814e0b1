"""Exports of a zoo encoder to the formats other tools load: ONNX (:mod:`zoo.export.onnx`) and timm Hub folders
(:mod:`zoo.export.timm`).

What they share lives here: loading the model from a Lightning checkpoint or a Hub folder, the inputs ``embed``
takes for each modality (and random valid ones for the parity checks every export runs), and writing the output
folder file by file (zoo.hub.replace_files) without ever touching a folder, or a file, the exporter did not write.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.downstream.pretrained import load_model as pretrained_load_model
from zoo.hub import HubFolderError, replace_files


class ExportError(ValueError):
    """A model, input or output folder that an export cannot handle (one line, reported by ``zoo export``)."""


def load_model(source: str | Path) -> Any:
    """A zoo method in eval mode and fp32 from a ``zoo fit`` checkpoint (``.ckpt``) or a Hub folder / repo id: the
    one loader of :func:`zoo.downstream.pretrained.load_model`, cast to fp32 for tracing."""
    return pretrained_load_model(source).float().eval()


def image_input_shape(model: Any, input_size: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the images the model was trained on: a ViT's own size, else the training record's datamodule,
    else ``input_size`` (which, when given, must agree with the encoder's channels)."""
    encoder = model.embedding_encoder()
    channels = int(encoder.in_chans)
    if input_size is not None:
        if len(input_size) != 3 or input_size[0] != channels or min(input_size) < 1:
            raise ExportError(f"--input-size {' '.join(map(str, input_size))}: expected C H W with C = {channels} (the encoder's in_chans)")
        if hasattr(encoder, "img_size") and tuple(input_size[1:]) != (encoder.img_size, encoder.img_size):
            raise ExportError(f"--input-size {' '.join(map(str, input_size))}: this ViT takes {encoder.img_size}x{encoder.img_size} images only")
        return tuple(int(v) for v in input_size)  # type: ignore[return-value]
    if hasattr(encoder, "img_size"):  # zoo.encoders.vit: a fixed size
        return (channels, int(encoder.img_size), int(encoder.img_size))
    data = dict(model.training_record().get("data") or {})
    if data.pop("class", None) == "ImageDataModule":
        from zoo.data.images import ImageDataModule

        try:
            return tuple(ImageDataModule(**data).image_shape)  # type: ignore[return-value]
        except Exception as e:  # the training data is not on this machine
            raise ExportError(f"cannot read the training images' size ({e}); pass --input-size C H W") from None
    raise ExportError("the model's training record does not say its image size; pass --input-size C H W")


def _has_marker(folder: Path, marker: str | Callable[[Path], bool]) -> bool:
    return marker(folder) if callable(marker) else (folder / marker).is_file()


def check_output_dir(out: Path, marker: str | Callable[[Path], bool], what: str) -> None:
    """Refuse to write into anything but a new or empty folder or an earlier export of the same kind (``marker``: a
    file it holds, or a test)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; the export writes a folder")
    if out.is_dir() and any(out.iterdir()) and not _has_marker(out, marker):
        raise ExportError(f"{out} exists and is not an earlier {what} export; choose another folder")


def write_folder(out: str | Path, marker: str | Callable[[Path], bool], write: Callable[[Path], Any], what: str,
                 last: str) -> Any:
    """Run ``write(tmp)`` in a temporary folder, then move the files it made into ``out`` one by one, ``last`` (the
    file that marks a complete export) last, only when it returns: a failed export (a parity check that does not
    pass, a graph that does not trace) leaves ``out`` as it was, and files in ``out`` that the export does not
    write (a user's notes) stay."""
    target = Path(out)
    check_output_dir(target, marker, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=target.parent) as staged:
        tmp = Path(staged)
        result = write(tmp)
        if not _has_marker(tmp, marker):
            raise RuntimeError(f"the {what} export did not write what marks it")
        made = sorted(p.name for p in tmp.iterdir() if p.is_file())
        writers = {name: (lambda path, src=tmp / name: shutil.copyfile(src, path)) for name in made}
        try:
            replace_files(target, writers, last=last, is_ours=lambda folder: _has_marker(folder, marker),
                          refusal=f"exists and is not an earlier {what} export; choose another folder")
        except HubFolderError as e:
            raise ExportError(str(e)) from None
    return result


def max_abs_diff(a: Any, b: Any) -> float:
    return float((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)).abs().max())


def export_format(fmt: str, source: str | Path, out: str | Path, input_size: tuple[int, int, int] | None = None) -> str:
    """``zoo export --format timm|onnx``: run the export (with its parity check) and say what was written."""
    if fmt == "onnx":
        from zoo.export.onnx import export_onnx

        manifest = export_onnx(source, out, input_size=input_size)
        parts = [f"{name} (parity {g['parity_max_abs_diff']:.2g})" for name, g in manifest["graphs"].items()]
        return f"exported {source} -> {out}: {', '.join(parts)}; max |onnxruntime - embed| <= {next(iter(manifest['graphs'].values()))['parity_atol']:g}"
    if fmt == "timm":
        from zoo.export.timm import export_timm

        report = export_timm(source, out, input_size=input_size)
        return (
            f"exported {source} -> {out}: timm {report['architecture']} (timm.create_model(\"local-dir:{out}\", pretrained=True)), "
            f"parity {report['parity_max_abs_diff']:.2g} on normalised inputs"
        )
    raise ExportError(f"unknown export format {fmt!r}")
