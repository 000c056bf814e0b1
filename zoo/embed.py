"""Embeddings of a folder, a list, a table or a datamodule split with any zoo model: the logic behind ``zoo embed``.

    zoo embed --pretrained checkpoints/simclr-fashion-mnist photos/ --output photos.safetensors
    zoo embed --pretrained runs/fit/last.ckpt test --output test.parquet          # the split it was trained on

Inputs (:func:`build_input`):

- an image folder (class subfolders → labels, or flat) or a ``path[,label]`` list: decoded as
  :class:`~zoo.data.image_files.ImageFilesDataModule` decodes evaluation images (shorter side resized to
  ``size / crop_fraction``, centre ``size`` square; luma for 1-channel encoders), with the size the model takes
  (:func:`image_view`);
- a CSV / TSV / parquet table for a tabular model: preprocessed with the preprocessing fitted on the training data
  of the model's training record;
- skeleton files (a folder or file in the format the model was trained on) or an audio manifest: the model's
  training-record datamodule pointed at them (its preprocessing kept), its test split (``split`` to choose);
- a split name (``train``, ``val``, ``test``, ``knn_bank``, ``predict``) of a datamodule: the one given (a YAML
  config or a class path + init args), or the one the model was trained on, rebuilt from its training record.

An image file that cannot be decoded follows ``on_bad_file``: ``"error"`` stops naming it, ``"skip"`` leaves its
row out and lists it in the result (:attr:`Embeddings.skipped`). Other inputs are checked by their datamodules,
which stop at a bad file with one line naming it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from zoo.atomic import write_atomic
from zoo.data.base import DataError
from zoo.data.image_files import ImageFileDataset, collate_images
from zoo.downstream.pretrained import build_datamodule as rebuild_datamodule
from zoo.downstream.pretrained import datamodule_class, load_model, read_data_config  # noqa: F401  (zoo.embed's API)

SPLITS = ("train", "val", "test", "knn_bank", "predict")
FORMATS = ("safetensors", "parquet")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class EmbedInput:
    """What to embed: a loader of batches with the model's input key, the id of each dataset row (paths; None for
    rows known by number only), the class names when known, and a description of the source."""

    loader: DataLoader
    ids: list[str] | None
    source: str
    classes: list[str] | None = None
    view: dict[str, Any] = field(default_factory=dict)  # how images were preprocessed (size, crop_fraction, channels)


@dataclass
class Embeddings:
    """``embedding`` float32 [N, D]; ``index`` int64 [N] (row of the input); ``label`` int64 [N] (-1: unknown) or
    None; ``ids`` the input path of each row (None: rows by number); ``skipped`` ``"path: reason"`` of left-out
    files; ``metadata`` the rest (method, source, classes, view)."""

    embedding: Tensor
    index: Tensor
    label: Tensor | None
    ids: list[str] | None
    skipped: list[str]
    metadata: dict[str, Any]


# ---- model and device -------------------------------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device, which must be usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DataError(f"--device {name!r}: not a device name (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise DataError(f"--device {name}: this machine has {torch.cuda.device_count()} usable CUDA device(s); use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DataError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device


# ---- inputs -----------------------------------------------------------------------------------------------------------
def build_datamodule(model: Any, data: str | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """The datamodule of ``data`` (a YAML file, a class path or a dataset name) or, without it, the one in the model's
    training record; ``overrides`` replace init args (e.g. a moved ``root``). :func:`zoo.downstream.pretrained.build_datamodule`
    is the one rebuild."""
    record = model.training_record().get("data")
    if data is None and not record:
        raise DataError(
            f"{type(model).__name__} has no training record naming its data (a model not saved by zoo fit); "
            "pass --data CONFIG.yaml or an image folder / list / table as INPUT"
        )
    return rebuild_datamodule(record, data, None, **(overrides or {}))


def image_view(model: Any, image_size: int | None = None, crop_fraction: float | None = None) -> dict[str, Any]:
    """How images must be preprocessed for ``model``: ``{"size", "crop_fraction", "channels"}``.

    Size: ``image_size``, else the encoder's fixed size (ViT), else the training record's evaluation size (an image-files
    datamodule's ``eval_size``; an array datamodule's image side). ``crop_fraction``: given, else the record's, else
    1.0 for models trained on fixed-size arrays (they saw whole images), else 0.875 (256 → 224)."""
    from zoo.validation import fixed_image_size

    encoder = model.embedding_encoder()
    channels = int(getattr(encoder, "in_chans", 3))
    record = dict(model.training_record().get("data") or {})
    cls_name = record.pop("class", None)
    from_files = "eval_size" in record
    size: int | None = image_size
    fixed = fixed_image_size(encoder)
    if fixed is not None:
        if fixed[0] != fixed[1]:
            raise DataError(f"{type(model).__name__}'s encoder takes {fixed[0]}x{fixed[1]} images; zoo embed crops squares")
        if size is not None and size != fixed[0]:
            raise DataError(f"--image-size {size}: {type(model).__name__}'s encoder takes {fixed[0]}x{fixed[1]} images only")
        size = fixed[0]
    if size is None and from_files and record.get("eval_size"):
        size = int(record["eval_size"])
    if size is None and cls_name is not None and not from_files:
        try:
            shape = datamodule_class(cls_name)(**record).image_shape
            size = int(shape[-1]) if shape[-1] == shape[-2] else None
        except Exception:  # the training data is not on this machine, or the datamodule has no image_shape
            size = None
    if size is None:
        raise DataError(
            f"cannot tell the image size {type(model).__name__} expects (no fixed encoder size, no training record "
            "saying it); pass --image-size N"
        )
    if crop_fraction is None:
        crop_fraction = float(record["crop_fraction"]) if from_files and "crop_fraction" in record else (1.0 if cls_name and not from_files else 0.875)
    if not 0 < crop_fraction <= 1:
        raise DataError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    return {"size": int(size), "crop_fraction": float(crop_fraction), "channels": channels}


class LeaveOutImageDataset(ImageFileDataset):
    """:class:`ImageFileDataset` whose bad files (``on_bad_file="skip"``) come back as a ``BadSample``, which
    ``collate_images`` leaves out of the batch and lists under ``"skipped"``: their rows are missing from the output
    (the training dataset puts the next file in their place instead, to keep batches full)."""

    def __getitem__(self, index: int) -> Any:
        return self._read(index)


def image_input(paths: list[str], labels: np.ndarray, view: dict[str, Any], source: str, *, batch_size: int,
                num_workers: int, on_bad_file: str, classes: list[str] | None = None) -> EmbedInput:
    dataset = LeaveOutImageDataset(
        paths, labels, channels=view["channels"], eval_size=view["size"], crop_fraction=view["crop_fraction"],
        on_bad_file=on_bad_file,
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=collate_images)
    return EmbedInput(loader, list(paths), source, classes, view)


def _image_files_source(path: Path, labels: str) -> Any:
    from zoo.data.image_files import IMAGE_EXTENSIONS, _is_list_file, read_file_list, scan_class_folders, scan_flat_folder

    if _is_list_file(path):
        return read_file_list(path)
    mode = labels
    if mode == "auto":
        mode = "folders" if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()) else "none"
    source = scan_class_folders(path) if mode == "folders" else scan_flat_folder(path)
    if not source.paths:
        raise DataError(f"{path}: no images found (image files end with {', '.join(IMAGE_EXTENSIONS)})")
    return source


def table_input(model: Any, path: Path, *, batch_size: int, data_overrides: dict[str, Any] | None = None) -> EmbedInput:
    """Rows of a table, preprocessed as the model's training data was (the preprocessing is fitted on the train split
    of the record's data, so that data must be readable here). Labels where the table has the target column."""
    from zoo.data.tabular import TabularDataModule, read_table

    dm = build_datamodule(model, None, data_overrides)
    if not isinstance(dm, TabularDataModule):
        raise DataError(f"{type(model).__name__} was trained on {type(dm).__name__}, not a table; {path} cannot be embedded with it")
    dm.setup()
    frame = read_table(path)
    columns = dm.preprocessor.numeric + dm.preprocessor.categorical
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing feature column(s) {missing} the model was trained with; columns: {list(frame.columns)}")
    dm.preprocessor.what = str(path)  # its errors name the user's file
    features = torch.from_numpy(np.ascontiguousarray(dm.preprocessor.transform(frame), dtype=np.float32))
    batch: dict[str, Any] = {"features": features}
    classes = None
    if dm.target in frame.columns and dm.task == "classification":
        import pandas as pd

        classes = list(dm.classes)
        index = {c: i for i, c in enumerate(classes)}
        values = pd.Series(frame[dm.target]).astype(str).where(frame[dm.target].notna(), None)
        batch["label"] = torch.tensor([index.get(v, -1) for v in values], dtype=torch.int64)
    rows = [{k: v[i] for k, v in batch.items()} | {"index": i} for i in range(len(frame))]
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=torch.utils.data.default_collate)
    return EmbedInput(loader, None, str(path), classes)


def split_input(model: Any, split: str, datamodule: Any, *, view: dict[str, Any] | None, batch_size: int,
                num_workers: int, on_bad_file: str) -> EmbedInput:
    """A split of a datamodule. Image-files datamodules are read file by file (their evaluation view, this command's
    ``on_bad_file``); any other datamodule through its own loader in order."""
    from zoo.data.image_files import ImageFilesDataModule

    name = type(datamodule).__name__
    if isinstance(datamodule, ImageFilesDataModule):
        source = split if split != "predict" else ("test" if _has_split(datamodule, "test") else "train")
        paths, labels = datamodule.files(source)
        if split == "predict" and source == "train":  # as the datamodule's predict loader: every train image, in file order
            order = np.argsort(np.asarray(paths, dtype=object), kind="stable")
            paths, labels = [paths[i] for i in order], labels[order]
        dm_view = {"size": datamodule.eval_size, "crop_fraction": datamodule.crop_fraction, "channels": datamodule.channels}
        if dm_view["size"] is None:
            dm_view["size"] = (view or {}).get("size")
        return image_input(paths, labels, dm_view, f"{name} {split}", batch_size=batch_size, num_workers=num_workers,
                           on_bad_file=on_bad_file, classes=datamodule.class_names)
    datamodule.setup("predict" if split == "predict" else "test" if split == "test" else "fit")
    loader = _split_loader(datamodule, split)
    classes = getattr(datamodule, "classes", None) or getattr(datamodule, "class_names", None)
    # a dataset of files (audio clips) names each row's file; array datasets (skeletons, tables) only number them
    clips = getattr(loader.dataset, "clips", None)
    ids = [str(c.path) for c in clips] if isinstance(clips, list) and all(hasattr(c, "path") for c in clips) else None
    return EmbedInput(loader, ids, f"{name} {split}", list(classes) if isinstance(classes, (list, tuple)) else None)


def _has_split(datamodule: Any, split: str) -> bool:
    try:
        datamodule.files(split)
        return True
    except DataError:
        return False


def _split_loader(dm: Any, split: str) -> DataLoader:
    def last(loaders: Any) -> Any:
        if isinstance(loaders, (list, tuple)):
            if not loaders:
                raise DataError(f"{type(dm).__name__} has no {split} split")
            return loaders[-1]  # zoo datamodules put the kNN-bank loader first; the held-out split is last
        return loaders

    if split == "predict":
        return last(dm.predict_dataloader())
    if split in ("val", "test"):
        return last(dm.val_dataloader() if split == "val" else dm.test_dataloader())
    if split == "knn_bank":
        loaders = dm.val_dataloader()
        if not isinstance(loaders, (list, tuple)) or len(loaders) < 2:
            raise DataError(f"{type(dm).__name__} has no kNN bank (unlabelled data or knn_bank_size 0)")
        return loaders[0]
    train = dm.train_dataloader()  # the train rows, in dataset order (not the training sampler's shuffle)
    dataset = train.dataset
    if getattr(dataset, "train", None) is True:  # a dataset with random train-time windows (audio): evaluation form
        dataset = copy.copy(dataset)
        dataset.train = False
    return DataLoader(dataset, batch_size=train.batch_size or 1, shuffle=False, collate_fn=train.collate_fn,
                      num_workers=train.num_workers)


def build_input(model: Any, input: str, *, data: str | None = None, data_overrides: dict[str, Any] | None = None,
                image_size: int | None = None, crop_fraction: float | None = None, labels: str = "auto",
                split: str | None = None, batch_size: int = 64, num_workers: int = 0, on_bad_file: str = "error") -> EmbedInput:
    """What ``input`` names (see the module docstring), prepared for ``model``."""
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    if batch_size < 1 or num_workers < 0:
        raise DataError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
    path = Path(input).expanduser()
    key = type(model).input_key
    if path.exists() and data is None:
        if key == "image":
            view = image_view(model, image_size, crop_fraction)
            source = _image_files_source(path, labels)
            return image_input(source.paths, source.labels, view, str(path), batch_size=batch_size,
                               num_workers=num_workers, on_bad_file=on_bad_file, classes=source.classes)
        if key == "features" and path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            return table_input(model, path, batch_size=batch_size, data_overrides=data_overrides)
        return files_input(model, path, split, data_overrides, batch_size=batch_size, num_workers=num_workers,
                           on_bad_file=on_bad_file)
    if input not in SPLITS:
        raise DataError(f"{input}: no such file or folder, and not a split name ({', '.join(SPLITS)})")
    datamodule = build_datamodule(model, data, data_overrides)
    view = image_view(model, image_size, crop_fraction) if key == "image" and image_size else None
    return split_input(model, input, datamodule, view=view, batch_size=batch_size, num_workers=num_workers, on_bad_file=on_bad_file)


#: for each datamodule that reads its samples from a file or folder: the init args that point it at another one
#: (its preprocessing settings from the training record stay), and the split that then holds the samples in
#: evaluation form (an audio manifest given as test manifest: every clip, centre windows)
_FILE_ARGS = {
    "SkeletonDataModule": (lambda p: {"path": p}, "test"),
    "AudioTextDataModule": (lambda p: {"manifest": p, "test_manifest": p, "val_size": 0, "test_size": 0, "drop_last": False}, "test"),
}


def files_input(model: Any, path: Path, split: str | None, overrides: dict[str, Any] | None, *, batch_size: int,
                num_workers: int, on_bad_file: str) -> EmbedInput:
    """Skeleton files, an audio manifest, ...: the model's training-record datamodule pointed at ``path``."""
    record = model.training_record().get("data") or {}
    name = record.get("class")
    if name not in _FILE_ARGS:
        trained = f"trained on {name}" if name else "without a training record naming its data"
        raise DataError(
            f"{path}: {type(model).__name__} reads {type(model).input_key!r} inputs ({trained}); zoo embed reads files "
            f"directly for image models, tabular models and {', '.join(_FILE_ARGS)}; otherwise give a split name "
            "with --data CONFIG.yaml"
        )
    args, default_split = _FILE_ARGS[name]
    datamodule = build_datamodule(model, None, {**args(str(path)), **(overrides or {})})
    return split_input(model, split or default_split, datamodule, view=None, batch_size=batch_size,
                       num_workers=num_workers, on_bad_file=on_bad_file)


# ---- embedding --------------------------------------------------------------------------------------------------------
def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=True, console=Console(stderr=True))


def embed_input(model: Any, inp: EmbedInput, device: torch.device | str = "cpu", progress: bool = False) -> Embeddings:
    """Run ``model.embed`` over every batch of ``inp`` (no grad, eval mode) and collect the rows in input order."""
    device = torch.device(device)
    model = model.to(device).eval()
    embeddings, indices, labels, skipped = [], [], [], []
    has_label = True
    counter = 0
    total = len(inp.loader) if hasattr(inp.loader, "__len__") else None
    with _progress(progress) as bar, torch.inference_mode():
        task = bar.add_task("embed", total=total)
        for batch in inp.loader:
            if isinstance(batch, dict) and "skipped" in batch:
                skipped += batch.pop("skipped")
            n = _batch_size(batch, type(model).input_key)
            if n:
                out = model.embed_batch(_to_device(batch, device))
                embeddings.append(out.detach().float().cpu())
                index = batch.get("index") if isinstance(batch, dict) else None
                indices.append(torch.as_tensor(index, dtype=torch.long) if index is not None else torch.arange(counter, counter + n))
                if isinstance(batch, dict) and isinstance(batch.get("label"), Tensor) and batch["label"].dtype != torch.float32:
                    labels.append(batch["label"].long().cpu())
                else:
                    has_label = False
            counter += n
            bar.advance(task)
    if not embeddings:
        why = f"; every file was skipped ({len(skipped)})" if skipped else ""
        raise DataError(f"{inp.source}: nothing to embed{why}")
    embedding = torch.cat(embeddings)
    index = torch.cat(indices)
    label = torch.cat(labels) if has_label and labels else None
    if label is not None and bool((label < 0).all()):
        label = None  # unlabelled source (flat folder, list without labels)
    ids = [inp.ids[i] for i in index.tolist()] if inp.ids is not None else None
    skipped = list(dict.fromkeys(skipped))
    metadata = {"method": getattr(model, "method_name", type(model).__name__), "source": inp.source}
    if inp.classes:
        metadata["classes"] = list(inp.classes)
    if inp.view:
        metadata["view"] = dict(inp.view)
    return Embeddings(embedding.contiguous(), index, label, ids, skipped, metadata)


def _batch_size(batch: Any, key: str) -> int:
    value = batch.get(key) if isinstance(batch, dict) else None
    if isinstance(value, Tensor):
        return int(value.shape[0])
    if isinstance(value, (list, tuple)):
        return len(value)
    return 0


# ---- writing ----------------------------------------------------------------------------------------------------------
def output_format(path: str | Path, fmt: str | None = None) -> str:
    """``fmt`` when given, else from the suffix (``.parquet``/``.pq`` → parquet, ``.safetensors`` → safetensors)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DataError(f"unknown output format {fmt!r}; choose {' or '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".safetensors", ".st"):
        return "safetensors"
    raise DataError(f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; name it .safetensors or .parquet, or pass --format")


def _metadata(result: Embeddings) -> dict[str, str]:
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in result.metadata.items()}
    meta["skipped"] = json.dumps(result.skipped)
    if result.ids is not None:
        meta["ids"] = json.dumps(result.ids)
    return meta


def encode(result: Embeddings, fmt: str) -> bytes:
    """The file's bytes. safetensors: ``embedding`` float32 [N, D], ``index`` int64 [N], ``label`` int64 [N] when
    known; metadata ``ids`` (JSON list of input paths, row order), ``skipped``, ``method``, ``source``, ``classes``.
    parquet: columns ``id`` (paths, when the input has them), ``index``, ``label``, ``embedding`` (fixed-size list
    of float32); the same metadata in the schema's metadata."""
    if fmt == "safetensors":
        from safetensors.torch import save

        tensors = {"embedding": result.embedding.float().contiguous(), "index": result.index.contiguous()}
        if result.label is not None:
            tensors["label"] = result.label.contiguous()
        return save(tensors, metadata=_metadata(result))
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = result.embedding.shape
    flat = pa.array(result.embedding.float().numpy().reshape(-1), type=pa.float32())
    columns: dict[str, Any] = {}
    if result.ids is not None:
        columns["id"] = pa.array(result.ids, type=pa.string())
    columns["index"] = pa.array(result.index.numpy(), type=pa.int64())
    if result.label is not None:
        columns["label"] = pa.array(result.label.numpy(), type=pa.int64())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, d)
    meta = {k: v for k, v in _metadata(result).items() if k != "ids"}
    table = pa.table(columns).replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output (unless ``overwrite``) or a folder; check its folder is writable. Called before the
    model loads, so a wrong output fails in a second."""
    from zoo.atomic import check_writable

    out = Path(path).expanduser()
    if out.is_dir():
        raise DataError(f"{out} is a folder; --output names the file to write")
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; choose another --output or pass --overwrite")
    check_writable(out.resolve().parent)
    return out


def write_embeddings(result: Embeddings, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``result`` atomically (a temp file renamed over the target: never a half-written file)."""
    return write_atomic(path, encode(result, output_format(path, fmt)))


def summary(result: Embeddings, out: Path, fmt: str) -> str:
    n, d = result.embedding.shape
    labels = "" if result.label is None else " with labels"
    return f"wrote {n} embeddings of dimension {d}{labels} ({result.metadata['source']}) to {out} ({fmt})"


def skipped_warning(result: Embeddings) -> str | None:
    """One line naming the count and the first files left out, or None."""
    if not result.skipped:
        return None
    shown = "; ".join(result.skipped[:3]) + ("; ..." if len(result.skipped) > 3 else "")
    return f"skipped {len(result.skipped)} file(s) that cannot be read (listed in the output's metadata): {shown}"
