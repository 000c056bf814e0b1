"""Input checks for zoo's public entry points: one clear line instead of a NaN, a silently different result or a deep
traceback.

The contracts, checked once here and called from every ``embed`` (and SLAP's ``embed_text``), the datamodules and
the training start:

- images ``[B, C, H, W]`` with C the encoder's ``in_chans`` (and H = W = ``img_size`` for a ViT): ``uint8`` with any
  values, another integer dtype only with values in 0..255 (it is then read as ``uint8``), or a float dtype with
  finite values in [0, 1]. Floats in 0..255, or already normalised with a mean/std, are refused: the encoder scales
  and normalises itself, so both would embed as different images.
- features / skeletons / waveforms: a float (or, for features, integer) tensor of the stated rank, finite.
- texts: a list of strings.
- labels: integers in [0, num_classes).
- a training batch: at least ``min_batch_size`` samples globally for methods whose loss needs other samples of the
  batch (contrastive negatives, batch-norm statistics), the last batch of an epoch included.
- a ``--ckpt_path`` checkpoint: the config's method and model hyper-parameters (LightningCLI would otherwise put the
  checkpoint's in their place without a word); ``predict`` needs one.

:class:`~zoo.errors.InputError` is a :class:`~zoo.errors.DataError`, so the CLI reports it as one line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from zoo.errors import InputError

#: float images may exceed [0, 1] by rounding error only
_FLOAT_TOLERANCE = 1e-3



def _tensor(x: Any, where: str, expected: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputError(f"{where}: expected a torch.Tensor of {expected}, got {type(x).__name__}")
    return x


def _shape(x: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def fixed_image_size(encoder: Any) -> tuple[int, int] | None:
    """(H, W) an image encoder only accepts: zoo's ViT's ``img_size``, or a timm ViT backbone's strict patch-embedding
    size; None for encoders that take any size (CNNs)."""
    size = getattr(encoder, "img_size", None)
    if size is None:
        patch_embed = getattr(getattr(encoder, "backbone", None), "patch_embed", None)
        if patch_embed is not None and getattr(patch_embed, "strict_img_size", False):
            size = getattr(patch_embed, "img_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_image_size(images: Tensor, size: tuple[int, int] | None, where: str) -> None:
    if size is not None and images.ndim == 4 and tuple(images.shape[-2:]) != size:
        raise InputError(
            f"{where}: the encoder was built for {size[0]}×{size[1]} images (encoder img_size), got "
            f"{images.shape[-2]}×{images.shape[-1]}; resize them, or train a model with that img_size"
        )


def _tracing() -> bool:
    """Under torch.compile / torch.export / jit tracing (an ONNX export traces ``embed``), values are symbolic: only
    the static checks (type, dtype, shape) apply; the data-dependent ones would break the graph."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def check_images(images: Any, encoder: Any, where: str) -> Tensor:
    """``images`` if they meet the image contract of ``encoder`` (its ``in_chans`` and any fixed size); integer
    images come back as ``uint8``. Otherwise :class:`InputError`."""
    in_chans = int(encoder.in_chans)
    expected = f"images [B, {in_chans}, H, W]"
    images = _tensor(images, where, expected)
    if images.ndim != 4 or images.shape[1] != in_chans:
        hint = " (one image? add a batch dimension with images[None])" if images.ndim == 3 else ""
        raise InputError(f"{where}: expected {expected}, got shape {_shape(images)}{hint}")
    check_image_size(images, fixed_image_size(encoder), where)
    if images.dtype == torch.uint8 or images.numel() == 0:
        return images
    if images.dtype == torch.bool or images.is_complex():
        raise InputError(f"{where}: images must be uint8, integers in 0..255 or floats in [0, 1], got {images.dtype}")
    if _tracing():
        return images if images.is_floating_point() else images.to(torch.uint8)
    lo, hi = (float(v) for v in torch.aminmax(images.detach()))
    if not images.is_floating_point():
        if lo < 0 or hi > 255:
            raise InputError(f"{where}: {images.dtype} images must hold values in 0..255, got {lo:g}..{hi:g}")
        return images.to(torch.uint8)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{where}: images hold NaN or infinite values")
    if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
        hint = (
            "pass uint8 images, or divide by 255" if hi > 1 + _FLOAT_TOLERANCE and lo >= -_FLOAT_TOLERANCE
            else "pass unnormalised images: the encoder normalises them with its own mean/std"
        )
        raise InputError(f"{where}: float images must lie in [0, 1], got {lo:.4g}..{hi:.4g}; {hint}")
    return images


def check_tensor(
    x: Any, where: str, expected: str, ndim: int, sizes: dict[int, int] | None = None, integers: bool = False
) -> Tensor:
    """A float tensor (integers too when ``integers``) of rank ``ndim`` with ``sizes[dim]`` where given, all finite."""
    x = _tensor(x, where, expected)
    if x.ndim != ndim or any(x.shape[d] != n for d, n in (sizes or {}).items()):
        raise InputError(f"{where}: expected {expected}, got shape {_shape(x)}")
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or integers):
        kinds = "a float or integer" if integers else "a float"
        hint = " (int16 PCM audio: divide by 32768)" if x.dtype == torch.int16 else ""
        raise InputError(f"{where}: expected {kinds} dtype, got {x.dtype}{hint}")
    if x.is_floating_point() and x.numel() and not _tracing() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise InputError(f"{where}: {expected} hold NaN or infinite values, e.g. at index {bad}")
    return x


def check_texts(texts: Any, where: str) -> list[str]:
    """A non-empty list (or tuple) of strings."""
    if isinstance(texts, str):
        raise InputError(f"{where}: expected a list of strings, got one string; wrap it: [{texts[:30]!r}]")
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        kinds = sorted({type(t).__name__ for t in texts}) if isinstance(texts, Sequence) else type(texts).__name__
        raise InputError(f"{where}: expected a list of strings, got {kinds}")
    if not texts:
        raise InputError(f"{where}: the list of texts is empty")
    return list(texts)


def check_labels(labels: Any, num_classes: int | None, where: str) -> None:
    """Integer class labels in [0, num_classes) (num_classes None: non-negative only)."""
    values = labels if isinstance(labels, Tensor) else torch.as_tensor(labels)
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise InputError(f"{where}: class labels must be integers, got {values.dtype}")
    if values.numel() == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bad = lo if lo < 0 else hi
        limit = f"0..{num_classes - 1} (num_classes={num_classes})" if num_classes is not None else "non-negative"
        raise InputError(f"{where}: class labels must be {limit}, found {bad}")


def check_train_batches(
    method: str, min_batch_size: int, batch_size: int | None, world_size: int, num_samples: int | None, drop_last: bool,
) -> None:
    """Refuse a training set-up in which some step's global batch is smaller than ``min_batch_size`` (SimCLR on a
    batch of 1 has no negatives: its loss is exactly 0 and nothing is learned). ``num_samples`` is per rank."""
    if batch_size is None or min_batch_size <= 1:
        return
    if batch_size * world_size < min_batch_size:
        raise InputError(
            f"{method} needs a global batch of at least {min_batch_size} (its loss compares the samples of a batch), "
            f"got batch_size={batch_size} × {world_size} device(s); raise data batch_size"
        )
    if not drop_last and num_samples is not None:
        last = num_samples % batch_size
        if last and last * world_size < min_batch_size:
            raise InputError(
                f"{method}: the last train batch of every epoch would hold {last * world_size} sample(s) "
                f"({num_samples} samples per device, batch_size={batch_size}), fewer than the {min_batch_size} its loss "
                "needs; set data drop_last=true or choose a batch_size that divides the train split"
            )


def check_train_loader(method: Any) -> None:
    """:func:`check_train_batches` for the train loader a Lightning ``method`` is about to train on."""
    trainer = method.trainer
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    if getattr(loader, "batch_size", None) is None:  # a batch sampler of its own (G-SimCLR) sizes the batches itself
        return
    num_samples = len(sampler) if hasattr(sampler, "__len__") else None
    check_train_batches(
        type(method).__name__, method.min_batch_size, loader.batch_size, trainer.world_size, num_samples, loader.drop_last
    )


#: model init args the CLI links from the datamodule (``add_arguments_to_parser``): unset in a config until then
LINKED_FROM_DATA = ("num_classes", "feature_schema")


def _plain(value: Any) -> Any:
    """JSON-comparable form: tuples as lists, namespaces as dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_checkpoint_config(subcommand: str, model_config: Any, ckpt_path: str | None) -> None:
    """What ``zoo fit|validate|test|predict`` runs must be what the config says. LightningCLI replaces the
    configured model and its hyper-parameters by a ``--ckpt_path`` checkpoint's without a word (a BYOL config with
    a SimCLR checkpoint runs SimCLR; ``--model.init_args.lr 0.1`` is dropped); here a different method, or any
    hyper-parameter that differs, is an error naming them. ``predict`` without a checkpoint would write the
    embeddings of a randomly initialised model, so it needs one."""
    if subcommand == "predict" and not ckpt_path:
        raise InputError(
            "predict needs --ckpt_path CKPT (a checkpoint written by `zoo fit`): without one the embeddings would "
            "come from a randomly initialised model"
        )
    if not ckpt_path or not os.path.isfile(ckpt_path) or model_config is None:
        return  # a missing or unreadable file is Lightning's (or the loader's) error to report
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        saved = dict(checkpoint.get("hyper_parameters") or {})
    except Exception:
        return
    import importlib

    config = _plain(model_config)
    class_path = config.get("class_path") or ""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    saved_class = saved.get("_class_path")
    saved_method, method = checkpoint.get("zoo_method"), getattr(cls, "method_name", None)
    if (saved_class and class_path and saved_class != class_path) or (saved_method and method and saved_method != method):
        raise InputError(
            f"--ckpt_path {ckpt_path} holds a {saved_class or saved_method} but the config's model is {class_path}; use "
            "the config the checkpoint was trained with (its model section), or leave out --ckpt_path to start a new run"
        )
    from_data = set(getattr(cls, "hparams_from_data", ()))
    init_args = config.get("init_args") or {}
    differ = []
    for key, value in sorted(saved.items()):
        if key.startswith("_") or key not in init_args:
            continue
        given = init_args[key]
        if key in LINKED_FROM_DATA or (key in from_data and given is None):
            continue  # the data sets these (the CLI's links; a method's vocabulary), so the config leaves them unset
        if _plain(given) != _plain(value):
            differ.append(f"{key}: config {_short(given)} vs checkpoint {_short(value)}")
    if differ:
        raise InputError(
            f"--ckpt_path {ckpt_path} was trained with other model hyper-parameters than this config gives "
            f"({'; '.join(differ)}); {subcommand} would silently use the checkpoint's. Use the checkpoint's config "
            "(its run folder's config.yaml), or start a new run without --ckpt_path"
        )


def _short(value: Any) -> str:
    text = json.dumps(_plain(value), default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_checkpoint_classes(checkpoint: dict[str, Any], num_classes: int | None, method: str) -> None:
    """A checkpoint's online probe is sized for the classes of the data it was trained on; other data (num_classes
    linked from the datamodule) would fail deep in ``load_state_dict`` or mislabel every class."""
    saved = checkpoint.get("hyper_parameters") or {}
    if "num_classes" in saved and saved["num_classes"] != num_classes:
        raise InputError(
            f"the checkpoint's {method} was trained on data with num_classes={saved['num_classes']}, but this "
            f"datamodule has num_classes={num_classes}; use the data it was trained on (or export it with `zoo export` "
            "and fine-tune it with `zoo finetune`)"
        )
