"""Tests of zoo.data.images: IDX reading/writing, IDX folders, ImageDataModule splits and loaders, digits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data.images import (
    FASHION_MNIST_DIR,
    ImageDataModule,
    load_idx_dataset,
    read_idx,
    read_idx_header,
    write_idx,
)

N_TRAIN, N_TEST, SIDE = 200, 50, 28


def _write_folder(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, gz: bool = False, seed: int = 0) -> Path:
    """A tiny MNIST-layout IDX folder; train image i has pixel [0, 0] == i % 256 and [0, 1] == i // 256."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, SIDE, SIDE), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        images[:, 0, 1] = np.arange(n) // 256
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, size=n).astype(np.uint8))
    return root


def _ids(images: np.ndarray) -> np.ndarray:
    """Row index into the train file of each image written by ``_write_folder``."""
    return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 0, 1].astype(np.int64)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("idx"))


def _dm(data_dir: Path, **kwargs) -> ImageDataModule:
    args = dict(dataset="idx", data_dir=str(data_dir), val_size=40, batch_size=32, knn_bank_size=64)
    args.update(kwargs)
    return ImageDataModule(**args)


# ---------------------------------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "dtype,shape",
    [(np.uint8, (7, 5, 3)), (np.float32, (4, 6)), (np.int32, (11,)), (np.int16, (2, 3)), (np.float64, (3, 1, 2))],
)
def test_idx_round_trip(tmp_path: Path, dtype, shape, gz: bool) -> None:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        array = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array)
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == gz
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert read_idx_header(path) == (np.dtype(dtype), shape)


def test_idx_big_endian_layout(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.array([1, 258], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path: Path, gz: bool) -> None:
    full = tmp_path / "full"
    write_idx(full, np.zeros((60, 28, 28), dtype=np.uint8))
    raw = full.read_bytes()
    path = tmp_path / ("cut.gz" if gz else "cut")
    path.write_bytes(gzip.compress(raw[:-100]) if gz else raw[:-100])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg and "60×28×28 = 47040 values" in msg and "46940" in msg


def test_idx_extra_bytes_and_bad_headers(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.zeros(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ValueError, match="extra trailing bytes") as info:
        read_idx(path)
    assert str(path) in str(info.value)

    path.write_bytes(b"\x01\x00\x08\x01" + b"\0\0\0\x01" + b"\x07")
    with pytest.raises(ValueError, match="bad magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)

    path.write_bytes(b"\x00\x00\x0a\x01" + b"\0\0\0\x01" + b"\x07")
    with pytest.raises(ValueError, match="unknown IDX dtype code 0x0A"):
        read_idx(path)

    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)

    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-12])
    with pytest.raises(ValueError, match=str(gz)):
        read_idx(gz)


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64 has no IDX code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------------------------------------------------------------
# IDX folders


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dataset(tmp_path: Path, gz: bool) -> None:
    data = load_idx_dataset(_write_folder(tmp_path, gz=gz))
    assert set(data) == {"train", "test"}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = data[split]
        assert images.shape == (n, SIDE, SIDE) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        load_idx_dataset(missing)
    msg = str(info.value)
    assert str(missing) in msg and "train-images-idx3-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data_dir=" in msg


def test_missing_files(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "d")
    (root / "t10k-labels-idx1-ubyte").unlink()
    (root / "train-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        ImageDataModule(dataset="idx", data_dir=str(root), val_size=10).setup()
    msg = str(info.value)
    assert str(root) in msg and "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels-idx1-ubyte" not in msg and "t10k-images-idx3-ubyte" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data_dir=" in msg


def test_count_mismatch(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "d")
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(N_TEST - 1, dtype=np.uint8))
    with pytest.raises(ValueError) as info:
        load_idx_dataset(root)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg


# ---------------------------------------------------------------------------------------------------------------------
# ImageDataModule on a synthetic IDX folder


def test_splits(idx_dir: Path) -> None:
    dm = _dm(idx_dir)
    assert dm.num_classes == 10 and dm.image_shape == (1, SIDE, SIDE) and dm.class_names is None  # before setup
    dm.setup("fit")
    sizes = {split: len(dm.arrays(split)[0]) for split in ("train", "val", "test", "knn_bank")}
    assert sizes == {"train": N_TRAIN - 40, "val": 40, "test": N_TEST, "knn_bank": 64}

    train, val, bank = (dm.arrays(s)[0] for s in ("train", "val", "knn_bank"))
    train_ids, val_ids = _ids(train), _ids(val)
    assert not set(train_ids) & set(val_ids)
    assert sorted(np.concatenate([train_ids, val_ids])) == list(range(N_TRAIN))
    np.testing.assert_array_equal(train_ids, dm.split_indices("train"))
    np.testing.assert_array_equal(val_ids, dm.split_indices("val"))
    np.testing.assert_array_equal(bank, train[:64])  # bank = first rows of the train part

    # labels follow their images
    raw_images, raw_labels = load_idx_dataset(idx_dir)["train"]
    x, y = dm.arrays("val")
    np.testing.assert_array_equal(x[:, 0], raw_images[val_ids])
    np.testing.assert_array_equal(y, raw_labels[val_ids])


def test_seeded_split(idx_dir: Path) -> None:
    def val_ids(seed: int) -> np.ndarray:
        dm = _dm(idx_dir, seed=seed)
        dm.setup()
        return _ids(dm.arrays("val")[0])

    np.testing.assert_array_equal(val_ids(0), val_ids(0))
    assert not np.array_equal(val_ids(0), val_ids(1))


def test_setup_idempotent_and_subset(idx_dir: Path) -> None:
    dm = _dm(idx_dir, train_subset=50, knn_bank_size=1000)
    dm.setup("fit")
    first = dm.arrays("train")[0]
    dm.setup("validate")
    np.testing.assert_array_equal(first, dm.arrays("train")[0])
    assert len(first) == 50 and len(dm.arrays("knn_bank")[0]) == 50  # bank clamped to the train part
    full = _dm(idx_dir)
    full.setup()
    np.testing.assert_array_equal(first, full.arrays("train")[0][:50])  # subset = first N of the same permutation
    np.testing.assert_array_equal(dm.arrays("val")[0], full.arrays("val")[0])  # val unaffected by the subset


def test_batches_and_loaders(idx_dir: Path) -> None:
    dm = _dm(idx_dir)
    dm.setup("fit")
    train = dm.train_dataloader()
    batches = list(train)
    assert len(batches) == (N_TRAIN - 40) // 32  # drop_last
    batch = batches[0]
    assert set(batch) == {"image", "label"}
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (32, 1, SIDE, SIDE)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (32,)

    sample = train.dataset[3]
    assert sample["image"].shape == (1, SIDE, SIDE) and sample["label"].ndim == 0

    # shuffled: the first epoch's order is not the dataset's order, and two epochs differ
    first_epoch = torch.cat([b["image"][:, 0, 0, 0] for b in batches])
    second_epoch = torch.cat([b["image"][:, 0, 0, 0] for b in train])
    assert not torch.equal(first_epoch, second_epoch)

    # seeded: a fresh datamodule with the same seed yields the same first epoch
    again = _dm(idx_dir)
    again.setup()
    assert torch.equal(first_epoch, torch.cat([b["image"][:, 0, 0, 0] for b in again.train_dataloader()]))

    val = dm.val_dataloader()
    assert isinstance(val, list) and len(val) == 2
    bank_images = torch.cat([b["image"] for b in val[0]])
    assert bank_images.shape == (64, 1, SIDE, SIDE)
    np.testing.assert_array_equal(bank_images.numpy(), dm.arrays("knn_bank")[0])
    val_batches = list(val[1])
    assert sum(len(b["label"]) for b in val_batches) == 40 and len(val_batches[-1]["label"]) == 8  # no drop_last
    np.testing.assert_array_equal(torch.cat([b["image"] for b in val_batches]).numpy(), dm.arrays("val")[0])

    test = dm.test_dataloader()
    assert len(test) == 2 and sum(len(b["label"]) for b in test[1]) == N_TEST
    assert sum(len(b["label"]) for b in dm.predict_dataloader()) == N_TEST


def test_no_knn_bank_no_val(idx_dir: Path) -> None:
    dm = _dm(idx_dir, knn_bank_size=0)
    dm.setup()
    assert len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 1
    assert sum(len(b["label"]) for b in dm.val_dataloader()[0]) == 40
    dm = _dm(idx_dir, val_size=0)
    dm.setup()
    assert dm.val_dataloader() == [] and len(dm.arrays("train")[0]) == N_TRAIN


def test_num_workers(idx_dir: Path) -> None:
    dm = _dm(idx_dir, num_workers=2)
    dm.setup()
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    batches = list(loader)
    assert len(batches) == (N_TRAIN - 40) // 32
    assert batches[0]["image"].dtype == torch.uint8 and batches[0]["image"].shape == (32, 1, SIDE, SIDE)
    bank = torch.cat([b["image"] for b in dm.val_dataloader()[0]])
    np.testing.assert_array_equal(bank.numpy(), dm.arrays("knn_bank")[0])


def test_num_classes_inferred_for_idx(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "d")
    write_idx(root / "train-labels-idx1-ubyte", (np.arange(N_TRAIN) % 4).astype(np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", (np.arange(N_TEST) % 3).astype(np.uint8))
    dm = _dm(root)
    assert dm.num_classes == 4  # lazily, from the label files
    dm = _dm(root)
    dm.setup()
    assert dm.num_classes == 4


def test_train_smaller_than_batch(idx_dir: Path) -> None:
    dm = _dm(idx_dir, train_subset=10)
    dm.setup()
    with pytest.raises(ValueError, match="fewer than batch_size=32"):
        dm.train_dataloader()
    dm = _dm(idx_dir, train_subset=10, drop_last=False)
    dm.setup()
    assert len(list(dm.train_dataloader())) == 1


# ---------------------------------------------------------------------------------------------------------------------
# argument errors


def test_val_size_too_large(idx_dir: Path) -> None:
    with pytest.raises(ValueError, match=f"val_size={N_TRAIN} must be smaller than the {N_TRAIN} training images"):
        _dm(idx_dir, val_size=N_TRAIN).setup()


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*fashion-mnist, mnist, idx, digits, cifar10, cifar100, stl10"):
        ImageDataModule(dataset="svhn")


@pytest.mark.parametrize("dataset", ["mnist", "idx"])
def test_idx_datasets_need_data_dir(dataset: str) -> None:
    with pytest.raises(ValueError, match="needs data_dir="):
        ImageDataModule(dataset=dataset)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ImageDataModule(dataset="digits", batch_size=0)
    with pytest.raises(ValueError, match="val_size"):
        ImageDataModule(dataset="digits", val_size=-1)
    with pytest.raises(ValueError, match="train_subset"):
        ImageDataModule(dataset="digits", train_subset=0)


# ---------------------------------------------------------------------------------------------------------------------
# digits (sklearn, always available) and Fashion-MNIST (only where installed)


def test_digits() -> None:
    dm = ImageDataModule(dataset="digits", val_size=100, batch_size=64, knn_bank_size=500)
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 10 and dm.class_names == [str(i) for i in range(10)]
    dm.setup()
    train, train_labels = dm.arrays("train")
    test, test_labels = dm.arrays("test")
    n_test = len(test)
    assert abs(n_test - 0.2 * 1797) <= 1
    assert len(train) + len(dm.arrays("val")[0]) + n_test == 1797 and len(dm.arrays("val")[0]) == 100
    assert train.shape[1:] == (1, 8, 8) and train.dtype == np.uint8 and train.max() == 255 and train.min() == 0
    assert set(np.unique(train_labels)) == set(range(10)) and set(np.unique(test_labels)) == set(range(10))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (64, 1, 8, 8) and batch["image"].dtype == torch.uint8
    # the test split does not move with the train/val seed
    other = ImageDataModule(dataset="digits", val_size=100, seed=5)
    other.setup()
    np.testing.assert_array_equal(other.arrays("test")[0], test)


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_MNIST_DIR}")
def test_fashion_mnist() -> None:
    dm = ImageDataModule(knn_bank_size=10000)
    dm.setup()
    assert dm.num_classes == 10 and len(dm.class_names) == 10 and dm.image_shape == (1, 28, 28)
    sizes = {split: dm.arrays(split)[0].shape for split in ("train", "val", "test", "knn_bank")}
    assert sizes == {
        "train": (55000, 1, 28, 28),
        "val": (5000, 1, 28, 28),
        "test": (10000, 1, 28, 28),
        "knn_bank": (10000, 1, 28, 28),
    }
    labels = dm.arrays("test")[1]
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [1000] * 10


def test_train_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch() -> None:
    from zoo.data.resume import EpochShuffleSampler

    sampler = EpochShuffleSampler(100, seed=3)
    epochs = [list(sampler) for _ in range(3)]  # advances by itself outside Lightning
    assert all(sorted(e) == list(range(100)) for e in epochs) and epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]
    # a run resumed in epoch 2 after 3 batches of 10 continues that epoch's order, then epoch 3 is whole
    resumed = EpochShuffleSampler(100, seed=3, epoch=2, skip=30)
    assert list(resumed) == epochs[2][30:]
    assert list(resumed) == list(EpochShuffleSampler(100, seed=3, epoch=3))
    assert list(EpochShuffleSampler(100, seed=4)) != epochs[0]
