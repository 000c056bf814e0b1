"""The `zoo` command end to end on the built-in digits data with a tiny encoder."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.methods.simclr import SimCLR

REPO = Path(__file__).resolve().parents[1]
DIGITS = str(REPO / "configs" / "simclr" / "digits.yaml")


def tiny_overrides(root: Path, tiny_encoder: dict, config: str = DIGITS) -> list[str]:
    return [
        "--config", config,
        "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", "3",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks", json.dumps([{
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True},
        }]),
        "--trainer.logger", json.dumps({
            "class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root), "name": "logs"},
        }),
        "--trainer.default_root_dir", str(root),
        "--model.init_args.encoder", json.dumps(tiny_encoder),
        "--data.init_args.batch_size", "32",
    ]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from tests.conftest import TINY_ENCODER

    root = tmp_path_factory.mktemp("fit")
    assert main(["fit", *tiny_overrides(root, TINY_ENCODER)]) == 0
    return root


def test_list_shows_registered_methods(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "simclr" in out and "zoo.methods.simclr.SimCLR" in out
    assert "simclr" in zoo.list_models()


def test_fit_logs_evaluation_and_writes_a_zoo_checkpoint(fitted):
    metrics = (fitted / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    for column in ("train/loss", "val/knn_acc", "val/probe_acc", "val/rankme"):
        assert column in header
    knn = [float(v) for row in metrics[1:] if (v := row.split(",")[header.index("val/knn_acc")])]
    # one value per epoch; digits are easy, so even 6 steps of a tiny encoder are far above chance (0.1) — a
    # mismatch between bank labels and features would give chance
    assert len(knn) == 2 and all(0.5 < value <= 1.0 for value in knn)
    checkpoint = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo_method"] == "simclr"
    assert checkpoint["hyper_parameters"]["num_classes"] == 10  # linked from the datamodule
    assert checkpoint["zoo_training_record"]["epochs_completed"] == 2
    assert checkpoint["zoo_training_record"]["data"]["dataset"] == "digits"


def test_export_then_from_pretrained_matches_the_checkpoint(fitted, tmp_path):
    ckpt = fitted / "checkpoints" / "last.ckpt"
    assert main(["export", str(ckpt), str(tmp_path / "hub")]) == 0
    loaded = zoo.from_pretrained(tmp_path / "hub")
    reference = SimCLR.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), reference.embed(images))
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "digits" in card and "val/knn_acc" in card
    # the exact command, machine and wall time of the run that trained the weights (RunRecord), in record and card
    record = loaded.training_record()
    assert record["command"].startswith("zoo fit --config ") and f"```bash\n{record['command']}\n```" in card
    assert 0 < record["wall_time_s"] < 600 and record["machine"] in card and f"{os.cpu_count()}-core" in record["machine"]


def test_validate_and_predict_from_the_checkpoint(fitted, capsys):
    from tests.conftest import TINY_ENCODER

    ckpt = str(fitted / "checkpoints" / "last.ckpt")
    assert main(["validate", *tiny_overrides(fitted / "validate", TINY_ENCODER), "--ckpt_path", ckpt]) == 0
    out = capsys.readouterr().out
    assert "val/knn_acc" in out and "val/rankme" in out
    output = fitted / "predict" / "embeddings.safetensors"
    predict_args = tiny_overrides(fitted / "predict", TINY_ENCODER)
    predict_args[predict_args.index("--trainer.callbacks") + 1] = json.dumps(
        [{"class_path": "zoo.eval.EmbeddingWriter", "init_args": {"output_path": str(output)}}]
    )
    assert main(["predict", *predict_args, "--ckpt_path", ckpt]) == 0
    written = load_file(output)
    model = SimCLR.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    from zoo.data.images import ImageDataModule

    images, labels = ImageDataModule(dataset="digits", val_size=300).arrays("test")
    assert written["embedding"].shape == (len(images), 64)
    assert torch.equal(written["label"], torch.from_numpy(labels))
    assert torch.equal(written["index"], torch.arange(len(images)))
    torch.testing.assert_close(written["embedding"][:16], model.embed(torch.from_numpy(images[:16])))


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    assert main(["export", str(tmp_path / "plain.ckpt"), str(tmp_path / "out")]) == 2
    assert "not a zoo checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_of_a_checkpoint_whose_weights_do_not_match_its_args(fitted, tmp_path, capsys):
    checkpoint = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["projector_out_dim"] = 7
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    assert main(["export", str(tmp_path / "edited.ckpt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot rebuild the model" in err and "projector" in err and "\n" not in err.strip()
    assert not (tmp_path / "out").exists()


def test_bad_data_is_one_line_before_training(tmp_path, capsys):
    args = ["fit", "--config", str(REPO / "configs" / "simclr" / "fashion_mnist.yaml"), "--trainer.logger", "false",
            "--trainer.callbacks", "[]", "--data.init_args.data_dir", str(tmp_path / "nowhere"),
            "--trainer.default_root_dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo fit: error:") and "nowhere" in err and "apt-get install dataset-fashion-mnist" in err
    # val_size larger than the data: a DataError raised in setup, also one line
    args = ["fit", "--config", DIGITS, "--trainer.logger", "false", "--trainer.callbacks", "[]",
            "--data.init_args.val_size", "5000", "--trainer.default_root_dir", str(tmp_path / "run")]
    assert main(args) == 2
    assert "val_size=5000" in capsys.readouterr().err


def test_unknown_method_in_config_fails_before_training(tmp_path, capsys):
    assert main(["fit", "--config", DIGITS, "--model", "zoo.methods.nothing.NoSuchMethod"]) == 2
    err = capsys.readouterr().err.strip()
    assert "NoSuchMethod" in err and "\n" not in err
