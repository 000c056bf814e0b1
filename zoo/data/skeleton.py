"""Skeleton sequences: readers for the standard formats, normalisation, and ``SkeletonDataModule``.

Formats (each split → ``float32 [N, C, T, V, M]`` + ``int64 [N]`` labels):

- ``ntu``: open-mmlab/mmskeleton's NTU RGB+D arrays, ``{split}_data[_joint].npy`` of shape (N, 3, T≤300, 25, 2),
  zero-padded, with ``{split}_label.pkl`` (a pickle of (sample names, labels)) or ``{split}_label.npy``. The test
  split may be called ``val`` (mmskeleton) or ``test``. The generator (``zoo.data.skeleton_generator``) writes this.
- ``ctrgcn``: CTR-GCN's ``NTU60_CS.npz`` layout: ``x_train`` (N, T, 150) = (T, M=2, V=25, C=3) flattened, ``y_train``
  one-hot (N, K) or indices (N,), same for ``x_test``/``y_test``.
- ``coco``: pyskl's 2-D annotation pickle: ``{"split": {"train": [...], "test"|"val"|"xsub_train"...: [...]},
  "annotations": [{"frame_dir", "label", "keypoint" (M, T, 17, 2), ...}]}``; sequences of any length.

Pickles are read with a restricted unpickler (builtins and numpy arrays only): a label file cannot run code.

Preprocessing, once at setup on the CPU (the data then sits in memory as float32):
crop the zero-padded tail, resample the valid frames linearly to ``num_frames``; keep the first ``num_persons``
persons; subtract the layout's centre joint (of person 0 in its first valid frame, so global motion such as walking
stays visible; or per frame) and divide by person 0's mean torso length. Missing joints (all coordinates 0) stay 0.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.data.base import DataError, TensorDictDataset, ZooDataModule
from zoo.nn.skeleton_layouts import SkeletonLayout, get_layout
from zoo.validation import check_labels

FORMATS = ("ntu", "ctrgcn", "coco", "generated")

# --------------------------------------------------------------------------------------------------------------------
# readers / writers
# --------------------------------------------------------------------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers, numbers, strings and numpy arrays; refuses any other global (no code runs)."""

    _ALLOWED = {
        ("builtins", name) for name in ("list", "tuple", "dict", "set", "str", "int", "float", "bool", "bytes", "slice")
    } | {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a skeleton data pickle")
        return super().find_class(module, name)


def read_pickle(path: Path) -> Any:
    try:
        return _SafeUnpickler(io.BytesIO(path.read_bytes())).load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # corrupt, truncated or disallowed content
        raise DataError(f"{path}: not a readable data pickle ({type(e).__name__}: {e})") from None


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None


def _as_labels(labels: Any, where: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim == 2:  # one-hot (CTR-GCN)
        arr = arr.argmax(1)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr))):
        raise DataError(f"{where}: expected integer labels [N] or one-hot [N, K], got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise DataError(f"{where}: labels must be non-negative, got min {arr.min()}")
    return arr


def _read_ntu_labels(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return _as_labels(_load_npy(path), str(path))
    content = read_pickle(path)
    # mmskeleton: (sample_names, labels); also accept a bare list of labels
    if isinstance(content, (tuple, list)) and len(content) == 2 and isinstance(content[0], (list, tuple, np.ndarray)):
        content = content[1]
    return _as_labels(content, str(path))


def _first_existing(directory: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: none of {', '.join(names)} found")


def read_ntu_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(data [N, C, T, V, M], labels [N])`` of an mmskeleton-layout folder; ``split`` is train or test (the test
    files may be named ``val_*``). The data stays memory-mapped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: skeleton data folder not found")
    stems = ["train"] if split == "train" else ["test", "val"]
    data_path = _first_existing(directory, [f"{s}_data{j}.npy" for s in stems for j in ("_joint", "")])
    label_path = _first_existing(directory, [f"{s}_label.{ext}" for s in stems for ext in ("pkl", "npy")])
    data = _load_npy(data_path)
    if data.ndim != 5 or data.shape[1] not in (2, 3):
        raise DataError(f"{data_path}: expected N×C×T×V×M with C in (2, 3), got shape {data.shape}")
    labels = _read_ntu_labels(label_path)
    if len(labels) != len(data):
        raise DataError(f"{data_path} holds {len(data)} samples but {label_path} holds {len(labels)} labels")
    return data, labels


def write_ntu_split(directory: str | Path, split: str, data: np.ndarray, labels: np.ndarray) -> None:
    """Write ``{split}_data.npy`` and ``{split}_label.pkl`` ((sample names, labels), mmskeleton's layout)."""
    directory = Path(directory)
    if data.ndim != 5 or len(data) != len(labels):
        raise DataError(f"write_ntu_split: data must be N×C×T×V×M with N = len(labels), got {data.shape} and {len(labels)}")
    np.save(directory / f"{split}_data.npy", np.ascontiguousarray(data, dtype=np.float32))
    names = [f"{split}{i:06d}" for i in range(len(labels))]
    with open(directory / f"{split}_label.pkl", "wb") as f:
        pickle.dump((names, [int(v) for v in labels]), f)


def read_ctrgcn_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(data [N, 3, T, 25, 2], labels [N])`` from a CTR-GCN ``.npz`` (``x_{split}`` (N, T, 150), ``y_{split}``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    with archive:
        for key in (f"x_{split}", f"y_{split}"):
            if key not in archive.files:
                raise DataError(f"{path}: missing key {key!r} (keys: {', '.join(archive.files)})")
        x, y = archive[f"x_{split}"], archive[f"y_{split}"]
    if x.ndim != 3 or x.shape[2] != 150:
        raise DataError(f"{path}: x_{split} must be (N, T, 150) = (N, T, 2 persons × 25 joints × 3), got shape {x.shape}")
    labels = _as_labels(y, f"{path}: y_{split}")
    if len(labels) != len(x):
        raise DataError(f"{path}: x_{split} holds {len(x)} samples but y_{split} holds {len(labels)} labels")
    n, t, _ = x.shape
    data = x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2)  # (N, T, M, V, C) → (N, C, T, V, M), as CTR-GCN
    return np.ascontiguousarray(data, dtype=np.float32), labels


def read_coco_split(path: str | Path, split: str, num_frames: int, num_persons: int) -> tuple[np.ndarray, np.ndarray]:
    """``(data [N, 2, num_frames, 17, num_persons], labels [N])`` from a pyskl 2-D annotation pickle; each sequence
    is resampled to ``num_frames`` here because lengths differ."""
    path = Path(path)
    content = read_pickle(path)
    if not isinstance(content, dict) or "annotations" not in content or "split" not in content:
        raise DataError(f"{path}: expected a pyskl dict with 'split' and 'annotations' keys")
    splits = content["split"]
    names = [k for k in splits if k == split or k.endswith(f"_{split}") or (split == "test" and (k == "val" or k.endswith("_val")))]
    if not names:
        raise DataError(f"{path}: no {split!r} split; splits: {', '.join(map(str, splits))}")
    wanted = set(splits[names[0]])
    data, labels = [], []
    for i, ann in enumerate(content["annotations"]):
        if ann.get("frame_dir") not in wanted:
            continue
        if "keypoint" not in ann or "label" not in ann:
            raise DataError(f"{path}: annotation {i} lacks key 'keypoint' or 'label'")
        kp = np.asarray(ann["keypoint"], dtype=np.float32)
        if kp.ndim != 4 or kp.shape[2] != 17 or kp.shape[3] < 2:
            raise DataError(f"{path}: annotation {i} ({ann.get('frame_dir')}): keypoint must be (M, T, 17, 2), got shape {kp.shape}")
        sample = np.zeros((2, kp.shape[1], 17, num_persons), dtype=np.float32)
        m = min(num_persons, kp.shape[0])
        sample[..., :m] = kp[:m, :, :, :2].transpose(3, 1, 2, 0)
        data.append(resample_frames(sample[None], num_frames)[0])
        labels.append(int(ann["label"]))
    if not data:
        raise DataError(f"{path}: split {names[0]!r} names no annotation")
    return np.stack(data), _as_labels(labels, f"{path}: labels")


# --------------------------------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------------------------------


def valid_lengths(data: np.ndarray) -> np.ndarray:
    """Frames up to the last non-zero frame of each sample of ``[N, C, T, V, M]`` (≥ 1)."""
    nonzero = np.abs(data).sum(axis=(1, 3, 4)) > 0  # [N, T]
    last = data.shape[2] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(1), last, 1)


def resample_frames(data: np.ndarray, num_frames: int) -> np.ndarray:
    """Crop each sample of ``[N, C, T, V, M]`` to its valid frames and resample them linearly to ``num_frames``.
    Interpolation never mixes a missing (all-zero) joint into a present one: the nearer frame is used there."""
    n, c, _, v, m = data.shape
    lengths = valid_lengths(data)
    pos = np.linspace(0.0, 1.0, num_frames)[None, :] * (lengths[:, None] - 1)  # [N, num_frames]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, lengths[:, None] - 1)
    w = (pos - lo)[:, None, :, None, None].astype(np.float32)

    def take(idx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(data, np.broadcast_to(idx[:, None, :, None, None], (n, c, num_frames, v, m)), axis=2)

    a, b = take(lo), take(hi)
    out = (1 - w) * a + w * b
    missing_a = np.all(a == 0, axis=1, keepdims=True)
    missing_b = np.all(b == 0, axis=1, keepdims=True)
    out = np.where(missing_a | missing_b, np.where(w < 0.5, a, b), out)
    return out.astype(np.float32)


def normalize_skeletons(data: np.ndarray, layout: SkeletonLayout, center: str = "sequence") -> np.ndarray:
    """Centre on the layout's centre joint(s) of person 0 and divide by person 0's mean torso length.

    ``center="sequence"``: subtract the centre of the first frame where it is present (keeps translation, e.g.
    walking); ``"frame"``: subtract it in every frame; ``"none"``: scale only. Missing joints stay exactly 0.
    """
    if center not in ("sequence", "frame", "none"):
        raise DataError(f"center must be 'sequence', 'frame' or 'none', got {center!r}")
    x = data.astype(np.float32, copy=True)
    present = np.any(x != 0, axis=1, keepdims=True)  # [N, 1, T, V, M]
    p0, pres0 = x[..., 0], present[..., 0]  # person 0: [N, C, T, V]

    def mean_of(joints: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        sel, ok = p0[:, :, :, list(joints)], pres0[:, :, :, list(joints)]
        count = ok.sum(-1)
        return (sel * ok).sum(-1) / np.maximum(count, 1), count[:, 0] == len(joints)  # [N, C, T], [N, T]

    centre, centre_ok = mean_of(layout.center)
    if center == "frame":
        offset = np.where(centre_ok[:, None, :], centre, 0.0)[:, :, :, None, None]
    elif center == "sequence":
        first = np.argmax(centre_ok, axis=1)  # first frame with the centre present (0 if never)
        offset = np.take_along_axis(centre, first[:, None, None].repeat(x.shape[1], 1), axis=2)[:, :, :, None, None]
    else:
        offset = np.zeros((x.shape[0], x.shape[1], 1, 1, 1), dtype=np.float32)
    top, top_ok = mean_of(layout.scale_from)
    bottom, bottom_ok = mean_of(layout.scale_to)
    length = np.linalg.norm(top - bottom, axis=1)  # [N, T]
    ok = top_ok & bottom_ok & (length > 0)
    scale = np.where(ok.any(1), (length * ok).sum(1) / np.maximum(ok.sum(1), 1), 1.0)  # [N]
    x = (x - offset) / scale[:, None, None, None, None]
    return np.where(present, x, 0.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Dataset and DataModule
# --------------------------------------------------------------------------------------------------------------------


class SkeletonTensorDataset(TensorDictDataset):
    """In-memory skeletons ``float32 [N, C, T, V, M]`` and labels ``int64 [N]``; whole batches via ``__getitems__``."""

    def __init__(self, skeletons: Tensor, labels: Tensor) -> None:
        if skeletons.ndim != 5 or labels.shape != (skeletons.shape[0],):
            raise DataError(f"skeletons must be [N, C, T, V, M] with labels [N], got {tuple(skeletons.shape)} and {tuple(labels.shape)}")
        super().__init__({"skeleton": skeletons, "label": labels.long()})

    @property
    def skeletons(self) -> Tensor:
        return self.tensors["skeleton"]

    @property
    def labels(self) -> Tensor:
        return self.tensors["label"]


class SkeletonDataModule(ZooDataModule):
    """Skeleton action data (NTU arrays, CTR-GCN npz, pyskl COCO-17 pickles, or generated actions) in memory.

    Batches: ``{"skeleton": float32 [B, C, num_frames, V, num_persons], "label": int64 [B]}``, normalised as the
    module docstring says. Splits: ``val_size`` samples held out of the train split by a seeded permutation;
    ``knn_bank`` is the first ``knn_bank_size`` of ``train``; ``test`` is the test split. Loader contract of
    :class:`~zoo.data.base.ZooDataModule`.

    Args:
        data_format: ``"ntu"`` (folder), ``"ctrgcn"`` (.npz file), ``"coco"`` (pyskl .pkl file) or ``"generated"``
            (the folder written by ``zoo data build skeleton-actions``; NTU layout, read as ``"ntu"``).
        path: the folder or file.
        layout: ``"ntu25"`` or ``"coco17"`` (the ``coco`` format implies ``coco17``).
        num_frames: T after cropping the zero padding and resampling (SkeletonMAE: 64).
        num_persons: persons kept (≤ 2 in NTU).
        center: ``"sequence"`` / ``"frame"`` / ``"none"`` (see :func:`normalize_skeletons`).
        batch_size, num_workers, val_size, knn_bank_size, train_subset, seed, drop_last: as ImageDataModule.
    """

    def __init__(
        self,
        path: str,
        data_format: str = "ntu",
        layout: str = "ntu25",
        num_frames: int = 64,
        num_persons: int = 2,
        center: str = "sequence",
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 500,
        knn_bank_size: int = 5000,
        train_subset: int | None = None,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if data_format not in FORMATS:
            raise DataError(f"unknown skeleton data_format {data_format!r}; valid: {', '.join(FORMATS)}")
        try:
            self.layout = get_layout("coco17" if data_format == "coco" else layout)
        except ValueError as e:
            raise DataError(str(e)) from None
        if data_format in ("ntu", "generated", "ctrgcn") and self.layout.name != "ntu25":
            raise DataError(f"data_format={data_format!r} holds NTU-25 skeletons; layout={layout!r} does not fit")
        for arg, value, minimum in (
            ("num_frames", num_frames, 2), ("num_persons", num_persons, 1), ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0), ("val_size", val_size, 0), ("knn_bank_size", knn_bank_size, 0),
        ):  # fmt: skip
            if int(value) != value or value < minimum:
                raise DataError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        if center not in ("sequence", "frame", "none"):
            raise DataError(f"center must be 'sequence', 'frame' or 'none', got {center!r}")
        self.path = Path(path).expanduser()
        self.data_format = data_format
        self.num_frames, self.num_persons, self.center = int(num_frames), int(num_persons), center
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.val_size, self.knn_bank_size = int(val_size), int(knn_bank_size)
        self.train_subset, self.seed, self.drop_last = train_subset, int(seed), bool(drop_last)
        self._datasets: dict[str, SkeletonTensorDataset] | None = None
        self._num_classes: int | None = None

    # ---- metadata ---------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Max label + 1 over train and test (reads the labels when not set up)."""
        if self._num_classes is None:
            labels = [self._read(split)[1] for split in ("train", "test")] if self._datasets is None else [
                ds.labels.numpy() for ds in self._datasets.values()
            ]
            self._num_classes = int(max(int(lab.max(initial=0)) for lab in labels) + 1)
        return self._num_classes

    @property
    def class_names(self) -> list[str] | None:
        """From ``classes.json`` next to the data (the generator writes one), else None."""
        folder = self.path if self.path.is_dir() else self.path.parent
        names = folder / "classes.json"
        return json.loads(names.read_text()) if names.is_file() else None

    # ---- reading ----------------------------------------------------------------------------------------------
    def _read(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(data [N, C, T, V, M], labels)`` of ``train`` / ``test``, before preprocessing."""
        if self.data_format in ("ntu", "generated"):
            data, labels = read_ntu_split(self.path, split)
        elif self.data_format == "ctrgcn":
            data, labels = read_ctrgcn_split(self.path, split)
        else:
            return read_coco_split(self.path, split, self.num_frames, self.num_persons)
        if data.shape[3] != self.layout.num_joints:
            raise DataError(f"{self.path}: {split} data has V={data.shape[3]} joints, layout {self.layout.name} has {self.layout.num_joints}")
        return data, labels

    def prepare(self, data: np.ndarray) -> np.ndarray:
        """Persons, temporal crop/resample and normalisation of raw ``[N, C, T, V, M]`` (chunked: memory-mapped
        NTU arrays are 300 frames long)."""
        out = []
        for start in range(0, len(data), 1024):
            chunk = np.asarray(data[start : start + 1024, :, :, :, : self.num_persons], dtype=np.float32)
            if chunk.shape[-1] < self.num_persons:
                chunk = np.concatenate([chunk, np.zeros((*chunk.shape[:-1], self.num_persons - chunk.shape[-1]), np.float32)], -1)
            if chunk.shape[2] != self.num_frames or self.data_format != "coco":
                chunk = resample_frames(chunk, self.num_frames)
            out.append(normalize_skeletons(chunk, self.layout, self.center))
        return np.concatenate(out) if out else np.zeros((0, self.layout.channels, self.num_frames, self.layout.num_joints, self.num_persons), np.float32)

    def setup(self, stage: str | None = None) -> None:
        if self._datasets is not None:
            return
        train_raw, train_labels = self._read("train")
        test_raw, test_labels = self._read("test")
        for split, labels in (("train", train_labels), ("test", test_labels)):
            check_labels(labels, None, f"{self.path} ({split} labels)")  # integers >= 0: num_classes is max + 1
        n = len(train_raw)
        if self.val_size >= n:
            raise DataError(f"val_size={self.val_size} must be smaller than the {n} training samples in {self.path}")
        perm = np.random.default_rng(self.seed).permutation(n)
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        if self.train_subset is not None:
            train_idx = train_idx[: int(self.train_subset)]
        prepared = {"train": self.prepare(train_raw), "test": self.prepare(test_raw)}
        for split, data in prepared.items():  # a NaN joint would make every loss and embedding of its batch NaN
            bad = np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(axis=1))
            if bad.size:
                raise DataError(f"{self.path}: {split} sample {int(bad[0])} holds NaN or infinite coordinates ({bad.size} sample(s) in all)")
        train_all = torch.from_numpy(prepared["train"])
        labels_all = torch.from_numpy(train_labels)
        train_t, val_t = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
        datasets = {
            "train": SkeletonTensorDataset(train_all[train_t], labels_all[train_t]),
            "val": SkeletonTensorDataset(train_all[val_t], labels_all[val_t]),
            "test": SkeletonTensorDataset(torch.from_numpy(prepared["test"]), torch.from_numpy(test_labels)),
        }
        datasets["knn_bank"] = datasets["train"].head(self.knn_bank_size)
        self._datasets = datasets

    def dataset(self, split: str) -> SkeletonTensorDataset:
        """The preprocessed ``train`` / ``val`` / ``test`` / ``knn_bank`` split (sets up on first use)."""
        return self.split_dataset(split, train=split == "train")  # type: ignore[return-value]

    # ---- loaders: ZooDataModule's ---------------------------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        return {"val": self.val_size > 0, "knn_bank": self.knn_bank_size > 0}.get(split, True)
