"""User and environment errors of the `zoo` command are one line: unwritable outputs, a full disk, an offline Hub,
GPU presets without a GPU, a truncated or folder --ckpt_path, a missing optional package; `python -m zoo.cli` the
same as `zoo`."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_cli import DIGITS, REPO
from zoo.cli import main
from zoo.cli.errors import user_error

QUIET = ["--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.accelerator", "cpu"]
HUB_FOLDER = REPO / "checkpoints" / "simclr-fashion-mnist"


def one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
    return err.strip()


def full_disk(monkeypatch, path_part: str = "") -> None:
    """Every zoo atomic write gets half its bytes onto the disk, then ENOSPC."""
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return self.f.fileno()

        def close(self):
            self.f.close()

    monkeypatch.setattr("zoo.atomic.os.fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))


# ---- unwritable outputs: one line naming the folder, before any long work ------------------------------------------


@pytest.fixture
def not_a_folder(tmp_path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker / "out"  # anything below a regular file cannot be created, even by root


def test_export_to_an_unwritable_folder(not_a_folder, capsys):
    start = time.monotonic()
    assert main(["export", "missing.ckpt", str(not_a_folder / "hub")]) == 2
    assert f"{not_a_folder}: cannot write there: Not a directory" in one_line(capsys, "zoo export")
    assert time.monotonic() - start < 2  # checked before the checkpoint is read


def test_data_build_into_an_unwritable_folder(not_a_folder, capsys):
    assert main(["data", "build", "skeleton-actions", str(not_a_folder)]) == 2
    assert str(not_a_folder.parent) in one_line(capsys, "zoo data")


def test_cards_to_an_unwritable_file(not_a_folder, capsys):
    assert main(["cards", "--checkpoints", str(REPO / "checkpoints"), "--output", str(not_a_folder / "CARD.md")]) == 2
    assert "Not a directory" in one_line(capsys, "zoo cards")


def test_evaluate_output_is_checked_before_the_protocol_runs(not_a_folder, capsys):
    start = time.monotonic()
    assert main(["evaluate", "no-such-model", "--protocol", "tabular", "--output", str(not_a_folder / "r.json")]) == 2
    assert f"{not_a_folder}: cannot write there" in one_line(capsys, "zoo evaluate")
    assert time.monotonic() - start < 2


# ---- a full disk: no half-written file, the previous file intact, one line -----------------------------------------


def test_embedding_writer_on_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from zoo.eval.embeddings import EmbeddingWriter

    out = tmp_path / "emb.safetensors"
    out.write_bytes(b"the previous run's embeddings")
    writer = EmbeddingWriter(str(out))
    trainer, module = SimpleNamespace(world_size=1, global_rank=0), SimpleNamespace(method_name="simclr")
    writer.on_predict_start(trainer, module)  # the folder is writable
    full_disk(monkeypatch)
    batches = [{"embedding": torch.randn(4, 8), "label": torch.arange(4)}]
    with pytest.raises(OSError) as caught:
        writer.write_on_epoch_end(trainer, module, batches, [[0, 1, 2, 3]])
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(out)
    assert os.listdir(tmp_path) == ["emb.safetensors"] and out.read_bytes() == b"the previous run's embeddings"
    message, status = user_error(caught.value, tool=False)
    assert status == 1 and "\n" not in message
    assert message.startswith(f"{out}: No space left on device (writing ") and "nothing was written" in message


def test_embedding_writer_checks_its_folder_before_predicting(not_a_folder):
    from types import SimpleNamespace

    from zoo.eval.embeddings import EmbeddingWriter

    with pytest.raises(OSError) as caught:
        EmbeddingWriter(str(not_a_folder / "e.safetensors")).on_predict_start(SimpleNamespace(world_size=1, global_rank=0), None)
    message, status = user_error(caught.value, tool=False)
    assert status == 2 and message.startswith(f"{not_a_folder}: cannot write there")


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
    from zoo.checkpoint_io import AtomicCheckpointIO

    ckpt = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    ckpt.save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, path)
    before = path.read_bytes()
    full_disk(monkeypatch)
    with pytest.raises(OSError) as caught:
        ckpt.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert os.listdir(tmp_path) == ["last.ckpt"] and path.read_bytes() == before
    assert user_error(caught.value, tool=False)[1] == 1


# ---- the Hub offline: fails at once --------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    import socket

    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(proxy, raising=False)


def test_push_offline_is_one_line_at_once(offline, capsys):
    start = time.monotonic()
    assert main(["push", str(HUB_FOLDER), "someone/x"]) == 2
    assert time.monotonic() - start < 2
    err = one_line(capsys, "zoo push")
    assert "someone/x: the Hub (huggingface.co) cannot be reached" in err


def test_unknown_hub_id_offline_fails_at_once(offline):
    import zoo

    start = time.monotonic()
    with pytest.raises(ValueError, match="could not get config.json from the Hub: the Hub .* cannot be reached.*not in the local Hub cache"):
        zoo.from_pretrained("someone/nothing-here")
    assert time.monotonic() - start < 2


# ---- Lightning commands ----------------------------------------------------------------------------------------------


def test_gpu_preset_without_a_gpu_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    preset = str(REPO / "configs" / "trainer" / "gpu_bf16.yaml")
    assert main(["fit", "--config", DIGITS, "--config", preset, "--trainer.logger", "false", "--trainer.callbacks", "[]"]) == 2
    err = one_line(capsys, "zoo fit")
    assert "no usable GPU" in err and "configs/trainer/cpu.yaml" in err


def test_progress_bar_off_with_a_recipe_that_lists_one(tmp_path):
    from lightning.pytorch.callbacks import ProgressBar

    from zoo.cli import ZooCLI

    assert "RichProgressBar" in Path(DIGITS).read_text()
    cli = ZooCLI(args=["--config", DIGITS, "--trainer.logger", "false", "--trainer.accelerator", "cpu",
                       "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert cli.trainer.progress_bar_callback is None
    assert not [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]


@pytest.mark.parametrize("kind", ["hub folder", "truncated", "missing"])
def test_bad_ckpt_path_is_one_line(kind, tmp_path, capsys, fitted_checkpoint):
    path = {"hub folder": HUB_FOLDER, "missing": tmp_path / "nope.ckpt", "truncated": tmp_path / "last.ckpt"}[kind]
    if kind == "truncated":
        path.write_bytes(fitted_checkpoint.read_bytes()[:5000])
    assert main(["validate", "--config", DIGITS, *QUIET, "--ckpt_path", str(path)]) == 2
    err = one_line(capsys, "zoo validate")
    expected = {"hub folder": "is a folder (a Hub folder", "truncated": "not a readable checkpoint", "missing": "no such file"}[kind]
    assert f"--ckpt_path {path}" in err and expected in err


@pytest.fixture(scope="module")
def fitted_checkpoint(tmp_path_factory) -> Path:
    from zoo.checkpoint_io import AtomicCheckpointIO

    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.randn(3000)}, "hyper_parameters": {}}, path)
    return path


def test_tensorboard_logger_without_tensorboard(monkeypatch, capsys):
    import lightning.fabric.loggers.tensorboard as fabric_tb
    import lightning.pytorch.loggers.tensorboard as pytorch_tb

    monkeypatch.setattr(fabric_tb, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(fabric_tb, "_TENSORBOARDX_AVAILABLE", False)
    monkeypatch.setattr(pytorch_tb, "_TENSORBOARD_AVAILABLE", False)
    logger = json.dumps({"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "tb"}})
    assert main(["fit", "--config", DIGITS, "--trainer.callbacks", "[]", "--trainer.accelerator", "cpu", "--trainer.logger", logger]) == 2
    err = one_line(capsys, "zoo fit")
    assert "TensorBoardLogger cannot be used: tensorboard is not installed: `pip install tensorboard`" in err


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_python_m_zoo_cli_finetune_errors_are_one_line(monkeypatch, capsys):
    """`python -m zoo.cli` (how torchrun and SLURM launch zoo) runs zoo/cli/__main__.py (runpy does the same here,
    without a new interpreter): its errors are still one line."""
    import runpy

    config = str(REPO / "configs" / "finetune" / "digits.yaml")
    monkeypatch.setattr(sys, "argv", ["zoo", "finetune", "--config", config, "--model.lr", "abc"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("zoo.cli", run_name="__main__")
    assert done.value.code == 2
    assert capsys.readouterr().err == "zoo finetune: error: model.lr: expected a float, got abc\n"


# ---- tables and warnings ---------------------------------------------------------------------------------------------


def test_validate_table_has_one_column_when_the_bank_loader_logs_nothing(capsys):
    import lightning as L

    from zoo.cli.lightning import one_column_result_tables

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    one_column_result_tables(trainer)
    same = {"val/knn_acc": torch.tensor(0.5), "val/rankme": torch.tensor(3.0)}
    trainer.validate_loop._print_results([dict(same), dict(same)], "validate")
    out = capsys.readouterr().out
    assert "DataLoader 0" in out and "DataLoader 1" not in out and out.count("knn_acc") == 1
    # metrics logged per loader keep their columns
    trainer.test_loop._print_results([{"test/x/dataloader_idx_0": 1.0}, {"test/x/dataloader_idx_1": 2.0}], "test")
    assert "DataLoader 1" in capsys.readouterr().out


def test_lightning_warnings_that_do_not_apply_to_zoo_are_silenced_and_others_are_not():
    import warnings

    from lightning.pytorch.utilities import rank_zero_warn
    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    from zoo.cli.lightning import silence_warnings_that_do_not_apply_to_zoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_warnings_that_do_not_apply_to_zoo()
        rank_zero_warn("You're resuming from a checkpoint that ended before the epoch ended and your dataloader is"
                       " not resumable. This can cause unreliable results.", category=PossibleUserWarning)
        rank_zero_warn("The number of training batches (2) is smaller than the logging interval", category=PossibleUserWarning)
    assert [str(w.message)[:30] for w in caught] == ["The number of training batches"]


# ---- progress during minutes of silent work ------------------------------------------------------------------------


def test_pseudo_labelling_prints_progress_once_then_uses_the_cache(tmp_path, caplog):
    import logging

    from zoo.data.pseudo_labels import DEFAULT_PSEUDO_LABEL_CONFIG, cached_pseudo_labels

    images = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    config = {**DEFAULT_PSEUDO_LABEL_CONFIG, "autoencoder_epochs": 2, "cache_dir": str(tmp_path)}
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        labels = cached_pseudo_labels(images, 4, config)
        first = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert (cached_pseudo_labels(images, 4, config) == labels).all()
        second = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[1].split()[0] for m in first] == ["computing", "autoencoder", "autoencoder", "k-means", "done"]
    assert "autoencoder epoch 2/2: reconstruction MSE" in first[2] and f"cached in {tmp_path}" in first[0]
    assert second == []  # cached: nothing to report


@pytest.mark.parametrize(
    "args", [["export"], ["push", "only-a-folder"], ["list", "--nope"], ["cards", "--nope"], ["embed"],
             ["data", "optimize"], ["export", "--format", "nope", "a", "b"]],
)  # fmt: skip
def test_usage_errors_of_zoo_tools_are_one_line(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"zoo {args[0]}: error: ") and "; usage: zoo " in err
