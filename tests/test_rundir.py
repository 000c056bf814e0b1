"""One run directory per `zoo fit`: derived paths, refusal of another run's directory, --resume/--overwrite, the
lock, and Ctrl-C / SIGTERM stopping at a step boundary with a checkpoint and the command to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import TINY_ENCODER
from tests.test_cli import DIGITS
from zoo.cli import main
from zoo.rundir import LOCK_NAME, RunDirError, RunLock, is_launcher_rank_zero


class SignalAtStep(L.Callback):
    """Send ``signum`` to this process at the end of the training step that reaches ``step``, as Ctrl-C would."""

    def __init__(self, step: int, signum: int = int(signal.SIGINT)) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def fit_args(run: str, steps: int, *extra: str) -> list[str]:
    """The shipped digits recipe (its logger and checkpoint callbacks untouched), tiny and short."""
    return ["fit", "--config", DIGITS, "--trainer.default_root_dir", run, "--trainer.max_steps", str(steps),
            "--trainer.limit_val_batches", "0", "--trainer.accelerator", "cpu",
            "--model.init_args.encoder", json.dumps(TINY_ENCODER), "--data.init_args.batch_size", "32", *extra]


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    """Each test works in its own directory (runs/ is relative), on one thread: these models are tiny, and on a loaded
    machine a second thread mostly waits."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_stopped_by_ctrl_c_is_refused_resumed_exactly_or_overwritten(capsys):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run = Path("runs/x")
    ctrl_c = json.dumps({"class_path": "tests.test_rundir.SignalAtStep", "init_args": {"step": 2}})
    with pytest.raises(SystemExit) as stopped:
        main(fit_args(str(run), 4, "--trainer.callbacks+", ctrl_c))
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    # mid-epoch (35 steps an epoch), between steps: last.ckpt is written at the step the run stopped at
    assert "zoo fit: SIGINT: stopped at epoch 0, step 2; latest checkpoint: runs/x/checkpoints/last.ckpt (step 2)" in err
    resume = err.split("resume with: ")[1].splitlines()[0]
    assert resume.startswith("zoo fit --config") and resume.endswith("--resume") and "--trainer.default_root_dir runs/x" in resume
    assert step_of(run / "checkpoints" / "last.ckpt") == 2
    assert (run / "logs" / "version_0" / "config.yaml").is_file() and sorted(os.listdir()) == ["runs"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert not (run / LOCK_NAME).exists()

    assert main(fit_args(str(run), 4)) == 2  # the same command again: refused, nothing touched
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "runs/x holds the checkpoints of an earlier run" in err and "--resume" in err and "--overwrite" in err

    assert main(fit_args(str(run), 4, "--resume")) == 0  # last.ckpt stays this run's newest: no last-v1.ckpt
    assert sorted(os.listdir(run / "checkpoints")) == ["last.ckpt"] and step_of(run / "checkpoints" / "last.ckpt") == 4
    assert sorted(os.listdir(run / "logs")) == ["version_0", "version_1"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # after a whole fit too
    assert main(fit_args("runs/whole", 4)) == 0  # the resumed run ends where an uninterrupted one does
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    whole = torch.load("runs/whole/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert [k for k in whole if not torch.equal(whole[k], resumed[k])] == []

    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(fit_args(str(run), 1, "--overwrite")) == 0  # starts over; only the earlier run's own files go
    assert "removed 1 checkpoint (last.ckpt) from runs/x/checkpoints; 2 log folders from runs/x/logs" in capsys.readouterr().err
    assert step_of(run / "checkpoints" / "last.ckpt") == 1
    assert (run / "notes.txt").read_text() == "mine" and sorted(os.listdir(run / "logs")) == ["version_0"]
    # the saved config records the run, not the flag: running it again does not overwrite anything
    assert "overwrite: false" in (run / "logs" / "version_0" / "config.yaml").read_text()

    assert main(fit_args("runs/empty", 1, "--resume")) == 2
    assert "nothing to resume in runs/empty" in capsys.readouterr().err


def test_sigterm_without_a_logger_or_root_dir_stops_at_a_step_in_the_derived_run_directory(capsys):
    term = json.dumps({"class_path": "tests.test_rundir.SignalAtStep", "init_args": {"step": 1, "signum": int(signal.SIGTERM)}})
    with pytest.raises(SystemExit) as stopped:
        main(fit_args("null", 3, "--trainer.logger", "false", "--trainer.callbacks+", term))
    assert stopped.value.code == 1
    assert "SIGTERM: stopped at epoch 0, step 1; latest checkpoint: runs/simclr/checkpoints/last.ckpt" in capsys.readouterr().err
    assert sorted(os.listdir()) == ["runs"]  # nothing in the working directory: the config is in the run's
    assert sorted(os.listdir("runs/simclr")) == ["checkpoints", "config.yaml"]
    assert step_of(Path("runs/simclr/checkpoints/last.ckpt")) == 1


def test_a_live_lock_is_refused_with_its_holder_and_a_dead_ones_is_taken_over(capsys):
    held = RunLock("runs/x")
    assert held.acquire("zoo fit ...") is None
    with pytest.raises(RunDirError, match=rf"runs/x is in use by another zoo fit \(pid {os.getpid()} on "):
        RunLock("runs/x").acquire()
    assert main(fit_args("runs/x", 1)) == 2
    assert f"in use by another zoo fit (pid {os.getpid()}" in capsys.readouterr().err
    held.release()
    assert not Path("runs/x", LOCK_NAME).exists()

    # a run killed with SIGKILL leaves its lock file behind, unlocked: the next run takes it over and says so
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Path("runs/x", LOCK_NAME).write_text(json.dumps({"pid": int(gone.stdout), "host": "h", "started": "s"}))
    lock = RunLock("runs/x")
    assert lock.acquire() == f"took over the lock of a run that ended without releasing it (pid {int(gone.stdout)} on h, started s)"
    assert json.loads(Path("runs/x", LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_only_the_launcher_takes_the_lock_under_ddp():
    assert is_launcher_rank_zero({})
    assert is_launcher_rank_zero({"LOCAL_RANK": "0", "NODE_RANK": "0", "RANK": "0"})
    assert not is_launcher_rank_zero({"LOCAL_RANK": "1"})  # a process Lightning's ddp launcher re-executed
    assert not is_launcher_rank_zero({"NODE_RANK": "1", "LOCAL_RANK": "0"})  # rank 0 of the second node
    assert not is_launcher_rank_zero({"RANK": "3"}) and not is_launcher_rank_zero({"SLURM_PROCID": "2"})
