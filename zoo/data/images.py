"""Fixed-size image datasets held in memory: IDX files (Fashion-MNIST, MNIST, KMNIST, ...), sklearn digits, and the
standard RGB sets CIFAR-10/100 and STL-10 (:mod:`zoo.data.rgb_sets`).

Samples are raw ``uint8`` images; augmentation and float conversion happen on the device (see
:class:`zoo.data.base.ZooDataModule`). Nothing is downloaded: IDX, CIFAR and STL-10 files are read from disk,
``digits`` ships with scikit-learn.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from zoo.data.base import DataError, TensorDictDataset, ZooDataModule
from zoo.data.pseudo_labels import PseudoClassBatchSampler, PseudoLabelConfig, cached_pseudo_labels, resolve_pseudo_label_config
from zoo.data.rgb_sets import CIFAR_LAYOUTS, cifar_class_names, load_cifar, load_stl10, stl10_class_names
from zoo.validation import check_labels

# --------------------------------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------------------------------

# IDX dtype code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# numpy kind+itemsize -> IDX dtype code
_IDX_CODES: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's (decompressed) content and whether it was gzip-compressed (sniffed from its first bytes)."""
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    if not compressed:
        return path.read_bytes(), False
    try:
        with gzip.open(path, "rb") as f:
            return f.read(), True
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from None


def _parse_idx_header(path: Path, raw: bytes, compressed: bool) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the IDX header of ``raw``; returns (big-endian dtype, shape, header length in bytes)."""
    what = "decompressed file" if compressed else "file"
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file: the {what} holds only {len(raw)} bytes, fewer than the 4-byte magic")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: not an IDX file: bad magic {raw[:4].hex(' ')} (an IDX file starts with two zero bytes, "
            "a dtype code and the number of dimensions)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({_IDX_DTYPES[c].name})" for c in _IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X}; known codes: {known}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimensions need a {header_len}-byte header but the {what} holds "
            f"{len(raw)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[code], shape, header_len


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    Raises ``ValueError`` naming the file and the problem for a bad magic number, an unknown dtype code, or a data
    section shorter or longer than the header's shape says.
    """
    path = Path(path)
    raw, compressed = _read_bytes(path)
    dtype, shape, header_len = _parse_idx_header(path, raw, compressed)
    count = math.prod(shape)
    expected = count * dtype.itemsize
    have = len(raw) - header_len
    if have != expected:
        dims = "×".join(str(d) for d in shape)
        says = f"{dims} = {count} values" if len(shape) > 1 else f"{count} values"
        problem = "truncated" if have < expected else "extra trailing bytes"
        what = "decompressed file" if compressed else "file"
        raise DataError(
            f"{path}: {problem}: header says {says} ({dtype.name}, {expected} bytes) but the {what} holds "
            f"{have} data bytes after the {header_len}-byte header ({have / dtype.itemsize:g} values)"
        )
    if dtype.itemsize == 1:  # no byte swap needed: a writable view onto a private buffer, no copy
        return np.frombuffer(bytearray(raw), dtype=dtype, count=count, offset=header_len).reshape(shape)
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header_len).astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """(native-endian dtype, shape) from an IDX file's header, without reading the data section."""
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            head += f.read(4 * head[3]) if len(head) == 4 else b""
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    dtype, shape, _ = _parse_idx_header(path, head, compressed)
    return dtype.newbyteorder("="), shape


def write_idx(path: str | Path, array: Any) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (cast others first, e.g. int64 labels to uint8).
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _IDX_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None or arr.dtype.kind == "b":
        raise DataError(
            f"write_idx({path}): dtype {arr.dtype} has no IDX code; cast to one of uint8, int8, int16, int32, "
            "float32, float64 first"
        )
    if arr.ndim > 255 or any(d >= 2**32 for d in arr.shape):
        raise DataError(f"write_idx({path}): shape {arr.shape} does not fit an IDX header (<= 255 dims < 2**32)")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb", compresslevel=6) as f:
            f.write(header)
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(header)
            f.write(data)


# --------------------------------------------------------------------------------------------------------------------
# IDX dataset folders (MNIST layout)
# --------------------------------------------------------------------------------------------------------------------

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_HOW_TO_GET = (
    "install with `apt-get install dataset-fashion-mnist` (Debian; it provides " + FASHION_MNIST_DIR + ") or pass "
    "data_dir= a folder holding the four IDX files (MNIST/KMNIST work the same)"
)


def find_idx_files(data_dir: str | Path) -> dict[str, tuple[Path, Path]]:
    """Paths of the (images, labels) IDX files per split in ``data_dir``, each with or without ``.gz``.

    Raises one ``FileNotFoundError`` listing every missing file and how to get them.
    """
    data_dir = Path(data_dir).expanduser()
    wanted = [name for pair in IDX_FILES.values() for name in pair]
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"IDX dataset directory {data_dir} does not exist (it should hold {', '.join(wanted)}, each optionally "
            f".gz); {_HOW_TO_GET}"
        )
    found: dict[str, Path] = {}
    for name in wanted:  # prefer the uncompressed file when both exist: faster to read
        for candidate in (data_dir / name, data_dir / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    missing = [name for name in wanted if name not in found]
    if missing:
        raise FileNotFoundError(
            f"IDX dataset directory {data_dir} lacks {', '.join(f'{m}[.gz]' for m in missing)}; {_HOW_TO_GET}"
        )
    return {split: (found[img], found[lab]) for split, (img, lab) in IDX_FILES.items()}


def _read_labels(path: Path) -> np.ndarray:
    labels = read_idx(path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: expected 1-D integer labels, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: labels must be non-negative, got min {labels.min()}")
    return labels.astype(np.int64)


def load_idx_dataset(data_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load an MNIST-layout IDX folder: ``{"train": (images, labels), "test": (images, labels)}``.

    Images are ``uint8 [N, H, W]``, labels ``int64 [N]``. Looks for ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (img_path, lab_path) in find_idx_files(data_dir).items():
        images = read_idx(img_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{img_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
        labels = _read_labels(lab_path)
        if len(images) != len(labels):
            raise DataError(
                f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; the counts must match"
            )
        out[split] = (images, labels)
    return out


def load_digits_dataset(test_fraction: float = 0.2, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8×8 digits (1,797 images, 0..16 scaled to uint8 0..255) with a seeded, stratified test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


# --------------------------------------------------------------------------------------------------------------------
# Dataset and DataModule
# --------------------------------------------------------------------------------------------------------------------


class ImageTensorDataset(TensorDictDataset):
    """In-memory images (``uint8 [N, C, H, W]``, any strides) and labels (``int64 [N]``); samples are dicts.

    ``labels=None`` (an unlabelled split such as STL-10's) gives samples without a ``"label"`` key, so nothing
    downstream trains or scores on made-up labels.
    """

    def __init__(self, images: Tensor, labels: Tensor | None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise DataError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels is not None and labels.shape != (images.shape[0],):
            raise DataError(f"labels must be [N={images.shape[0]}], got {tuple(labels.shape)}")
        super().__init__({"image": images} if labels is None else {"image": images, "label": labels.long()})

    @property
    def images(self) -> Tensor:
        return self.tensors["image"]

    @property
    def labels(self) -> Tensor | None:
        return self.tensors.get("label")


def _nchw(images: np.ndarray) -> Tensor:
    """uint8 ``[N, H, W]`` (grayscale) or ``[N, C, H, W]`` as a ``[N, C, H, W]`` tensor sharing memory when it can."""
    array = np.ascontiguousarray(images)
    return torch.from_numpy(array).unsqueeze(1) if array.ndim == 3 else torch.from_numpy(array)


class ImageDataModule(ZooDataModule):
    """Fashion-MNIST / MNIST / any IDX folder / sklearn digits / CIFAR-10 / CIFAR-100 / STL-10, in memory, as raw
    uint8 batches.

    Batches: ``{"image": uint8 [B, C, H, W], "label": int64 [B]}`` (C = 1 for IDX and digits, 3 for CIFAR and
    STL-10; no augmentation, no float conversion).
    Splits: ``val_size`` images held out of the train files by a ``seed``-ed permutation; ``train`` is the rest
    (in permuted order, optionally cut to its first ``train_subset``); ``knn_bank`` is the first ``knn_bank_size``
    images of ``train`` (all of them if fewer); ``test`` is the test files (for ``digits``, a fixed stratified 20%
    split, independent of ``seed``).

    ``stl10-unlabeled`` pre-trains on STL-10's 100,000 unlabelled images (memory-mapped, shared by the processes of
    a machine; train batches carry no ``"label"``, so the online probe stays off) and evaluates on the labelled
    files: ``val`` is ``val_size`` images of ``train_X.bin`` and ``knn_bank`` the first ``knn_bank_size`` of the rest
    (in the seeded order); ``train_subset`` keeps the first N unlabelled images.

    ``val_dataloader()`` returns ``[knn_bank_loader, val_loader]`` (``[val_loader]`` when ``knn_bank_size == 0``,
    ``[]`` when ``val_size == 0``); ``test_dataloader()`` likewise with the test split.

    Args:
        dataset: ``"fashion-mnist"`` (default folder ``/usr/share/datasets/fashion-mnist``), ``"mnist"`` (IDX, needs
            ``data_dir``), ``"idx"`` (any MNIST-layout IDX folder given by ``data_dir``), ``"digits"`` (sklearn;
            reads no files, so a ``data_dir`` is an error), ``"cifar10"`` / ``"cifar100"`` (the python pickle batches; CIFAR-100 with its
            100 fine labels), ``"stl10"`` (5,000 labelled train / 8,000 test images, 96×96) or ``"stl10-unlabeled"``
            (see above).
        data_dir: folder holding the four IDX files (each optionally ``.gz``); for CIFAR / STL-10 the unpacked
            archive's folder (``cifar-10-batches-py``, ``cifar-100-python``, ``stl10_binary``) or its parent.
        batch_size: batch size of every loader.
        num_workers: DataLoader workers (persistent when > 0).
        val_size: images held out of the train files for validation (0: no validation split).
        knn_bank_size: training images in the kNN memory bank loader (0: no bank loader).
        train_subset: keep only the first N training images (fast tests / debugging).
        seed: seed of the train/val split and of the train loader's shuffling.
        pin_memory: pin batches in page-locked memory (faster host-to-GPU copies).
        drop_last: drop the train loader's last incomplete batch (SSL losses want full batches).
        pseudo_label_batches: G-SimCLR batching (:mod:`zoo.data.pseudo_labels`): train batches in which no two
            images share a pseudo-class (denoising-autoencoder embeddings → balanced k-means, k = the global batch
            size), reshuffled every epoch. ``{}`` takes the defaults; None (default) gives plain shuffled batches.
            Under DDP every rank deals the same order and trains its slice of each global batch.
    """

    DATASETS = ("fashion-mnist", "mnist", "idx", "digits", "cifar10", "cifar100", "stl10", "stl10-unlabeled")
    #: dataset -> (C, H, W) of the fixed-size sets
    SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "stl10": (3, 96, 96), "stl10-unlabeled": (3, 96, 96)}
    _RGB_ARCHIVES = {
        "cifar10": "cifar-10-batches-py (data_batch_1..5, test_batch)",
        "cifar100": "cifar-100-python (train, test, meta)",
        "stl10": "stl10_binary (train_X.bin, train_y.bin, test_X.bin, test_y.bin)",
        "stl10-unlabeled": "stl10_binary (train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin)",
    }

    def __init__(
        self,
        dataset: str = "fashion-mnist",
        data_dir: str | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        val_size: int = 5000,
        knn_bank_size: int = 10000,
        train_subset: int | None = None,
        seed: int = 0,
        pin_memory: bool = False,
        drop_last: bool = True,
        pseudo_label_batches: PseudoLabelConfig | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        name = dataset.lower().replace("_", "-")
        if name not in self.DATASETS:
            raise DataError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(self.DATASETS)}")
        if name == "digits" and data_dir is not None:
            raise DataError(
                f"dataset='digits' ships with scikit-learn and reads no files, so data_dir={data_dir!r} would be ignored; "
                "drop data_dir, or use dataset='idx' for a folder of IDX files"
            )
        if name in ("mnist", "idx") and data_dir is None:
            raise DataError(
                f"dataset={name!r} needs data_dir= a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz)"
            )
        if name in self._RGB_ARCHIVES and data_dir is None:
            raise DataError(
                f"dataset={name!r} needs data_dir= the unpacked {self._RGB_ARCHIVES[name]} folder or its parent; "
                "zoo reads the files you already have and never downloads"
            )
        for arg, value, minimum in (
            ("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("val_size", val_size, 0),
            ("knn_bank_size", knn_bank_size, 0),
        ):  # fmt: skip
            if int(value) != value or value < minimum:
                raise DataError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        if train_subset is not None and (int(train_subset) != train_subset or train_subset < 1):
            raise DataError(f"train_subset must be None or an integer >= 1, got {train_subset!r}")
        self.dataset = name
        self.data_dir: Path | None = (
            None if name == "digits" else Path(data_dir if data_dir is not None else FASHION_MNIST_DIR).expanduser()
        )
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_size = int(val_size)
        self.knn_bank_size = int(knn_bank_size)
        self.train_subset = None if train_subset is None else int(train_subset)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.drop_last = bool(drop_last)
        self.pseudo_label_config = None if pseudo_label_batches is None else resolve_pseudo_label_config(pseudo_label_batches)
        self._pseudo_labels: dict[int, np.ndarray] = {}  # by number of pseudo-classes
        self._datasets: dict[str, ImageTensorDataset] | None = None
        self._indices: dict[str, np.ndarray] = {}
        self._num_classes: int | None = None

    # ---------------------------------------------------------------------------------------------------------------
    # metadata

    @property
    def num_classes(self) -> int:
        """100 for cifar100, 10 for the other named sets; for ``idx``, max label + 1 (reads the label files if not set
        up)."""
        if self.dataset == "cifar100":
            return 100
        if self.dataset != "idx":
            return 10
        if self._num_classes is None:
            if self._datasets is not None:  # train + val hold every train-file label (train_subset aside)
                labels = [ds.labels for split, ds in self._datasets.items() if split != "knn_bank"]
                self._num_classes = int(max(int(lab.max()) for lab in labels if lab.numel()) + 1)
            else:
                assert self.data_dir is not None
                files = find_idx_files(self.data_dir)
                self._num_classes = int(max(int(_read_labels(lab).max(initial=0)) for _, lab in files.values()) + 1)
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images; reads only the train images' IDX header when not set up yet."""
        if self._datasets is not None:
            return tuple(self._datasets["test"].images.shape[1:])  # type: ignore[return-value]
        if self.dataset in self.SHAPES:
            return self.SHAPES[self.dataset]
        if self.dataset == "fashion-mnist" and self.data_dir == Path(FASHION_MNIST_DIR):
            return (1, 28, 28)
        assert self.data_dir is not None
        img_path, _ = find_idx_files(self.data_dir)["train"]
        _, shape = read_idx_header(img_path)
        if len(shape) != 3:
            raise DataError(f"{img_path}: expected images [N, H, W], header says shape {shape}")
        return (1, shape[1], shape[2])

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names, or ``None`` when unknown (``idx``; CIFAR-100 without its ``meta`` file)."""
        if self.dataset in CIFAR_LAYOUTS:
            assert self.data_dir is not None
            return cifar_class_names(self.dataset, self.data_dir)
        if self.dataset.startswith("stl10"):
            assert self.data_dir is not None
            return stl10_class_names(self.data_dir)
        if self.dataset == "fashion-mnist":
            return list(FASHION_MNIST_CLASSES)
        if self.dataset in ("mnist", "digits"):
            return [str(i) for i in range(10)]
        return None

    # ---------------------------------------------------------------------------------------------------------------
    # setup

    def setup(self, stage: str | None = None) -> None:
        """Load all splits into memory (once; later calls do nothing)."""
        if self._datasets is not None:
            return
        raw: dict[str, Any]
        if self.dataset == "digits":
            raw = load_digits_dataset()
        elif self.dataset in CIFAR_LAYOUTS:
            assert self.data_dir is not None
            raw = load_cifar(self.dataset, self.data_dir)
        elif self.dataset.startswith("stl10"):
            assert self.data_dir is not None
            raw = load_stl10(self.data_dir, unlabeled=self.dataset == "stl10-unlabeled")
        else:
            assert self.data_dir is not None
            raw = load_idx_dataset(self.data_dir)
        train_images, train_labels = raw["train"]
        # labels beyond the class count would index past the probe's classes (or, for idx, the test split could
        # hold a class the train files never name)
        classes = self.num_classes if self.dataset != "idx" else int(train_labels.max(initial=0)) + 1
        for split, value in raw.items():
            if not isinstance(value, tuple) or value[1] is None:  # STL-10's unlabelled images
                continue
            split_labels = value[1]
            where = f"dataset={self.dataset!r}" if self.data_dir is None else f"{self.data_dir} ({split} labels)"
            check_labels(split_labels, classes, where)
        n = len(train_images)
        if self.val_size >= n:
            raise DataError(
                f"val_size={self.val_size} must be smaller than the {n} training images of dataset={self.dataset!r} "
                f"(e.g. val_size={n // 10} holds out 10%; val_size=0 disables validation)"
            )
        perm = np.random.default_rng(self.seed).permutation(n)
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        if self.train_subset is not None and "unlabeled" not in raw:
            train_idx = train_idx[: self.train_subset]
        self._indices = {
            "train": train_idx,
            "val": val_idx,
            "knn_bank": train_idx[: self.knn_bank_size],
            "test": np.arange(len(raw["test"][0])),
        }
        all_images = _nchw(train_images)
        all_labels = torch.from_numpy(np.ascontiguousarray(train_labels, dtype=np.int64))
        datasets = {}
        for split in ("train", "val"):
            idx = torch.from_numpy(self._indices[split])
            datasets[split] = ImageTensorDataset(all_images[idx], all_labels[idx])
        datasets["knn_bank"] = datasets["train"].head(len(self._indices["knn_bank"]))  # a view onto its first rows
        if "unlabeled" in raw:
            # pre-training reads the unlabelled images in place (a view onto the memory map: no copy, no labels);
            # the labelled train files feed val and the kNN bank only
            unlabeled = raw["unlabeled"][: self.train_subset]
            self._indices["train"] = np.arange(len(unlabeled))
            datasets["train"] = ImageTensorDataset(torch.from_numpy(unlabeled), None)
        test_images, test_labels = raw["test"]
        datasets["test"] = ImageTensorDataset(
            _nchw(test_images), torch.from_numpy(np.ascontiguousarray(test_labels, dtype=np.int64))
        )
        self._datasets = datasets

    def _dataset(self, split: str) -> ImageTensorDataset:
        return self.split_dataset(split, train=split == "train")  # type: ignore[return-value]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [N, C, H, W], int64 labels [N]) of ``"train" | "val" | "test" | "knn_bank"`` (copies;
        labels -1 for an unlabelled split)."""
        ds = self._dataset(split)
        labels = np.full(len(ds), -1, dtype=np.int64) if ds.labels is None else ds.labels.numpy().copy()
        return np.array(ds.images.numpy(), order="C"), labels

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices of ``split`` into the train files (``train``, ``val``, ``knn_bank``) or the test files
        (``stl10-unlabeled``'s ``train``: into ``unlabeled_X.bin``)."""
        self._dataset(split)
        return self._indices[split].copy()

    # ---------------------------------------------------------------------------------------------------------------
    # loaders

    def has_split(self, split: str) -> bool:
        return {"val": self.val_size > 0, "knn_bank": self.knn_bank_size > 0}.get(split, True)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by ``(seed, epoch)``, or G-SimCLR pseudo-class batches; drops the last incomplete batch unless
        ``drop_last=False``."""
        if self.pseudo_label_config is None:
            return super().train_dataloader()
        ds = self._dataset("train")
        self.check_train_size(len(ds))
        # under DDP Lightning re-creates the batch sampler around its DistributedSampler, whose rank and world size
        # it then reads; with use_distributed_sampler=False these two say them
        sampler = PseudoClassBatchSampler(
            None, self.batch_size, self.drop_last, pseudo_labels=self.pseudo_labels(self._world_size()), seed=self.seed,
            num_replicas=self._world_size(), rank=self._rank(), skip_batches=self.take_resume_position()["batches"],
        )  # fmt: skip
        return self.make_loader(ds, batch_sampler=sampler)

    def pseudo_labels(self, num_replicas: int = 1) -> np.ndarray:
        """G-SimCLR pseudo-classes of the train split (computed once per number of classes, cached on disk). k is the
        global batch size unless set, so it depends on ``num_replicas``: the loader may be asked for before the
        trainer knows its world size, and a k of one process under DDP would leave no full batch."""
        assert self.pseudo_label_config is not None
        k = self.pseudo_label_config["num_clusters"] or self.batch_size * num_replicas
        if k not in self._pseudo_labels:
            self._pseudo_labels[k] = cached_pseudo_labels(self._dataset("train").images, k, self.pseudo_label_config)
        return self._pseudo_labels[k]

    def prepare_data(self) -> None:
        # the autoencoder and k-means run once, on one process per node; the other ranks read the cache
        if self.pseudo_label_config is not None:
            self.pseudo_labels(self._world_size())
