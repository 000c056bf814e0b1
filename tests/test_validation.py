"""Every public entry point refuses input that would give a silently wrong result, with one line naming the problem
(zoo/validation.py): image dtype/range/shape, other modalities' dtype/shape/NaN, texts, labels, degenerate batches,
a checkpoint that does not match the config, and data options that would be ignored."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.method_cases import CASES, audio_batch
from zoo.data.base import DataError
from zoo.validation import InputError, check_checkpoint_config, check_labels, check_train_batches, check_train_loader

REPO = Path(__file__).resolve().parents[1]
IMAGE_METHODS = ["simclr", "byol", "swav", "ijepa", "dmt_jepa"]


@pytest.fixture(scope="module")
def models():
    return {name: case.build().eval() for name, case in CASES.items() if name != "slap_infonce"}


def _refuses(fn, *args, match):
    with pytest.raises(InputError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_image_contract_is_the_same_for_every_image_method(models, method):
    model = models[method]
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model.embed(images)
        # integers in 0..255 and floats in [0, 1] are the same images
        assert torch.equal(model.embed(images.long()), reference)
        torch.testing.assert_close(model.embed(images.float() / 255), reference)
    name = type(model).__name__
    _refuses(model.embed, images.float(), match=rf"{name}.embed: float images must lie in \[0, 1\], got 0..25\d; pass uint8 images, or divide by 255")
    _refuses(model.embed, (images.float() / 255 - 0.5) / 0.25, match="pass unnormalised images")
    _refuses(model.embed, images.long() * 2, match=r"torch.int64 images must hold values in 0..255, got 0..5\d\d")
    _refuses(model.embed, torch.full((3, 1, 8, 8), float("nan")), match="NaN or infinite")
    _refuses(model.embed, images.bool(), match="got torch.bool")
    _refuses(model.embed, images.repeat(1, 3, 1, 1), match=r"expected images \[B, 1, H, W\], got shape \[3, 3, 8, 8\]")
    _refuses(model.embed, images[0], match="add a batch dimension")
    _refuses(model.embed, images.numpy(), match="expected a torch.Tensor")


@pytest.mark.parametrize("method", ["ijepa", "dmt_jepa"])
def test_a_vit_fed_another_size_names_both_sizes(models, method):
    model = models[method]
    big = torch.zeros(2, 1, 12, 12, dtype=torch.uint8)
    _refuses(model.embed, big, match=r"built for 8×8 images \(encoder img_size\), got 12×12")
    _refuses(model.encoder, big, match=r"ViT encoder: .*built for 8×8 images")  # the encoder itself, and so training
    with pytest.raises(ValueError, match="view output_size=12 differs from the ViT encoder's img_size=8"):
        CASES[method].build(view={"output_size": 12})


def test_tabular_skeleton_and_audio_inputs(models):
    tjepa, mae, slap = models["tjepa"], models["skeleton_mae"], models["slap"]
    rows = CASES["tjepa"].raw_batch(4, 0)["features"]
    with torch.no_grad():
        tjepa.embed(rows)
        assert torch.equal(tjepa.embed(rows.double().float()), tjepa.embed(rows))
    _refuses(tjepa.embed, rows[:, :4], match=r"TJEPA.embed: expected features \[B, 5\], got shape \[4, 4\]")
    _refuses(tjepa.embed, torch.where(torch.eye(4, 5).bool(), float("nan"), rows), match=r"NaN or infinite values, e.g. at index \[0, 0\]")
    _refuses(tjepa.embed, rows > 0.5, match="got torch.bool")
    skeletons = CASES["skeleton_mae"].raw_batch(2, 0)["skeleton"]
    bad = skeletons.clone()
    bad[1, 0, 3, 4, 0] = float("nan")
    _refuses(mae.embed, bad, match=r"SkeletonMAE.embed: skeletons \[B, C, T, V, M\] hold NaN or infinite values, e.g. at index \[1, 0, 3, 4, 0\]")
    _refuses(mae.embed, skeletons[0], match=r"expected skeletons \[B, C, T, V, M\], got shape")
    _refuses(mae.embed, skeletons.long(), match="expected a float dtype, got torch.int64")
    audio = audio_batch(2)["audio"]
    _refuses(slap.embed, (audio * 32767).to(torch.int16), match=r"got torch.int16 \(int16 PCM audio: divide by 32768\)")
    _refuses(slap.embed, audio[0], match=r"expected waveforms \[B, samples\]")
    _refuses(slap.embed_text, "a piano", match=r"got one string; wrap it: \['a piano'\]")
    _refuses(slap.embed_text, ["a piano", 3], match=r"expected a list of strings, got \['int', 'str'\]")
    _refuses(slap.embed_text, [], match="the list of texts is empty")
    assert slap.embed_text(("a piano", "organ")).shape[0] == 2


def test_labels():
    check_labels(torch.tensor([0, 9]), 10, "x")
    for labels, match in (
        (torch.tensor([0, 10]), r"x: class labels must be 0..9 \(num_classes=10\), found 10"),
        (np.array([-1, 2]), "found -1"),
        (torch.tensor([0.0, 1.0]), "class labels must be integers, got torch.float32"),
    ):
        _refuses(check_labels, labels, 10, "x", match=match)
    _refuses(check_labels, np.array([3, -2]), None, "y", match="y: class labels must be non-negative, found -2")


def test_idx_labels_beyond_the_classes_are_refused(tmp_path):
    from zoo.data.images import ImageDataModule, write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % (3 if prefix == "train" else 5))
    with pytest.raises(DataError, match=r"\(test labels\): class labels must be 0..2 \(num_classes=3\), found 4"):
        ImageDataModule(dataset="idx", data_dir=str(tmp_path), val_size=5, knn_bank_size=0).setup()
    with pytest.raises(DataError, match=r"\(train labels\): class labels must be 0..9 \(num_classes=10\), found 12"):
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(40, 12, dtype=np.uint8))
        ImageDataModule(dataset="mnist", data_dir=str(tmp_path), val_size=5).setup()


def test_options_the_data_source_would_ignore():
    from zoo.data.images import ImageDataModule
    from zoo.data.tabular import TabularDataModule

    with pytest.raises(DataError, match=r"dataset='digits' ships with scikit-learn and reads no files, so data_dir='/data/mnist' would be ignored"):
        ImageDataModule(dataset="digits", data_dir="/data/mnist")
    with pytest.raises(DataError, match=r"data_dir='/cache', source='openml' only apply to a named dataset="):
        TabularDataModule(path="t.csv", target="y", data_dir="/cache", source="openml")


def test_one_text_cell_in_a_numeric_column(tmp_path):
    import pandas as pd

    from zoo.data.tabular import TabularDataModule

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 60), "city": rng.choice(["a", "b"], 60), "y": rng.integers(0, 2, 60)})
    frame["age"] = frame["age"].astype(object)
    frame.loc[17, "age"] = "forty"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t.csv: column 'age' holds numbers except 'forty' at line 19 \(header = line 1\); .*categorical_columns"):
        TabularDataModule(path=str(tmp_path / "t.csv"), target="y").setup()
    with pytest.raises(DataError, match=r"the DataFrame: column 'age' holds numbers except 'forty' at row 17"):
        TabularDataModule(frame=frame, target="y").setup()
    # the documented way to mean it: every value a category
    explicit = TabularDataModule(frame=frame, target="y", categorical_columns=["age", "city"], batch_size=8)
    assert explicit.feature_schema["categorical"] == ["age", "city"]
    regression = frame.assign(y=rng.normal(size=60).astype(object))
    regression.loc[3, "y"] = "n.a."
    with pytest.raises(DataError, match=r"column 'y' holds numbers except 'n.a.' at row 3; .*task='classification'"):
        TabularDataModule(frame=regression.assign(age=1.0), target="y").setup()


def test_degenerate_training_batches():
    check_train_batches("SimCLR", 2, 2, 1, 100, False)
    check_train_batches("SimCLR", 2, 1, 2, 101, True)  # 1 per device × 2 devices, last batch dropped
    check_train_batches("IJEPA", 1, 1, 1, 7, False)  # a batch of 1 is fine for a method without a batch loss
    _refuses(check_train_batches, "SimCLR", 2, 1, 1, 100, True, match=r"SimCLR needs a global batch of at least 2 .* got batch_size=1 × 1 device\(s\)")
    _refuses(
        check_train_batches, "SimCLR", 2, 100, 1, 1101, False,
        match=r"the last train batch of every epoch would hold 1 sample\(s\) \(1101 samples per device, batch_size=100\).*drop_last=true",
    )
    # what the training start reads: the loader Lightning built (its sampler is per device)
    loader = torch.utils.data.DataLoader(list(range(1101)), batch_size=100, drop_last=False)
    method = SimpleNamespace(min_batch_size=2, trainer=SimpleNamespace(train_dataloader=loader, world_size=1))
    _refuses(check_train_loader, method, match="last train batch")
    assert CASES["simclr"].build().min_batch_size == 2 and CASES["ijepa"].build().min_batch_size == 1


def test_checkpoint_that_does_not_match_the_config(tmp_path, models):
    simclr = models["simclr"]
    saved = {"_class_path": "zoo.methods.simclr.SimCLR", **json.loads(json.dumps(dict(simclr.hparams))), "num_classes": 10}
    torch.save({"hyper_parameters": saved}, tmp_path / "last.ckpt")
    ckpt = str(tmp_path / "last.ckpt")
    config = {"class_path": "zoo.methods.simclr.SimCLR", "init_args": {**saved, "num_classes": None}}
    del config["init_args"]["_class_path"]
    check_checkpoint_config("validate", config, ckpt)  # num_classes is linked from the data later
    _refuses(check_checkpoint_config, "predict", config, None, match="predict needs --ckpt_path .* randomly initialised")
    _refuses(
        check_checkpoint_config, "fit", {**config, "class_path": "zoo.methods.byol.BYOL"}, ckpt,
        match=r"holds a zoo.methods.simclr.SimCLR but the config's model is zoo.methods.byol.BYOL",
    )
    edited = {**config, "init_args": {**config["init_args"], "lr": 0.1, "encoder": {**saved["encoder"], "in_chans": 3}}}
    _refuses(check_checkpoint_config, "test", edited, ckpt, match=r"\(encoder: config .* vs checkpoint .*; lr: config 0.1 vs checkpoint 0.05\)")
    # SLAP fills its vocabulary from the data when the config has none: not a difference
    slap = {"_class_path": "zoo.methods.slap.SLAP", "vocabulary": ["[pad]", "[unk]", "[mask]", "piano"], "lr": 0.1}
    torch.save({"hyper_parameters": slap}, tmp_path / "slap.ckpt")
    check_checkpoint_config("fit", {"class_path": "zoo.methods.slap.SLAP", "init_args": {"vocabulary": None, "lr": 0.1}}, str(tmp_path / "slap.ckpt"))
    # a checkpoint's probe is sized for its data's classes
    with pytest.raises(InputError, match=r"trained on data with num_classes=5, but this datamodule has num_classes=None"):
        simclr.on_load_checkpoint({"hyper_parameters": {"num_classes": 5}})


def test_cli_predict_without_a_checkpoint_and_a_mismatched_one(tmp_path, models, capsys):
    from zoo.cli import main

    digits = ["--config", str(REPO / "configs" / "simclr" / "digits.yaml"), "--trainer.logger", "false"]
    assert main(["predict", *digits]) == 2
    assert "zoo predict: error: predict needs --ckpt_path" in capsys.readouterr().err
    saved = {"_class_path": "zoo.methods.simclr.SimCLR", **json.loads(json.dumps(dict(models["simclr"].hparams)))}
    torch.save({"hyper_parameters": saved}, tmp_path / "simclr.ckpt")
    byol = ["--config", str(REPO / "configs" / "byol" / "digits.yaml"), "--trainer.logger", "false"]
    assert main(["validate", *byol, "--ckpt_path", str(tmp_path / "simclr.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "holds a zoo.methods.simclr.SimCLR but the config's model is zoo.methods.byol.BYOL" in err and err.count("\n") == 1
