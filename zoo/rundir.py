"""One run directory per ``zoo fit``: where its logs, checkpoints and config go, who holds it, how it stops.

The run directory is ``trainer.default_root_dir``. Unless a config names its own places, the CSV logs go to
``<run>/logs/version_N``, the checkpoints to ``<run>/checkpoints`` and the config of a run without a logger to
``<run>/config.yaml``. A directory that already holds checkpoints belongs to an earlier run: ``zoo fit`` refuses it
unless told ``--resume`` (continue from its ``last.ckpt``) or ``--overwrite`` (remove that run's checkpoints, logs and
config, nothing else). A lock file, ``<run>/.zoo-run.lock``, keeps a second live ``zoo fit`` out; the kernel drops its
``flock`` when the holder dies, so a lock left by a killed run is free and only its description remains.

:class:`RunGuard` turns Ctrl-C / SIGTERM into a stop at the end of the current training step, with ``last.ckpt``
written there (the same point at which ModelCheckpoint saves, so resuming is exact), and says how to resume.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

LOCK_NAME = ".zoo-run.lock"
CHECKPOINT_DIR = "checkpoints"
LOG_NAME = "logs"
CONFIG_NAME = "config.yaml"
LAST = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION


class RunDirError(Exception):
    """The run directory cannot be used as asked (held by a live run, holds another run, nothing to resume)."""


def is_launcher_rank_zero(environ: dict[str, str] | None = None) -> bool:
    """True in the process a user started (or global rank 0 of a torchrun/SLURM job); False in the processes
    Lightning's DDP launcher re-executes (``LOCAL_RANK`` > 0) and on other nodes (``NODE_RANK`` > 0)."""
    env = os.environ if environ is None else environ
    return all(int(env.get(key, "0") or 0) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<run>/.zoo-run.lock`` whose content names the holder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, command: str = "") -> str | None:
        """Take the lock; returns a note when it took over a lock left by a run that is gone. Raises
        :class:`RunDirError` naming the holder when a live run holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create the run directory {self.path.parent}: {e.strerror}") from None
        for _ in range(3):  # another process may remove the file between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RunDirError(f"cannot write the lock {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                alive = holder.get("host") != socket.gethostname() or _pid_alive(int(holder.get("pid", 0) or 0))
                why = "" if alive else " (that process is gone; its data-loader workers may still be exiting: retry in a few seconds)"
                raise RunDirError(
                    f"{self.path.parent} is in use by another zoo fit ({_describe(holder)}){why}; wait for it, or "
                    "choose another directory with --trainer.default_root_dir DIR"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:
                os.close(fd)
                continue
            previous = self._read(fd)
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            self._fd = fd
            if previous:
                return f"took over the lock of a run that ended without releasing it ({_describe(previous)})"
            return None
        raise RunDirError(f"could not take the lock {self.path}: it kept being replaced")

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)  # while still locked: a waiting process re-checks the inode
        except FileNotFoundError:
            pass
        os.close(fd)


def checkpoint_files(dirs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for directory in dict.fromkeys(str(d) for d in dirs):
        if os.path.isdir(directory):
            files += sorted(p for p in Path(directory).iterdir() if p.suffix == ModelCheckpoint.FILE_EXTENSION and p.is_file())
    return files


def shown(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it: what a user typed, not a realpath."""
    path = os.path.abspath(path)
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if is_within(path, cwd) else path


def is_within(path: str | Path, directory: str | Path) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def clear_run(checkpoint_dirs: Iterable[str | Path], log_dirs: Iterable[str | Path], config_file: str | Path) -> str:
    """Remove what an earlier run wrote (``*.ckpt`` in its checkpoint folders, ``version_*`` folders of its logs, its
    config.yaml) and nothing else; returns a one-line account."""
    import shutil

    done: list[str] = []
    ckpts = checkpoint_files(checkpoint_dirs)
    for path in ckpts:
        path.unlink()
    if ckpts:
        folders = sorted({shown(p.parent) for p in ckpts})
        done.append(f"{len(ckpts)} checkpoint{'s' * (len(ckpts) != 1)} ({', '.join(p.name for p in ckpts[:4])}"
                    f"{', ...' if len(ckpts) > 4 else ''}) from {', '.join(folders)}")
    for log_dir in dict.fromkeys(str(d) for d in log_dirs):
        versions = sorted(p for p in Path(log_dir).glob("version_*") if p.is_dir()) if os.path.isdir(log_dir) else []
        for version in versions:
            shutil.rmtree(version)
        if versions:
            done.append(f"{len(versions)} log folder{'s' * (len(versions) != 1)} from {shown(log_dir)}")
    if os.path.isfile(config_file):
        os.unlink(config_file)
        done.append(shown(config_file))
    return "removed " + "; ".join(done) if done else "nothing to remove"


def resume_command(prog: str, argv: list[str]) -> str:
    """``argv`` without --overwrite/--resume/--ckpt_path, with --resume: the command that continues this run."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--overwrite", "--resume") or arg.startswith(("--overwrite=", "--resume=", "--ckpt_path=")):
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        kept.append(arg)
    return shlex.join([*shlex.split(prog), *kept, "--resume"])


class _Interrupted(KeyboardInterrupt):
    """Raised between training steps after a Ctrl-C / SIGTERM; Lightning then shuts down and exits with status 1."""


class RunGuard(Callback):
    """Holds the run's lock for the fit; stops at the end of a training step on Ctrl-C / SIGTERM, writing
    ``last.ckpt`` there, and tells the user where the latest checkpoint is and how to resume."""

    def __init__(self, run_dir: str | Path, lock: RunLock | None, command: str, prog: str) -> None:
        self.run_dir = Path(run_dir)
        self.lock = lock
        self.command = command
        self.prog = prog
        self._requested: str | None = None
        self._deferring = False
        self._saved_handlers: dict[int, Any] = {}
        self._active = False
        self._saved_step: int | None = None  # global step of this run's latest checkpoint

    # signals -----------------------------------------------------------------------------------------------------
    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        self._active = True

    def restore_signals(self) -> None:
        """Put back the handlers found at the start of training, once: at its end or on an exception, both before
        Lightning puts back the ones it found before the fit."""
        self._active = False
        if threading.current_thread() is threading.main_thread():
            while self._saved_handlers:
                signum, handler = self._saved_handlers.popitem()
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self._active:  # still installed once training is over (another thread restored nothing): the default
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        if self._deferring and self._requested is None:
            self._requested = name
            if is_launcher_rank_zero():
                print(f"{self.prog}: {name}: stopping after this training step to save a checkpoint "
                      "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
            return
        self._requested = self._requested or name
        raise _Interrupted(name)

    # hooks -------------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after Lightning installed its SIGTERM handler, which this one replaces for the fit: Lightning's would end the
        # run with SIGTERMException, a SystemExit with status 0, at the next step without a checkpoint
        self._install()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._deferring = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._deferring = False
        self.restore_signals()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._deferring = False
        self._stop_if_requested(trainer, save=False)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._deferring = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._stop_if_requested(trainer, save=True)

    def _stop_if_requested(self, trainer: Trainer, save: bool) -> None:
        stop = self._requested is not None
        if trainer.world_size > 1:  # every rank stops at the same step (a signal may reach only one of them)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        self._deferring = False
        path = _last_checkpoint_path(trainer) if save else None
        if path is not None:
            trainer.save_checkpoint(path)  # collective: every rank is here, at the same step
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint) and cb.save_last and os.path.join(cb.dirpath or "", LAST) == path:
                    cb.last_model_path = path
        raise _Interrupted(self._requested or "signal on another rank")

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved_step = trainer.global_step

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.restore_signals()
        if isinstance(exception, KeyboardInterrupt):
            if trainer.is_global_zero and is_launcher_rank_zero():
                print(self._interrupted_message(trainer), file=sys.stderr, flush=True)
        self._release()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._release()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def _interrupted_message(self, trainer: Trainer) -> str:
        what = self._requested or "interrupted"
        where = f"{self.prog}: {what}: stopped at epoch {trainer.current_epoch}, step {trainer.global_step}"
        latest = _latest_checkpoint(trainer)
        if latest is None:
            return f"{where}; no checkpoint was written, so there is nothing to resume (the run starts over)"
        step = f" (step {self._saved_step})" if self._saved_step is not None and latest.name == LAST else ""
        return f"{where}; latest checkpoint: {shown(latest)}{step}\nresume with: {self.command}"


def _last_checkpoint_path(trainer: Trainer) -> str | None:
    """Where this run's ``last.ckpt`` goes: the folder of the callback that keeps one (else of the first callback)."""
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    if not callbacks:
        return None
    keeper = next((cb for cb in callbacks if cb.save_last), callbacks[0])
    return os.path.join(keeper.dirpath, LAST)


def _latest_checkpoint(trainer: Trainer) -> Path | None:
    dirs = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    files = checkpoint_files(dirs)
    if not files:
        return None
    last = [p for p in files if p.name == LAST]
    return last[0] if last else max(files, key=lambda p: p.stat().st_mtime)
