"""configs/logger/ presets: layered on a recipe like the trainer presets; TensorBoard event files hold the val metrics."""

import importlib
import inspect
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_ENCODER
from tests.test_cli import DIGITS
from zoo.cli import main

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "logger"


@pytest.mark.parametrize("preset", ["tensorboard", "csv", "wandb", "mlflow"])
def test_preset_names_a_logger_and_only_its_arguments(preset):
    logger = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())["trainer"]["logger"]
    module, _, name = logger["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # Lightning's wrappers import without the backend package
    accepted = set(inspect.signature(cls.__init__).parameters)
    assert set(logger["init_args"]) <= accepted, f"{preset}: {set(logger['init_args']) - accepted} not taken by {name}"


def test_tensorboard_preset_writes_val_metrics(tmp_path, monkeypatch):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    monkeypatch.chdir(tmp_path)  # the preset writes under ./runs
    args = [
        "fit", "--config", DIGITS, "--config", str(PRESETS / "tensorboard.yaml"),
        "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "2",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]",
        "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path),
        "--model.init_args.encoder", json.dumps(TINY_ENCODER), "--data.init_args.batch_size", "32",
    ]  # fmt: skip
    assert main(args) == 0
    (events,) = (tmp_path / "runs" / "tensorboard" / "version_0").glob("events.out.tfevents.*")
    accumulator = event_accumulator.EventAccumulator(str(events))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"val/knn_acc", "val/probe_acc", "val/rankme", "train/loss"} <= scalars, scalars
    (knn,) = accumulator.Scalars("val/knn_acc")
    assert 0.0 <= knn.value <= 1.0  # one validation, after the 2 steps
