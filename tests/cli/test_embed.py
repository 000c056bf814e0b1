"""``zoo embed``: image folders (with a Hub folder and a .ckpt), a split rebuilt from the training record, parquet,
bad files, an existing output, a table with T-JEPA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from tests.method_cases import CASES
from zoo.cli import main
from zoo.data.image_files import decode_image


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("zoo embed: error: "), err
    return err


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def eval_view(path: str, size: int, crop_fraction: float) -> torch.Tensor:
    """The expected preprocessing, written out with torchvision: luma, shorter side to size / crop_fraction, centre
    crop."""
    from torchvision.transforms.v2.functional import center_crop, resize

    image = decode_image(Path(path).read_bytes(), source=path, channels=1)
    return center_crop(resize(image, max(size, round(size / crop_fraction)), antialias=True), [size, size])


def expected(model, paths: list[str], size: int, crop_fraction: float) -> torch.Tensor:
    with torch.no_grad():
        return model.embed(torch.stack([eval_view(p, size, crop_fraction) for p in paths]))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two class folders of RGB images of mixed sizes and formats."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (12 + 5 * i, 10 + 7 * c + 3 * i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory):
    model = CASES["simclr"].build().eval()
    folder = tmp_path_factory.mktemp("hub") / "simclr"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, images):
    """(trained model, its checkpoint): one `zoo fit`-style step on ``images`` (ImageFilesDataModule, 2 test images
    held out, 8 px evaluation view without a crop margin), so the checkpoint carries a real training record."""
    import lightning as L

    from zoo.data.image_files import ImageFilesDataModule

    model = CASES["simclr"].build(views={"output_size": 8})
    data = ImageFilesDataModule(root=str(images), test_size=2, batch_size=4, eval_size=8, crop_fraction=1.0, channels=1, knn_bank_size=0)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, data)
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), path


def paths_of(root: Path) -> list[str]:
    return [str(root / c / f"{i}.{'png' if i % 2 else 'jpg'}") for c in ("cat", "dog") for i in range(3)]


def test_folder_equals_model_embed_in_order(images, hub_model, tmp_path, capsys):
    model, folder = hub_model
    out = tmp_path / "emb.safetensors"
    assert main(["embed", "--pretrained", str(folder), str(images), "--output", str(out), "--image-size", "8",
                 "--batch-size", "4", "--quiet"]) == 0
    assert "wrote 6 embeddings of dimension 64 with labels" in capsys.readouterr().out
    tensors, meta = read_safetensors(out)
    paths = paths_of(images)
    assert json.loads(meta["ids"]) == paths
    assert tensors["embedding"].dtype == torch.float32
    # the default device is cuda where there is one (TF32 convolutions there: a looser tolerance)
    tol = 1e-2 if torch.cuda.is_available() else 1e-5
    torch.testing.assert_close(tensors["embedding"], expected(model, paths, 8, 0.875), rtol=tol, atol=tol)
    assert tensors["label"].tolist() == [0, 0, 0, 1, 1, 1] and tensors["index"].tolist() == list(range(6))
    assert json.loads(meta["classes"]) == ["cat", "dog"] and json.loads(meta["skipped"]) == []
    assert json.loads(meta["view"]) == {"size": 8, "crop_fraction": 0.875, "channels": 1}


def test_ckpt_split_from_training_record_to_parquet(images, ckpt, tmp_path):
    import pyarrow.parquet as pq

    from zoo.data.image_files import ImageFilesDataModule

    model, ckpt = ckpt
    out = tmp_path / "test.parquet"
    # INPUT "test": the held-out split of the data in the checkpoint's training record, its eval size and crop
    assert main(["embed", "--pretrained", str(ckpt), "test", "--output", str(out), "--quiet", "--device", "cpu"]) == 0
    table = pq.read_table(out)
    test_paths, test_labels = ImageFilesDataModule(root=str(images), test_size=2, seed=0).files("test")
    assert table.column("id").to_pylist() == test_paths
    assert table.column("label").to_pylist() == test_labels.tolist()
    embedding = torch.tensor(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)))
    torch.testing.assert_close(embedding, expected(model, test_paths, 8, 1.0), rtol=1e-5, atol=1e-5)
    assert json.loads(table.schema.metadata[b"classes"]) == ["cat", "dog"]
    # a folder with the same checkpoint: the size and crop come from its training record
    out2 = tmp_path / "folder.safetensors"
    assert main(["embed", "--pretrained", str(ckpt), str(images), "--output", str(out2), "-q", "--device", "cpu"]) == 0
    torch.testing.assert_close(read_safetensors(out2)[0]["embedding"], expected(model, paths_of(images), 8, 1.0), rtol=1e-5, atol=1e-5)


def test_bad_file_error_skip_and_existing_output(images, hub_model, tmp_path, capsys):
    import shutil

    _, folder = hub_model
    data = tmp_path / "images"
    shutil.copytree(images, data)
    (data / "dog" / "1b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated PNG, between dog/1 and dog/2
    out = tmp_path / "emb.safetensors"
    common = ["embed", "--pretrained", str(folder), str(data), "--output", str(out), "--image-size", "8", "-q", "--device", "cpu"]
    assert main(common) == 2
    assert "dog/1b.png: truncated or corrupt PNG" in one_line_error(capsys) and not out.exists()
    assert main([*common, "--on-bad-file", "skip"]) == 0
    assert "warning: skipped 1 file(s)" in capsys.readouterr().err
    tensors, meta = read_safetensors(out)
    ids = json.loads(meta["ids"])
    assert len(ids) == 6 and str(data / "dog" / "1b.png") not in ids
    assert tensors["index"].tolist() == [0, 1, 2, 3, 4, 6]  # rows of the input listing; row 5 was left out
    assert [s.split(":")[0] for s in json.loads(meta["skipped"])] == [str(data / "dog" / "1b.png")]
    before = out.read_bytes()
    assert main([*common, "--on-bad-file", "skip"]) == 2
    assert "exists; choose another --output or pass --overwrite" in one_line_error(capsys)
    assert out.read_bytes() == before
    assert main([*common, "--on-bad-file", "skip", "--overwrite", "--batch-size", "2"]) == 0
    torch.testing.assert_close(read_safetensors(out)[0]["embedding"], tensors["embedding"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image-size", "8", "--output", "{tmp}/x.npy"], "cannot tell the format from the suffix '.npy'"),
        (["--output", "{tmp}/x.safetensors"], "pass --image-size N"),
        (["--image-size", "8", "--output", "{tmp}/x.safetensors", "--device", "cuda:99"], "--device cuda:99"),
    ],
)
def test_user_errors_are_one_line(images, hub_model, tmp_path, capsys, args, message):
    _, folder = hub_model
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["embed", "--pretrained", str(folder), str(images), *args]) == 2
    assert message in one_line_error(capsys)


def test_table_rows_with_tjepa(tmp_path):
    import pandas as pd

    from zoo.data.tabular import TabularDataModule

    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.uniform(size=n), "c": rng.integers(0, 9, n).astype(float),
        "d": rng.choice(["x", "y", "z"], n), "e": rng.choice(["p", "q"], n), "y": rng.choice(["no", "yes"], n),
    })  # fmt: skip
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    model = CASES["tjepa"].build().eval()
    model._training_record = {"data": {"class": "TabularDataModule", "path": str(train), "target": "y"}}
    model.save_pretrained(tmp_path / "tjepa")
    new = frame.iloc[[5, 1, 30]].drop(columns=["y"]).reset_index(drop=True)
    new.loc[1, "d"] = "never seen"  # a category absent from training: the unknown code, as in training
    rows = tmp_path / "rows.csv"
    new.to_csv(rows, index=False)
    out = tmp_path / "rows.safetensors"
    assert main(["embed", "--pretrained", str(tmp_path / "tjepa"), str(rows), "--output", str(out), "-q", "--device", "cpu"]) == 0
    tensors, meta = read_safetensors(out)
    dm = TabularDataModule(path=str(train), target="y")
    dm.setup()
    with torch.no_grad():
        want = model.embed(torch.from_numpy(dm.preprocessor.transform(new)).float())
    torch.testing.assert_close(tensors["embedding"], want, rtol=1e-5, atol=1e-5)
    assert tensors["index"].tolist() == [0, 1, 2] and "label" not in tensors and "ids" not in meta


def test_skeleton_files_read_as_the_training_data(tmp_path):
    from zoo.data.skeleton import SkeletonDataModule

    assert main(["data", "build", "skeleton-actions", str(tmp_path / "skel"), "--train", "12", "--test", "5", "--frames", "8"]) == 0
    model = CASES["skeleton_mae"].build().eval()
    record = {"class": "SkeletonDataModule", "path": str(tmp_path / "train-data"), "data_format": "generated", "num_frames": 8, "val_size": 2}
    model._training_record = {"data": record}
    model.save_pretrained(tmp_path / "mae")
    out = tmp_path / "skel.safetensors"
    # the record's datamodule (its frames, centring) pointed at the new files; their test split
    assert main(["embed", "--pretrained", str(tmp_path / "mae"), str(tmp_path / "skel"), "--output", str(out), "-q", "--device", "cpu"]) == 0
    tensors, _ = read_safetensors(out)
    dm = SkeletonDataModule(**{**{k: v for k, v in record.items() if k != "class"}, "path": str(tmp_path / "skel")})
    dm.setup()
    batch = next(iter(dm.test_dataloader()[-1]))
    with torch.no_grad():
        torch.testing.assert_close(tensors["embedding"], model.embed(batch["skeleton"]), rtol=1e-5, atol=1e-5)
    assert tensors["label"].tolist() == batch["label"].tolist() and len(batch["label"]) == 5
