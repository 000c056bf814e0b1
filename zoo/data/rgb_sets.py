"""Standard RGB image sets read from the files a user already has: CIFAR-10/100 (python pickle batches) and STL-10
(binary files). Nothing is downloaded.

Layouts (the archives' own, unpacked; ``data_dir`` may be the folder itself or the folder holding it):

* ``cifar-10-batches-py/``: ``data_batch_1`` … ``data_batch_5``, ``test_batch`` (dicts with ``data`` uint8
  ``[N, 3072]`` = 1024 red, 1024 green, 1024 blue values, each a 32×32 image in row-major order, and ``labels``),
  ``batches.meta`` (``label_names``; optional).
* ``cifar-100-python/``: ``train``, ``test`` (``data`` as above, ``fine_labels``, ``coarse_labels``), ``meta``
  (``fine_label_names``; optional).
* ``stl10_binary/``: ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``, ``unlabeled_X.bin``,
  ``class_names.txt`` (optional). Images are uint8 3×96×96, each channel stored column-major; labels are uint8 1..10.

The CIFAR files are pickles, and unpickling runs whatever a pickle names. :func:`load_cifar_pickle` uses an
unpickler whose ``find_class`` resolves only a fixed table of numpy array-reconstruction functions (plus a
latin-1-only ``_codecs.encode`` that Python 3's protocol-2 pickles use for bytes); dicts, lists, strings, bytes and
ints are built by pickle opcodes, not by globals. Any other global (``os.system``, ``builtins.eval``, a class) is
refused before it is called, object dtypes are refused (their elements would be unpickled objects), and persistent
ids / out-of-band buffers raise, so loading a file never executes code from it.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.base import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_NOT_DOWNLOADED = "zoo reads the files you already have and never downloads"

# --------------------------------------------------------------------------------------------------------------------
# a pickle loader that can only rebuild plain containers and numpy arrays
# --------------------------------------------------------------------------------------------------------------------


class _Refused(pickle.UnpicklingError):
    """The pickle names something outside :data:`_ALLOWED_GLOBALS`."""


def _safe_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(obj, align, copy)
    if dtype.hasobject:  # an object array's elements are arbitrary unpickled objects
        raise _Refused(f"refused dtype {dtype} (object arrays are not loaded)")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"); no other codec is looked up
    try:
        latin1 = codecs.lookup(encoding).name == "iso8859-1"
    except LookupError:
        latin1 = False
    if not latin1:
        raise _Refused(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# (module, name) -> the only objects a pickle may name; numpy 1 / Python 2 pickles say numpy.core, numpy 2 numpy._core
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(
                f"refused global {module}.{name} (only dicts, lists, strings, numbers and numpy arrays are loaded)"
            ) from None


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def load_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """One CIFAR pickle (a batch or a meta file) as a dict with ``str`` keys, loaded without running code.

    Python 2 pickles (the published files) are read with ``encoding="latin1"`` as torchvision does, so their strings
    come back as ``str``; keys written as bytes (``b"data"``) are decoded the same way.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as e:
        raise DataError(f"{path}: not loaded: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as e:
        raise DataError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR python batch: it holds a {type(obj).__name__}, not a dict")
    return _str_keys(obj)


# --------------------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": "labels",
        "meta": ("batches.meta", "label_names"),
        "num_classes": 10,
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": "fine_labels",
        "meta": ("meta", "fine_label_names"),
        "num_classes": 100,
        "archive": "cifar-100-python.tar.gz",
    },
}


def _dataset_folder(data_dir: str | Path, folder: str, wanted: list[str], what: str, archive: str) -> Path:
    """``data_dir`` if it holds the files, else ``data_dir/folder``; one error listing what is missing."""
    data_dir = Path(data_dir).expanduser()
    for candidate in (data_dir, data_dir / folder):
        if all((candidate / name).is_file() for name in wanted):
            return candidate
    root = data_dir / folder if (data_dir / folder).is_dir() else data_dir
    if not root.is_dir():
        raise FileNotFoundError(
            f"{what} folder {data_dir} does not exist; pass data_dir= the unpacked {archive} ({folder}/ or its "
            f"parent); {_NOT_DOWNLOADED}"
        )
    missing = [name for name in wanted if not (root / name).is_file()]
    raise FileNotFoundError(
        f"{what} folder {root} lacks {', '.join(missing)}; pass data_dir= the unpacked {archive} ({folder}/ or its "
        f"parent); {_NOT_DOWNLOADED}"
    )


def find_cifar_folder(name: str, data_dir: str | Path) -> Path:
    layout = CIFAR_LAYOUTS[name]
    return _dataset_folder(data_dir, layout["folder"], layout["train"] + layout["test"], name, layout["archive"])


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = load_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{path}: no {key!r} entry (keys: {', '.join(map(str, batch))}); not a CIFAR batch file")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be uint8 [N, 3072] (3×32×32 per row), got {got}")
    labels = np.asarray(batch[label_key])
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: {label_key!r} must be {len(data)} integers (one per row of 'data'), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: {label_key!r} must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    # row = 1024 red, 1024 green, 1024 blue values, each plane row-major: a plain reshape is [N, C, H, W]
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(name: str, data_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (uint8 [N, 3, 32, 32], int64 [N]), "test": (...)}`` of ``name`` = ``cifar10`` | ``cifar100``
    (CIFAR-100: the 100 fine labels)."""
    layout = CIFAR_LAYOUTS[name]
    folder = find_cifar_folder(name, data_dir)
    out = {}
    for split in ("train", "test"):
        parts = [_read_cifar_batch(folder / f, layout["labels"], layout["num_classes"]) for f in layout[split]]
        images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        out[split] = (images, labels)
    return out


def cifar_class_names(name: str, data_dir: str | Path) -> list[str] | None:
    """The meta file's class names (CIFAR-10's published names when it is absent; None for CIFAR-100 then)."""
    layout = CIFAR_LAYOUTS[name]
    meta_file, key = layout["meta"]
    folder = find_cifar_folder(name, data_dir)
    if (folder / meta_file).is_file():
        names = load_cifar_pickle(folder / meta_file).get(key)
        if isinstance(names, list) and len(names) == layout["num_classes"]:
            return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        raise DataError(f"{folder / meta_file}: {key!r} must list {layout['num_classes']} class names")
    return list(CIFAR10_CLASSES) if name == "cifar10" else None


# --------------------------------------------------------------------------------------------------------------------
# STL-10
# --------------------------------------------------------------------------------------------------------------------

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_FOLDER = "stl10_binary"
STL10_SIDE = 96
_STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE
_STL10_ARCHIVE = "stl10_binary.tar.gz"


def find_stl10_folder(data_dir: str | Path, unlabeled: bool = False) -> Path:
    wanted = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"] + (["unlabeled_X.bin"] if unlabeled else [])
    return _dataset_folder(data_dir, STL10_FOLDER, wanted, "stl10", _STL10_ARCHIVE)


def read_stl10_images(path: str | Path, memmap: bool = False) -> np.ndarray:
    """An STL-10 ``*_X.bin`` file as uint8 ``[N, 3, 96, 96]`` (C, H, W).

    The file stores each channel column-major, so the rows of a ``[N, 3, 96, 96]`` reshape are image columns: the
    result is that reshape with H and W swapped. ``memmap=True`` maps the file copy-on-write instead of reading it
    (``unlabeled_X.bin`` is 2.8 GB): pages are read on access and shared between processes on a machine, and the
    result is a strided view (no copy).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0 or size % _STL10_IMAGE_BYTES:
        raise DataError(
            f"{path}: truncated or not an STL-10 image file: {size} bytes is not a whole number of 3×96×96 uint8 "
            f"images ({_STL10_IMAGE_BYTES} bytes each; {size / _STL10_IMAGE_BYTES:.3f} images)"
        )
    n = size // _STL10_IMAGE_BYTES
    flat = np.memmap(path, dtype=np.uint8, mode="c", shape=(n, _STL10_IMAGE_BYTES)) if memmap else np.fromfile(path, np.uint8)
    return np.asarray(flat).reshape(n, 3, STL10_SIDE, STL10_SIDE).transpose(0, 1, 3, 2)


def read_stl10_labels(path: str | Path, num_images: int) -> np.ndarray:
    """An STL-10 ``*_y.bin`` file (uint8 1..10, one per image) as int64 0..9."""
    path = Path(path)
    labels = np.fromfile(path, np.uint8)
    if len(labels) != num_images:
        raise DataError(
            f"{path}: holds {len(labels)} labels but the matching image file holds {num_images} images; the counts "
            "must match (truncated file?)"
        )
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: STL-10 labels must lie in 1..10, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64) - 1


def load_stl10(data_dir: str | Path, unlabeled: bool = False) -> dict[str, Any]:
    """``{"train": (images, labels), "test": (images, labels)}`` (uint8 ``[N, 3, 96, 96]``, int64 0..9), plus
    ``"unlabeled"``: uint8 ``[100000, 3, 96, 96]`` (memory-mapped) when ``unlabeled``."""
    folder = find_stl10_folder(data_dir, unlabeled)
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        images = np.ascontiguousarray(read_stl10_images(folder / f"{split}_X.bin"))
        out[split] = (images, read_stl10_labels(folder / f"{split}_y.bin", len(images)))
    if unlabeled:
        out["unlabeled"] = read_stl10_images(folder / "unlabeled_X.bin", memmap=True)
    return out


def stl10_class_names(data_dir: str | Path) -> list[str]:
    """``class_names.txt`` when present (one name per line), else the published names."""
    path = find_stl10_folder(data_dir) / "class_names.txt"
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) != 10:
            raise DataError(f"{path}: expected 10 class names (one per line), found {len(names)}")
        return names
    return list(STL10_CLASSES)
