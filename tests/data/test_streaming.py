"""litdata streaming shards (zoo.data.streaming): `zoo data optimize` from a folder and a dataset name, exact pixels
back through StreamingImageDataModule, every sample once per epoch across 2 gloo ranks, and mid-epoch resume (through
the datamodule's state, and under a Lightning Trainer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litdata")

import lightning as L  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from PIL import Image  # noqa: E402

from tests.data.test_rgb_sets import _cifar_rows, _dump, _expected_cifar  # noqa: E402
from tests.distributed import _worker  # noqa: E402
from zoo.cli import main  # noqa: E402
from zoo.data.streaming import ImageSource, StreamingImageDataModule, optimize_images  # noqa: E402

N = 48  # 2 ranks × batch 4 × 6 batches: every sample is dealt out


def _image(i: int) -> np.ndarray:
    """uint8 [3, 6, 5] whose first pixel holds i (non-square: a transposed read would not fit)."""
    image = np.random.default_rng(i).integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
    image[:, 0, 0] = i
    return image


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    arrays = np.stack([_image(i) for i in range(N)])
    out = tmp_path_factory.mktemp("shards") / "train"
    source = ImageSource(labels=np.arange(N) % 3, classes=["a", "b", "c"], arrays=arrays)
    written = optimize_images(source, str(out), chunk_bytes="2kB")  # several chunks, as litdata deals them to ranks
    assert len(list(out.glob("chunk-*.bin"))) >= 3
    return written


def _indices(loader, limit: int | None = None) -> list[list[int]]:
    out = []
    for batch in loader:
        out.append(batch["index"].tolist())
        if limit is not None and len(out) == limit:
            break
    return out


def test_shards_decode_to_the_stored_pixels(shards: str) -> None:
    dm = StreamingImageDataModule(shards, batch_size=5, shuffle=False, drop_last=False)
    assert dm.num_classes == 3
    batches = list(dm.train_dataloader())
    index = torch.cat([b["index"] for b in batches])
    assert sorted(index.tolist()) == list(range(N))
    for b in batches:
        assert b["image"].dtype == torch.uint8 and b["image"].shape[1:] == (3, 6, 5)
        assert (b["image_size"] == torch.tensor([6, 5])).all()
        for image, i, label in zip(b["image"], b["index"], b["label"]):
            assert torch.equal(image, torch.from_numpy(_image(int(i)))) and int(label) == int(i) % 3


def test_eval_loaders(shards: str) -> None:
    dm = StreamingImageDataModule(shards, val_dir=shards, batch_size=5, eval_size=4, knn_bank_size=7)
    bank, val = dm.val_dataloader()
    bank_batches = list(bank)
    assert torch.cat([b["index"] for b in bank_batches]).tolist() == list(range(7))  # the same first samples
    val_index = torch.cat([b["index"] for b in val])
    assert sorted(val_index.tolist()) == list(range(N))  # every sample, none dropped
    first = bank_batches[0]
    assert first["image"].shape == (5, 3, 4, 4) and (first["image_size"] == 4).all()
    # the evaluation view: shorter side 5 → round(4 / 0.875) = 5 (antialiased resize), centre 4×4 crop
    from torchvision.transforms.v2.functional import center_crop, resize

    expected = center_crop(resize(torch.from_numpy(_image(0)), 5, antialias=True), [4, 4])
    assert torch.equal(first["image"][0], expected)
    assert StreamingImageDataModule(shards).val_dataloader() == []


def _epoch_and_resume(rank: int, world_size: int, shards: str) -> tuple[list, list, list]:
    full = _indices(StreamingImageDataModule(shards, batch_size=4, seed=7).train_dataloader())
    first = StreamingImageDataModule(shards, batch_size=4, seed=7)
    head = _indices(first.train_dataloader(), limit=2)
    state = first.state_dict()
    resumed = StreamingImageDataModule(shards, batch_size=4, seed=7)
    resumed.load_state_dict(state)
    loader = resumed.train_dataloader()
    rest = _indices(loader)
    next_epoch = _indices(loader)  # a whole new epoch after the resumed one
    return full, head + rest, next_epoch


def test_two_ranks_see_every_sample_once_and_resume(shards: str, tmp_path: Path) -> None:
    # forked, not spawned: a spawned rank spends most of this test importing torch, Lightning and litdata again
    mp.start_processes(_worker, args=(2, str(tmp_path), _epoch_and_resume, (shards,)), nprocs=2, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    epochs = [full for full, _, _ in results]
    seen = [i for epoch in epochs for batch in epoch for i in batch]
    assert sorted(seen) == list(range(N))  # the union of both ranks is the dataset, once
    assert all(len(epoch) == N // 8 for epoch in epochs)
    for full, resumed, next_epoch in results:
        assert resumed == full  # 2 batches, checkpoint, a new datamodule: the same order
        assert len(next_epoch) == N // 8 and next_epoch != full  # the epoch after is a new shuffle, not a replay


class _Record(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
        return (self.w**2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: L.LightningModule, shards: str, root: Path, ckpt_path: str | None = None, **kwargs) -> None:
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, **kwargs,
    )  # fmt: skip
    trainer.fit(module, StreamingImageDataModule(shards, batch_size=8, num_workers=1, seed=3), ckpt_path=ckpt_path)


def test_trainer_resumes_mid_epoch(shards: str, tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = _Record()
    _fit(full, shards, tmp_path, enable_checkpointing=False)
    interrupted = _Record()
    _fit(interrupted, shards, tmp_path, max_steps=2, callbacks=[ModelCheckpoint(tmp_path / "ck", every_n_train_steps=2)])
    ckpt = next((tmp_path / "ck").glob("*.ckpt"))
    assert torch.load(ckpt, weights_only=False)["StreamingImageDataModule"]["streaming_train"]["num_samples_yielded"] == 16
    resumed = _Record()
    _fit(resumed, shards, tmp_path, ckpt_path=str(ckpt), enable_checkpointing=False)
    assert len(full.seen) == 12 and interrupted.seen == full.seen[:2] and resumed.seen == full.seen[2:]


def test_zoo_data_optimize_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("dog", "cat"):
        (photos / cls).mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 256, size=(10 + i, 14, 3), dtype=np.uint8)
            Image.fromarray(array).save(photos / cls / f"{i}.png")
            pixels[(cls, i)] = array
    (photos / "cat" / "notes.txt").write_text("not an image")
    (photos / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    out = tmp_path / "shards"
    assert main(["data", "optimize", str(photos), str(out)]) == 2
    assert "broken.jpg: truncated or corrupt JPEG" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".shards.partial-*"))

    assert main(["data", "optimize", str(photos), str(out), "--on-bad-file", "skip"]) == 0
    captured = capsys.readouterr()
    assert "wrote 6 images, 2 classes" in captured.out and "1 non-image files ignored" in captured.out
    assert "skipped 1 files" in captured.err and "broken.jpg" in captured.err
    dm = StreamingImageDataModule(str(out), batch_size=6, shuffle=False, drop_last=False)
    batch = next(iter(dm.train_dataloader()))
    assert dm.num_classes == 2
    order = sorted(batch["index"].tolist())
    assert order == list(range(6))
    for image, size, label, i in zip(batch["image"], batch["image_size"], batch["label"], batch["index"]):
        cls, k = ("cat", "dog")[int(label)], int(i) % 3  # classes sorted: cat = 0, dog = 1; files sorted in each
        h, w = (int(v) for v in size)
        assert torch.equal(image[:, :h, :w], torch.from_numpy(pixels[(cls, k)]).permute(2, 0, 1))
        assert (image[:, h:, :] == 0).all()

    assert main(["data", "optimize", str(photos)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line: "... required: output; usage: ..."

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.bin").write_bytes(b"user data")
    assert main(["data", "optimize", str(photos), str(tmp_path / "mine")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "mine" / "keep.bin").read_bytes() == b"user data"


def test_zoo_data_optimize_dataset_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = {s: _cifar_rows(rng, n) for s, n in (("train", 5), ("test", 4))}
    for split in ("train", "test"):
        _dump(tmp_path / split, {b"data": rows[split], b"fine_labels": list(range(len(rows[split]))), b"coarse_labels": [0] * len(rows[split])})
    out = tmp_path / "test_shards"
    assert main(["data", "optimize", "cifar100", str(out), "--data-dir", str(tmp_path), "--split", "test"]) == 0
    batch = next(iter(StreamingImageDataModule(str(out), batch_size=4, shuffle=False, drop_last=False).train_dataloader()))
    order = batch["index"].numpy()
    np.testing.assert_array_equal(batch["image"].numpy(), _expected_cifar(rows["test"])[order])  # lossless PNG
    np.testing.assert_array_equal(batch["label"].numpy(), order)
