"""Kill a `zoo fit` mid-epoch, resume it from its last checkpoint: the final weights equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import TINY_ENCODER
from tests.test_cli import DIGITS

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 6
CHECKPOINT_EVERY = 3  # 3 epochs x 6 steps: the run's last step (18) is a checkpoint step too
KILL_AT = 10  # epoch 1, batch 4: the last checkpoint (step 9) is mid-epoch


def fit(root: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    callbacks = [{
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(root / "checkpoints"), "every_n_train_steps": CHECKPOINT_EVERY, "save_last": True,
                     "enable_version_counter": False},
    }]
    if kill_at is not None:
        callbacks.append({"class_path": "tests.faults.KillAtStep", "init_args": {"step": kill_at}})
    args = [
        "fit", "--config", DIGITS,
        "--trainer.max_epochs", "3", "--trainer.limit_train_batches", str(STEPS_PER_EPOCH),
        "--trainer.limit_val_batches", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(root),
        "--trainer.callbacks", json.dumps(callbacks),
        "--model.init_args.encoder", json.dumps(TINY_ENCODER), "--data.init_args.batch_size", "32", *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_killed_and_resumed_fit_ends_with_the_same_weights(tmp_path):
    reference = fit(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]

    killed = fit(tmp_path / "resumed", kill_at=KILL_AT)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: no teardown ran
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    interrupted = torch.load(last, weights_only=True)
    assert interrupted["global_step"] == 9 and interrupted["epoch"] == 1  # mid-epoch: 3 of epoch 1's 6 batches

    resumed = fit(tmp_path / "resumed", "--ckpt_path", str(last))
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == expected["global_step"] == 18
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    different = [k for k, v in expected["state_dict"].items() if not torch.equal(final["state_dict"][k], v)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
    # the optimizer (LARS momentum buffers) and the lr schedule continue too
    for (_, a), (_, b) in zip(sorted(expected["optimizer_states"][0]["state"].items()), sorted(final["optimizer_states"][0]["state"].items())):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert expected["lr_schedulers"] == final["lr_schedulers"]
