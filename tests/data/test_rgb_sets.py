"""CIFAR-10/100 and STL-10 read from tiny files in their published on-disk formats (zoo.data.rgb_sets) and served by
ImageDataModule: exact pixels, orientation and labels; one-line errors; pickles that cannot run code."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data.base import DataError
from zoo.data.images import ImageDataModule
from zoo.data.rgb_sets import load_cifar_pickle


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be changed
    """Writes what Python 2's cPickle wrote into the published CIFAR files (protocol 2): every string (keys, batch
    label, file names, the dtype code, the array's raw data) as a BINSTRING, numpy functions under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        head = pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256 else pickle.BINSTRING + struct.pack("<i", len(data))
        self.write(head + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def _dump(path: Path, obj: dict, protocol: str | int = "py2") -> None:
    with open(path, "wb") as f:
        if protocol == "py2":
            _Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)


def _cifar_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _expected_cifar(rows: np.ndarray) -> np.ndarray:
    """[N, 3, 32, 32] from CIFAR rows by the published rule: value c*1024 + 32*y + x is channel c, row y, column x."""
    n, c, y, x = np.indices((len(rows), 3, 32, 32))
    return rows[n, c * 1024 + 32 * y + x]


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("c10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train_rows, train_labels = _cifar_rows(rng, 20), rng.integers(0, 10, size=20)
    for b in range(5):
        rows = slice(4 * b, 4 * b + 4)
        _dump(folder / f"data_batch_{b + 1}", {
            b"batch_label": b"training batch %d of 5" % (b + 1), b"labels": [int(v) for v in train_labels[rows]],
            b"data": train_rows[rows], b"filenames": [b"img_%d.png" % i for i in range(4)],
        })  # fmt: skip
    test_rows, test_labels = _cifar_rows(rng, 6), rng.integers(0, 10, size=6)
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test_labels], b"data": test_rows})
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"num_cases_per_batch": 4, b"label_names": names, b"num_vis": 3072})
    return root, train_rows, train_labels, test_rows, test_labels


def test_cifar10_pixels_labels_and_orientation(cifar10_dir) -> None:
    root, train_rows, train_labels, test_rows, test_labels = cifar10_dir
    dm = ImageDataModule(dataset="cifar10", data_dir=str(root), val_size=5, knn_bank_size=8, batch_size=4)
    assert dm.image_shape == (3, 32, 32) and dm.num_classes == 10  # before setup
    assert dm.class_names[:2] == ["plane", "car"]  # from batches.meta
    x, y = dm.arrays("test")
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, _expected_cifar(test_rows))
    np.testing.assert_array_equal(y, test_labels)
    # the five train batches in file order, then split by the seeded permutation
    for split in ("train", "val"):
        x, y = dm.arrays(split)
        rows = dm.split_indices(split)
        np.testing.assert_array_equal(x, _expected_cifar(train_rows)[rows])
        np.testing.assert_array_equal(y, train_labels[rows])
    assert sorted(np.concatenate([dm.split_indices("train"), dm.split_indices("val")])) == list(range(20))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 3, 32, 32) and batch["label"].shape == (4,)

    # the folder itself works as data_dir too
    same = ImageDataModule(dataset="cifar10", data_dir=str(root / "cifar-10-batches-py"), val_size=5, knn_bank_size=8)
    np.testing.assert_array_equal(same.arrays("test")[0], _expected_cifar(test_rows))


def test_cifar_orientation_single_pixel(tmp_path: Path) -> None:
    rows = np.zeros((1, 3072), dtype=np.uint8)
    rows[0, 1024 + 32 * 2 + 5] = 200  # green, row 2, column 5
    _dump(tmp_path / "train", {b"data": rows, b"fine_labels": [99], b"coarse_labels": [19]})
    _dump(tmp_path / "test", {b"data": rows, b"fine_labels": [3], b"coarse_labels": [1]})
    dm = ImageDataModule(dataset="cifar100", data_dir=str(tmp_path), val_size=0, knn_bank_size=0, batch_size=1)
    x, y = dm.arrays("train")
    assert x[0, 1, 2, 5] == 200 and int(x.sum()) == 200 and y.tolist() == [99]
    assert dm.num_classes == 100 and dm.class_names is None  # no meta file


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar100_pickle_protocols(tmp_path: Path, protocol) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows = {s: _cifar_rows(rng, n) for s, n in (("train", 7), ("test", 3))}
    fine = {s: rng.integers(0, 100, size=len(r)) for s, r in rows.items()}
    for split in ("train", "test"):
        _dump(folder / split, {
            b"filenames": [b"f"] * len(rows[split]), b"batch_label": b"x", b"fine_labels": [int(v) for v in fine[split]],
            b"coarse_labels": [int(v) // 5 for v in fine[split]], b"data": rows[split],
        }, protocol)  # fmt: skip
    names = [f"class{i}".encode() for i in range(100)]
    _dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]}, protocol)
    dm = ImageDataModule(dataset="cifar100", data_dir=str(tmp_path), val_size=2, knn_bank_size=0)
    x, y = dm.arrays("test")
    np.testing.assert_array_equal(x, _expected_cifar(rows["test"]))
    np.testing.assert_array_equal(y, fine["test"])
    np.testing.assert_array_equal(dm.arrays("val")[1], fine["train"][dm.split_indices("val")])
    assert dm.class_names[99] == "class99"


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    _dump(path, {b"data": _Exploit(marker), b"labels": []}, 2)
    with pytest.raises(DataError, match=r"data_batch_1: not loaded: refused global (io|builtins)\.open") as info:
        load_cifar_pickle(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()

    _dump(path, {b"data": np.array([marker], dtype=object)}, 4)  # an object array's elements are arbitrary objects
    with pytest.raises(DataError, match="refused (global pathlib|dtype object)"):
        load_cifar_pickle(path)
    # a codec other than latin-1 would be looked up by name: refused
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match="refused _codecs.encode with encoding 'rot13'"):
        load_cifar_pickle(path)


def test_cifar_errors(cifar10_dir, tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for f in ("data_batch_1", "data_batch_2", "test_batch"):
        (root / f).write_bytes((cifar10_dir[0] / "cifar-10-batches-py" / f).read_bytes())
    with pytest.raises(FileNotFoundError) as info:
        ImageDataModule(dataset="cifar10", data_dir=str(tmp_path), val_size=0).setup()
    msg = str(info.value)
    assert str(root) in msg and "data_batch_3, data_batch_4, data_batch_5" in msg and "never downloads" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageDataModule(dataset="cifar10", data_dir=str(tmp_path / "nope"), val_size=0).setup()
    with pytest.raises(DataError, match="needs data_dir="):
        ImageDataModule(dataset="cifar100")

    for f in ("data_batch_3", "data_batch_4", "data_batch_5"):
        (root / f).write_bytes((root / "data_batch_1").read_bytes())
    (root / "data_batch_4").write_bytes((root / "data_batch_1").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_4: corrupt or truncated pickle"):
        ImageDataModule(dataset="cifar10", data_dir=str(root), val_size=0).setup()
    _dump(root / "data_batch_4", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"data_batch_4: 'data' must be uint8 \[N, 3072\].*got uint8 \(2, 1024\)"):
        ImageDataModule(dataset="cifar10", data_dir=str(root), val_size=0).setup()
    _dump(root / "data_batch_4", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DataError, match=r"data_batch_4: 'labels' must lie in 0..9, got 0..10"):
        ImageDataModule(dataset="cifar10", data_dir=str(root), val_size=0).setup()
    _dump(root / "data_batch_4", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(DataError, match=r"data_batch_4: 'labels' must be 2 integers"):
        ImageDataModule(dataset="cifar10", data_dir=str(root), val_size=0).setup()


# ---------------------------------------------------------------------------------------------------------------------
# STL-10


def _stl_bytes(images: np.ndarray) -> bytes:
    """The published layout: per image and channel, 96 columns of 96 pixels (value 96*x + y is row y, column x)."""
    n, c, y, x = np.indices(images.shape)
    flat = np.empty(images.size, dtype=np.uint8)
    flat[n * 27648 + c * 9216 + x * 96 + y] = images[n, c, y, x]
    return flat.tobytes()


@pytest.fixture(scope="module")
def stl_dir(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("stl")
    folder = root / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(2)
    data = {}
    for split, n in (("train", 12), ("test", 5), ("unlabeled", 9)):
        images = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        (folder / f"{split}_X.bin").write_bytes(_stl_bytes(images))
        labels = rng.integers(1, 11, size=n).astype(np.uint8)  # 1..10 on disk
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
        data[split] = (images, labels.astype(np.int64) - 1)
    return root, data


def test_stl10_pixels_labels_and_orientation(stl_dir, tmp_path: Path) -> None:
    root, data = stl_dir
    dm = ImageDataModule(dataset="stl10", data_dir=str(root), val_size=3, knn_bank_size=4, batch_size=2)
    assert dm.image_shape == (3, 96, 96) and dm.num_classes == 10 and dm.class_names[2] == "car"
    x, y = dm.arrays("test")
    np.testing.assert_array_equal(x, data["test"][0])
    np.testing.assert_array_equal(y, data["test"][1])
    x, y = dm.arrays("train")
    rows = dm.split_indices("train")
    np.testing.assert_array_equal(x, data["train"][0][rows])
    np.testing.assert_array_equal(y, data["train"][1][rows])

    # one pixel: file byte 96*5 + 0 of the first channel is row 0, column 5
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw = np.zeros(27648, np.uint8)
    raw[96 * 5] = 255
    for split in ("train", "test"):
        (folder / f"{split}_X.bin").write_bytes(raw.tobytes())
        (folder / f"{split}_y.bin").write_bytes(bytes([10]))
    (folder / "class_names.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    one = ImageDataModule(dataset="stl10", data_dir=str(folder), val_size=0, knn_bank_size=0)
    x, y = one.arrays("train")
    assert x[0, 0, 0, 5] == 255 and int(x.sum()) == 255 and y.tolist() == [9]
    assert one.class_names[9] == "n9"


def test_stl10_unlabeled_pretraining(stl_dir) -> None:
    root, data = stl_dir
    dm = ImageDataModule(dataset="stl10-unlabeled", data_dir=str(root), val_size=3, knn_bank_size=4, batch_size=3)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(set(b) == {"image"} for b in batches)  # no made-up labels
    seen = torch.cat([b["image"] for b in batches])
    assert seen.is_contiguous() and seen.shape == (9, 3, 96, 96)
    order = list(dm.train_sampler(9, dm.seed, 3))
    np.testing.assert_array_equal(seen.numpy(), data["unlabeled"][0][order])
    # val and the kNN bank come from the labelled train files, disjoint
    for split, n in (("val", 3), ("knn_bank", 4)):
        x, y = dm.arrays(split)
        rows = dm.split_indices(split)
        assert len(rows) == n
        np.testing.assert_array_equal(x, data["train"][0][rows])
        np.testing.assert_array_equal(y, data["train"][1][rows])
    assert not set(dm.split_indices("val")) & set(dm.split_indices("knn_bank"))
    sub = ImageDataModule(dataset="stl10-unlabeled", data_dir=str(root), val_size=3, knn_bank_size=4, train_subset=5)
    assert len(sub.arrays("train")[0]) == 5 and (sub.arrays("train")[1] == -1).all()


def test_stl10_errors(stl_dir, tmp_path: Path) -> None:
    src = stl_dir[0] / "stl10_binary"
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"):
        (folder / f).write_bytes((src / f).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"stl10_binary lacks unlabeled_X.bin"):
        ImageDataModule(dataset="stl10-unlabeled", data_dir=str(tmp_path), val_size=0).setup()
    (folder / "test_X.bin").write_bytes((src / "test_X.bin").read_bytes()[:-10])
    with pytest.raises(DataError, match=r"test_X.bin: truncated or not an STL-10 image file: 138230 bytes"):
        ImageDataModule(dataset="stl10", data_dir=str(tmp_path), val_size=0).setup()
    (folder / "test_X.bin").write_bytes((src / "test_X.bin").read_bytes())
    (folder / "test_y.bin").write_bytes((src / "test_y.bin").read_bytes()[:-1])
    with pytest.raises(DataError, match=r"test_y.bin: holds 4 labels but the matching image file holds 5 images"):
        ImageDataModule(dataset="stl10", data_dir=str(tmp_path), val_size=0).setup()
    (folder / "test_y.bin").write_bytes(bytes([0, 1, 2, 3, 4]))
    with pytest.raises(DataError, match=r"test_y.bin: STL-10 labels must lie in 1..10, got 0..4"):
        ImageDataModule(dataset="stl10", data_dir=str(tmp_path), val_size=0).setup()
    with pytest.raises(DataError, match="val_size=12 must be smaller than the 12 training images"):
        ImageDataModule(dataset="stl10", data_dir=str(stl_dir[0]), val_size=12).setup()


# ---------------------------------------------------------------------------------------------------------------------
# ImageNet-style folders


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(4)
    for split, per_class in (("train", 3), ("val", 2)):
        for wnid in ("n01440764", "n02102040", "n03000684"):
            (root / split / wnid).mkdir(parents=True)
            for i in range(per_class):
                size = (20 + 3 * i, 16 + i)  # (w, h): every image its own size
                Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(
                    root / split / wnid / f"{wnid}_{i}.JPEG", quality=95
                )
    return root


def test_imagenet_folders(imagenet_dir: Path) -> None:
    from zoo.data.imagenet import ImageNetFolderDataModule

    dm = ImageNetFolderDataModule(str(imagenet_dir), batch_size=4, knn_bank_size=4, eval_size=8, max_side=32)
    assert dm.num_classes == 3 and dm.class_names == ["n01440764", "n02102040", "n03000684"]
    paths, labels = dm.files("val")
    assert len(paths) == 6 and all(Path(p).parts[-3] == "val" for p in paths)
    assert [dm.class_names[y] for y in labels] == [Path(p).parent.name for p in paths]
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape[:2] == (4, 3) and train["image_size"].shape == (4, 2)
    bank, val = dm.val_dataloader()
    batch = next(iter(val))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["label"].tolist() == labels[:4].tolist()

    # ImageNet-100 style: a subset of the class folders, from a list file
    (imagenet_dir / "subset.txt").write_text("n03000684\nn01440764\n")
    sub = ImageNetFolderDataModule(str(imagenet_dir), classes=str(imagenet_dir / "subset.txt"), knn_bank_size=0)
    assert sub.class_names == ["n01440764", "n03000684"]
    paths, labels = sub.files("train")
    assert len(paths) == 6 and [sub.class_names[y] for y in labels] == [Path(p).parent.name for p in paths]
    assert len(sub.files("val")[0]) == 4


def test_imagenet_folder_errors(imagenet_dir: Path, tmp_path: Path) -> None:
    from zoo.data.imagenet import ImageNetFolderDataModule

    with pytest.raises(DataError, match=r"lacks 1 of the 2 class folders.*n09999999"):
        ImageNetFolderDataModule(str(imagenet_dir), classes=["n01440764", "n09999999"]).setup()
    (tmp_path / "train" / "n01").mkdir(parents=True)
    (tmp_path / "train" / "n01" / "a.png").write_bytes((next((imagenet_dir / "train" / "n01440764").iterdir())).read_bytes())
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"val: no class subfolders in the val split.*valprep.sh"):
        ImageNetFolderDataModule(str(tmp_path)).setup()
    with pytest.raises(DataError, match=r"nope/train: no such image folder"):
        ImageNetFolderDataModule(str(tmp_path / "nope")).setup()
