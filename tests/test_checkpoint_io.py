"""AtomicCheckpointIO: a failed save leaves the previous checkpoint whole; `zoo fit` uses it by default."""

from __future__ import annotations

import os

import pytest
import torch

from tests.test_cli import DIGITS
from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli import ZooCLI


def test_save_replaces_the_file_and_leaves_no_temporaries(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert io.load_checkpoint(path, weights_only=True)["step"] == 2
    assert os.listdir(path.parent) == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, path)
    before = path.read_bytes()

    def torn_write(obj, f):  # serialisation fails half-way (the disk-level tear: tests/test_cli_errors.py)
        f.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("zoo.checkpoint_io.torch.save", torn_write)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]
    assert torch.equal(io.load_checkpoint(path, weights_only=True)["w"], torch.arange(1000.0))


def test_zoo_cli_trainers_write_checkpoints_atomically(tmp_path):
    cli = ZooCLI(args=["--config", DIGITS, "--trainer.logger", "false", "--trainer.accelerator", "cpu",
                       "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
