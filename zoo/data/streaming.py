"""Streaming image shards for many machines, through litdata (Lightning's streaming data engine; ``pip install
'zoo-ssl[stream]'``).

``zoo data optimize SOURCE OUT`` (:func:`optimize_images`) writes litdata shards with ``litdata.optimize``: each
sample is ``{"image": the encoded image bytes, "label": int (-1 unlabelled), "index": int}``. SOURCE is an image
folder (one subfolder per class, or flat), a ``path[,label]`` list file, or a zoo dataset name (``cifar10``,
``stl10``, ``fashion-mnist``, ...) read from ``--data-dir``; array datasets are stored as lossless PNG.

:class:`StreamingImageDataModule` reads shards with litdata's ``StreamingDataset`` / ``StreamingDataLoader`` from a
local folder or any URL litdata supports (``s3://``, ``gs://``, ``azure://``, ``hf://``, ...). litdata deals the
chunks out to ranks and workers, so an epoch visits every sample at most once across all ranks and nodes (exactly
once when the sample count is a multiple of world size × batch size; otherwise litdata drops the remainder so that
every rank runs the same number of steps). Workers decode with :func:`zoo.data.image_files.decode_image` and batches
are collated by :func:`zoo.data.image_files.collate_images`. The loader's position is saved in every checkpoint
(:meth:`StreamingImageDataModule.state_dict`), so a run resumed mid-epoch continues the interrupted epoch's order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from zoo.data.base import DataError, ZooDataModule
from zoo.data.image_files import collate_images, decode_image, eval_view

CLASSES_FILE = "classes.json"  # written beside litdata's index.json: class names, for num_classes
_INSTALL = "litdata is not installed; install the streaming extra: pip install 'zoo-ssl[stream]' (or pip install litdata)"


def _litdata() -> Any:
    try:
        import litdata
    except ImportError:
        raise DataError(_INSTALL) from None
    return litdata


def _is_url(path: str) -> bool:
    return "://" in path


# --------------------------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ImageSource:
    """What ``zoo data optimize`` reads: files (``paths``) or in-memory uint8 arrays (``arrays``), with labels."""

    labels: np.ndarray  # int64 [N], -1 where unlabelled
    classes: list[str] | None
    paths: list[Path] | None = None
    arrays: np.ndarray | None = None  # uint8 [N, C, H, W] (C = 1 or 3)
    ignored: int = 0  # non-image files skipped while scanning a folder

    def __len__(self) -> int:
        return len(self.labels)


def file_source(path: str | Path, root: str | None = None) -> ImageSource:
    """A folder (class subfolders: labelled by the sorted names; flat: unlabelled) or a ``path[,label]`` list file,
    read by :mod:`zoo.data.image_files`' scanners."""
    from zoo.data.image_files import read_file_list, scan_class_folders, scan_flat_folder

    path = Path(path).expanduser()
    if path.is_dir():
        has_classes = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))
        found = scan_class_folders(path) if has_classes else scan_flat_folder(path)
        if not found.paths:
            raise DataError(f"{path}: no image files in the folder ({len(found.ignored)} other files)")
    else:
        found = read_file_list(path, root)
    return ImageSource(
        labels=found.labels, classes=found.classes, paths=[Path(p) for p in found.paths], ignored=len(found.ignored)
    )


def dataset_source(name: str, data_dir: str | None, split: str) -> ImageSource:
    """The ``split`` (``train`` | ``test``; ``stl10-unlabeled``'s ``train`` is ``unlabeled_X.bin``) of a zoo
    in-memory dataset, in file order."""
    from zoo.data.images import ImageDataModule, load_digits_dataset, load_idx_dataset
    from zoo.data.rgb_sets import CIFAR_LAYOUTS, load_cifar, load_stl10

    dm = ImageDataModule(dataset=name, data_dir=data_dir, val_size=0)  # validates the name and data_dir
    if split not in ("train", "test"):
        raise DataError(f"split must be train or test, got {split!r}")
    if dm.dataset in CIFAR_LAYOUTS:
        images, labels = load_cifar(dm.dataset, str(dm.data_dir))[split]
    elif dm.dataset.startswith("stl10"):
        unlabeled = dm.dataset == "stl10-unlabeled" and split == "train"
        raw = load_stl10(str(dm.data_dir), unlabeled=unlabeled)
        images, labels = (raw["unlabeled"], np.full(len(raw["unlabeled"]), -1, np.int64)) if unlabeled else raw[split]
    else:
        raw = load_digits_dataset() if dm.dataset == "digits" else load_idx_dataset(str(dm.data_dir))
        images, labels = raw[split]
        images = images[:, None]
    classes = dm.class_names
    return ImageSource(labels=np.asarray(labels, np.int64), classes=classes, arrays=images)


def resolve_source(source: str, data_dir: str | None = None, split: str = "train", root: str | None = None) -> ImageSource:
    """SOURCE of ``zoo data optimize``: a folder, a list file, or a zoo dataset name."""
    from zoo.data.images import ImageDataModule

    path = Path(source).expanduser()
    if path.is_dir() or path.is_file():
        return file_source(path, root)
    if source.lower().replace("_", "-") in ImageDataModule.DATASETS:
        return dataset_source(source, data_dir, split)
    raise DataError(
        f"{source}: not a folder, a list file, or a dataset name ({', '.join(ImageDataModule.DATASETS)})"
    )


# --------------------------------------------------------------------------------------------------------------------
# writing shards
# --------------------------------------------------------------------------------------------------------------------


def _decode_problem(path: Path) -> str | None:
    try:
        decode_image(path.read_bytes(), source=str(path))
    except (DataError, OSError) as e:
        return str(e)
    return None


def check_files(source: ImageSource, num_workers: int = 1, on_bad_file: str = "error") -> tuple[ImageSource, list[str]]:
    """Decode every file of ``source`` (``num_workers`` processes). ``error``: the first bad file raises, named;
    ``skip``: returns the source without the bad files and their ``"path: why"`` lines."""
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"on_bad_file must be error or skip, got {on_bad_file!r}")
    if source.paths is None:
        return source, []
    if num_workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork" if os.name == "posix" else None).Pool(num_workers) as pool:
            problems = pool.map(_decode_problem, source.paths, chunksize=64)
    else:
        problems = [_decode_problem(p) for p in source.paths]
    bad = [i for i, problem in enumerate(problems) if problem is not None]
    if bad and on_bad_file == "error":
        raise DataError(f"{problems[bad[0]]} ({len(bad)} bad files in all; --on-bad-file skip leaves them out)")
    keep = np.setdiff1d(np.arange(len(source)), bad)
    kept = ImageSource(
        labels=source.labels[keep], classes=source.classes, paths=[source.paths[i] for i in keep], ignored=source.ignored
    )
    return kept, [problems[i] for i in bad]  # type: ignore[misc]


class _EncodeSample:
    """litdata's ``fn``: source item ``i`` → ``{"image": bytes, "label", "index"}`` (files as stored, arrays as PNG)."""

    def __init__(self, source: ImageSource) -> None:
        self.source = source

    def __call__(self, i: int) -> dict[str, Any]:
        source = self.source
        if source.arrays is not None:
            import torch
            from torchvision.io import encode_png

            data = encode_png(torch.from_numpy(np.ascontiguousarray(source.arrays[i]))).numpy().tobytes()
        else:
            data = source.paths[i].read_bytes()
        return {"image": data, "label": int(source.labels[i]), "index": int(i)}


def check_output_dir(output_dir: str) -> Path:
    """A local ``output_dir`` as an absolute path, if it does not exist or is empty (URLs: ``Path(output_dir)``)."""
    out = Path(output_dir).expanduser().absolute()
    if not _is_url(output_dir) and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not empty; give a new folder (nothing was written)")
    return out


def optimize_images(source: ImageSource, output_dir: str, num_workers: int = 1, chunk_bytes: str = "64MB") -> str:
    """Write ``source`` as litdata shards into ``output_dir`` (a new local folder, or a URL litdata can write).

    Check the files first (:func:`check_files`): a file that fails to decode inside litdata's workers stops the run
    with litdata's traceback. A local ``output_dir`` must not exist or be empty: the shards are written into a
    temporary sibling folder and moved into place when complete, so a failed run leaves nothing half-written and
    never touches existing files.
    """
    litdata = _litdata()
    if len(source) == 0:
        raise DataError("the source holds no images")
    fn = _EncodeSample(source)
    kwargs = dict(
        fn=fn, inputs=list(range(len(source))), chunk_bytes=chunk_bytes, num_workers=max(1, num_workers),
        reorder_files=False, start_method="fork" if os.name == "posix" else None, verbose=False,
    )  # fmt: skip
    if _is_url(output_dir):
        litdata.optimize(output_dir=output_dir, **kwargs)
        return output_dir
    out = check_output_dir(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        litdata.optimize(output_dir=str(tmp), **kwargs)
        (tmp / CLASSES_FILE).write_text(json.dumps({"classes": source.classes, "num_samples": len(source)}))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return str(out)


# --------------------------------------------------------------------------------------------------------------------
# reading shards
# --------------------------------------------------------------------------------------------------------------------


class _DecodeSample:
    """Runs in the loader workers: the stored bytes → ``uint8 [3, H, W]`` (longer side <= ``max_side``), or for
    evaluation the central ``eval_size`` square after resizing the shorter side to ``eval_size / crop_fraction``
    (the evaluation view of :class:`~zoo.data.image_files.ImageFileDataset`)."""

    def __init__(self, where: str, max_side: int | None, eval_size: int | None = None, crop_fraction: float = 0.875) -> None:
        self.where = where
        self.max_side = max_side
        self.eval_size = eval_size
        self.crop_fraction = crop_fraction

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        index = int(sample["index"])
        max_side = None if self.eval_size else self.max_side
        image = decode_image(sample["image"], source=f"{self.where} sample {index}", max_side=max_side)
        if self.eval_size:
            image = eval_view(image, self.eval_size, self.crop_fraction)
        return {"image": image, "label": int(sample["label"]), "index": index}


class _FirstSamples(Dataset):
    """The first ``n`` samples of a streaming dataset, by index (the kNN bank: the same samples every epoch)."""

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset = dataset
        self.n = min(n, len(dataset))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


_LOADER_CLASS: Any = None


def _loader_class() -> Any:
    """litdata's ``StreamingDataLoader``, made to resume only the epoch it was resumed in (built on first use: litdata
    is an optional dependency)."""
    global _LOADER_CLASS
    if _LOADER_CLASS is None:

        class ZooStreamingDataLoader(_litdata().StreamingDataLoader):
            # litdata clears its `restore` flag only when an epoch's iterator runs to its end; the trainer stops
            # iterating after the epoch's last batch, so without this the epoch after a resumed one would replay the
            # resumed position instead of starting a new shuffle
            _resume_pending = False

            def load_state_dict(self, obj: dict[str, Any]) -> None:
                super().load_state_dict(obj)
                self._resume_pending = self.restore

            def __iter__(self) -> Any:
                if self.restore and not self._resume_pending:
                    self.restore = False
                self._resume_pending = False
                return super().__iter__()

        _LOADER_CLASS = ZooStreamingDataLoader
    return _LOADER_CLASS


class StreamingImageDataModule(ZooDataModule):
    """Train on litdata image shards written by ``zoo data optimize``, from a local folder or a URL.

    Batches: ``{"image": uint8 [B, 3, Hmax, Wmax]`` zero-padded, ``"image_size": int64 [B, 2]`` valid ``(h, w)``,
    ``"label": int64 [B]`` (-1 unlabelled), ``"index": int64 [B]}`` (:func:`~zoo.data.image_files.collate_images`).

    The train order of epoch e is litdata's shuffle of ``(seed, e)`` dealt out to the ranks and workers; the
    loader's position (litdata's state dict, counted in batches the trainer has processed) is saved in every
    checkpoint. Validation/test come from ``val_dir`` / ``test_dir`` shards when given (unshuffled, every sample,
    each image resized and centre-cropped to ``eval_size`` in the workers); with labels, the first ``knn_bank_size``
    train samples fill the kNN bank (``[knn_bank_loader, eval_loader]``, as every zoo datamodule).

    Args:
        train_dir: shards of the train split (a folder or a URL such as ``s3://bucket/train``).
        val_dir, test_dir: optional shards of the evaluation splits.
        batch_size: per-rank batch size.
        num_workers: loader workers per rank (they decode).
        max_side: bound on the train image's longer side after decoding (aspect kept; None keeps it).
        eval_size: side of the evaluation images (shorter side resized to ``eval_size / crop_fraction``, centre crop).
        crop_fraction: evaluation centre-crop fraction (0.875: 256 → 224).
        knn_bank_size: train samples in the kNN bank loader (0: none; also none when the shards are unlabelled).
        seed: seed of litdata's shuffle.
        shuffle: shuffle the train split each epoch.
        drop_last: every rank gets the same number of full batches (needed by DDP; litdata drops the remainder).
        num_labels: number of label classes (default: from the ``classes.json`` that ``zoo data optimize`` writes
            beside a local ``train_dir``; give it for a URL). Not ``num_classes``: that name is the method's, linked
            from :attr:`num_classes`.
        cache_dir: where litdata caches chunks of a remote dataset (default: litdata's).
        max_cache_size: litdata's cache budget, e.g. ``"50GB"``.
    """

    collate_fn = staticmethod(collate_images)

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        test_dir: str | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        max_side: int | None = 512,
        eval_size: int | None = 224,
        crop_fraction: float = 0.875,
        knn_bank_size: int = 10000,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_labels: int | None = None,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _litdata()
        for arg, value, minimum in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("knn_bank_size", knn_bank_size, 0)):
            if int(value) != value or value < minimum:
                raise DataError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        for arg, value in (("max_side", max_side), ("eval_size", eval_size)):
            if value is not None and (int(value) != value or value < 1):
                raise DataError(f"{arg} must be None or an integer >= 1, got {value!r}")
        if not 0 < crop_fraction <= 1:
            raise DataError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        for arg, where in (("train_dir", train_dir), ("val_dir", val_dir), ("test_dir", test_dir)):
            if where is not None and not _is_url(where) and not (Path(where).expanduser() / "index.json").is_file():
                raise DataError(
                    f"{arg}={where}: no litdata index.json there; write shards with `zoo data optimize SOURCE {where}`"
                )
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.max_side = max_side
        self.eval_size = eval_size
        self.crop_fraction = float(crop_fraction)
        self.knn_bank_size = int(knn_bank_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        if num_labels is not None and (int(num_labels) != num_labels or num_labels < 1):
            raise DataError(f"num_labels must be None or an integer >= 1, got {num_labels!r}")
        self._num_classes = num_labels
        self._train_loader: Any = None
        self._loader_state: dict[str, Any] | None = None  # from a checkpoint, for the next train loader

    @property
    def num_classes(self) -> int | None:
        if self._num_classes is None and not _is_url(self.train_dir):
            meta = Path(self.train_dir).expanduser() / CLASSES_FILE
            if meta.is_file():
                classes = json.loads(meta.read_text()).get("classes")
                self._num_classes = len(classes) if classes else None
        return self._num_classes

    def _dataset(self, where: str, shuffle: bool, drop_last: bool, train: bool = True) -> Any:
        litdata = _litdata()
        kwargs: dict[str, Any] = {}
        if self.cache_dir is not None:
            kwargs["cache_dir"] = self.cache_dir
        if self.max_cache_size is not None:
            kwargs["max_cache_size"] = self.max_cache_size
        return litdata.StreamingDataset(
            where, shuffle=shuffle, drop_last=drop_last, seed=self.seed,
            transform=_DecodeSample(where, self.max_side, None if train else self.eval_size, self.crop_fraction), **kwargs,
        )  # fmt: skip

    def make_loader(self, dataset: Any, **kwargs: Any) -> Any:
        if isinstance(dataset, _FirstSamples):  # the kNN bank: a plain, map-style dataset
            return super().make_loader(dataset, persistent_workers=False, **kwargs)
        return _loader_class()(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collate_fn,
            persistent_workers=False, drop_last=self.drop_last and dataset.shuffle,
        )  # fmt: skip

    def train_dataloader(self) -> Any:
        """litdata's loader over ``train_dir``, continuing a checkpoint's position when one was loaded."""
        # built here, after the process group exists: litdata reads the world size and rank when it is created
        loader = self.make_loader(self.split_dataset("train", train=True))
        if self._loader_state is not None:
            loader.load_state_dict(self._loader_state)
            self._loader_state = None
        self._train_loader = loader
        return loader

    def split_dataset(self, split: str, train: bool) -> Any:
        """The train shards as litdata shuffles them (``train=True``), or unshuffled, evaluation-sized shards of
        ``split``; the kNN bank is the first ``knn_bank_size`` train samples."""
        if split == "knn_bank":
            return _FirstSamples(self._dataset(self.train_dir, shuffle=False, drop_last=False, train=False), self.knn_bank_size)
        where = {"train": self.train_dir, "val": self.val_dir, "test": self.test_dir}.get(split)
        if where is None:
            raise DataError(f"no {split!r} shards: give {split}_dir=" if split in ("val", "test") else f"unknown split {split!r}; valid splits: train, val, test, knn_bank")
        if train:
            return self._dataset(where, self.shuffle, self.drop_last)
        return self._dataset(where, shuffle=False, drop_last=False, train=False)

    def has_split(self, split: str) -> bool:
        if split == "knn_bank":
            return self.knn_bank_size > 0 and self.num_classes is not None
        return {"val": self.val_dir, "test": self.test_dir}.get(split, self.train_dir) is not None

    def predict_split(self) -> str:
        """The test shards, or the train shards when there are none."""
        return "test" if self.test_dir is not None else "train"

    # ---------------------------------------------------------------------------------------------------------------
    # resume

    def state_dict(self) -> dict[str, Any]:
        """litdata's state of the train loader, at the batches the trainer has trained on."""
        if self._train_loader is None or (self.trainer is not None and self.trainer.state.fn != "fit"):
            return {}
        loader = self._train_loader
        if self.trainer is None:
            return {"streaming_train": loader.state_dict()}
        # The trainer fetches one batch ahead, so the loader has yielded a batch that was not trained on yet: the
        # state is rebuilt at the processed count (what litdata writes after exactly that many batches)
        processed = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        workers = max(1, loader.num_workers)
        if processed >= self.trainer.num_training_batches:  # a finished epoch: the next one starts afresh
            processed = 0
        state = loader.state_dict()
        samples = processed * self.batch_size
        state["dataset"] = loader.dataset.state_dict(samples, loader.num_workers, self.batch_size)
        state["num_samples_yielded"] = samples
        state["latest_worker_idx"] = (processed - 1) % workers
        return {"streaming_train": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loader_state = state_dict.get("streaming_train")
