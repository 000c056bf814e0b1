"""The LightningCLI behind ``zoo fit|validate|test|predict`` and ``zoo finetune``.

Kept apart from ``zoo.cli`` (the entry point) because defining these classes imports Lightning: ``zoo list``,
``zoo --help`` and argument errors answer without it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from zoo import rundir
from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli.errors import CLIError, missing_dependency, summarize_parser_error
from zoo.data.base import ZooDataModule
from zoo.methods.base import SSLMethod

DESCRIPTION = """\
zoo fit|validate|test|predict --config configs/<method>/<data>.yaml [--config configs/trainer/<preset>.yaml]

A LightningCLI over every registered method (`zoo list` shows their class paths) and every zoo datamodule;
``num_classes`` is linked from the datamodule to the method's evaluation heads, and a tabular datamodule's
``feature_schema`` to the method's tokenizer. `--print_config` shows the whole configuration a command would run."""


def silence_warnings_that_do_not_apply_to_zoo() -> None:
    """Lightning warnings printed on every run with a zoo datamodule, none of which the user can or should act on."""
    # a zoo datamodule saves its train position in every checkpoint and resumes mid-epoch exactly (zoo/data/base.py);
    # Lightning only recognises loaders that have their own state_dict, and warns on every mid-epoch resume
    warnings.filterwarnings(
        "ignore", category=PossibleUserWarning,
        message="You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable",
    )
    # zoo's datamodules leave on_after_batch_transfer to the method by design (views and masks drawn on the device)
    warnings.filterwarnings("ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`")
    # Lightning's own pytree helper on a newer torch: nothing for a zoo user to change
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvertisement) for f in logger.filters):
        logger.addFilter(_NoAdvertisement())


class _NoAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud")  # litlogger, litmodels


def drop_progress_bars_when_disabled(trainer_config: Any) -> None:
    """``--trainer.enable_progress_bar false`` wins over a recipe's progress-bar callback (the recipes list
    ``RichProgressBar``, and Lightning refuses a disabled bar that is also in the callbacks)."""
    callbacks = trainer_config.get("callbacks")
    if trainer_config.get("enable_progress_bar") is False and callbacks is not None:
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        trainer_config["callbacks"] = [c for c in callbacks if not isinstance(c, ProgressBar)]


def one_column_result_tables(trainer: Trainer) -> None:
    """Print validate/test results as one column.

    zoo evaluates with two loaders (the kNN memory bank, then the held-out split) and logs its metrics at epoch end;
    Lightning copies epoch-end metrics into every loader's column, so its table shows each value twice. When no
    metric was logged per loader (no ``/dataloader_idx_N`` key), the columns are copies: print one."""
    for loop in (trainer.validate_loop, trainer.test_loop):
        print_results = type(loop)._print_results

        def one_column(results: list[dict[str, Any]], stage: str, print_results: Any = print_results) -> None:
            if len(results) > 1 and not any("/dataloader_idx_" in key for result in results for key in result):
                results = [{key: value for result in results for key, value in result.items()}]
            print_results(results, stage)

        loop._print_results = one_column  # type: ignore[method-assign]


def describe_machine() -> str:
    """``"16-core Intel(R) Xeon(R) ... (x86_64), 1× NVIDIA H200"``: what a run's card says it ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    machine = f"{os.cpu_count()}-core {cpu}"
    if torch.cuda.is_available():
        machine += f", {torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    return machine


class RunRecord(Callback):
    """Writes the run's exact command, machine, seed and wall time (summed over resumed sessions) into every
    checkpoint as ``"zoo_run"``; ``zoo export`` puts them in the Hub folder's training record and card."""

    def __init__(self, command: str, seed: int | None) -> None:
        self.command, self.seed = command, seed
        self.previous_s = 0.0  # wall time of the sessions before a resume
        self.started = time.monotonic()

    def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.started = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        return {"wall_time_s": self.previous_s + time.monotonic() - self.started}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_s = float(state_dict.get("wall_time_s", 0.0))

    def on_save_checkpoint(self, trainer: Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_run"] = {
            "command": self.command, "machine": describe_machine(), "wall_time_s": round(self.state_dict()["wall_time_s"], 1),
            **({"seeds": [self.seed]} if self.seed is not None else {}),
        }  # fmt: skip


class ZooLightningCLI(LightningCLI):
    """What every zoo LightningCLI shares (``zoo fit|…`` and ``zoo finetune``): atomic checkpoints, one-line errors for
    configs a class rejects, and one run directory per run (zoo/rundir.py).

    The run directory is ``trainer.default_root_dir``: the default logger (``logger: true``) is a CSVLogger in
    ``<run>/logs``, a ModelCheckpoint without ``dirpath`` writes to ``<run>/checkpoints``, and a config without a
    logger is saved as ``<run>/config.yaml``. ``fit`` holds the directory's lock for the run and refuses a directory
    with another run's checkpoints unless given ``--resume`` or ``--overwrite``."""

    #: how a user starts this CLI, for messages and the resume command (``args`` follow it)
    prog = "zoo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        self._argv = [str(a) for a in (sys.argv[1:] if given is None else given)] if not isinstance(given, dict) else []
        self._lock: rundir.RunLock | None = None
        self._guard: rundir.RunGuard | None = None
        self._resume = self._overwrite = False
        #: the checkpoint ``--resume`` continues from (``zoo finetune`` passes it to ``trainer.fit``)
        self.resume_ckpt_path: str | None = None
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._release_run_dir()
            raise
        if self.subcommand is not None:  # run=True: the subcommand has run
            self._release_run_dir()

    def default_run_dir(self, config: Any) -> str:
        """The run directory of a config without ``trainer.default_root_dir``."""
        return "runs/zoo"

    def add_default_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        super().add_default_arguments_to_parser(parser)
        parser.add_argument("--resume", action="store_true",
                            help="fit: continue the run in trainer.default_root_dir from its last.ckpt")
        parser.add_argument("--overwrite", action="store_true",
                            help="fit: start the run in trainer.default_root_dir over, removing the earlier run's "
                                 "checkpoints, logs and config.yaml (nothing else)")

    @property
    def _training(self) -> bool:
        return self.subcommand in (None, "fit")  # None: run=False, the caller fits (zoo finetune)

    def _prog(self) -> str:
        return f"{self.prog} {self.subcommand}" if self.subcommand else self.prog

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        self._resume, self._overwrite = bool(config.get("resume")), bool(config.get("overwrite"))
        # the saved config.yaml describes the run, not how it was started: re-running it must not overwrite anything
        config["resume"] = config["overwrite"] = False
        if (self._resume or self._overwrite) and not self._training:
            raise CLIError(f"--resume and --overwrite apply to fit, not to {self.subcommand}")
        if self._resume and self._overwrite:
            raise CLIError("choose one: --resume continues the run in its directory, --overwrite starts it over")
        if not config.trainer.get("default_root_dir"):
            config.trainer.default_root_dir = self.default_run_dir(config)
        self.run_dir = Path(config.trainer.default_root_dir)

    def init_parser(self, **kwargs: Any) -> Any:
        # parse errors raise (instead of printing usage and a multi-line report) so that they become one line
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        # the exact command, for the run record (RunRecord)
        self._argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else sys.argv[1:]
        with warnings.catch_warnings():
            # zoo hands LightningCLI the arguments it read from sys.argv itself (minus the command, with aliases
            # expanded): Lightning's "args and command line arguments both given" warning does not apply
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            try:
                super().parse_arguments(parser, args)
            except argparse.ArgumentError as e:
                raise CLIError(summarize_parser_error(str(e))) from e

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyper-parameters here, before anything else looks at the file
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_dir():
            hint = " (a Hub folder: `zoo finetune --pretrained` or zoo.from_pretrained load it)" if (Path(ckpt_path) / "config.json").is_file() else ""
            raise CLIError(f"--ckpt_path {ckpt_path} is a folder{hint}; --ckpt_path takes a .ckpt file written by `zoo fit`")
        special = str(ckpt_path) in ("last", "best", "hpc") or str(ckpt_path).startswith("registry") or "://" in str(ckpt_path)
        if ckpt_path and not special and not Path(ckpt_path).exists():
            raise CLIError(f"--ckpt_path {ckpt_path}: no such file")
        try:
            super()._parse_ckpt_path()
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
            if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
                raise  # an unreadable file, not a bad one: reported as such
            raise CLIError(f"--ckpt_path {ckpt_path}: not a readable checkpoint, truncated or not written by torch.save "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        drop_progress_bars_when_disabled(trainer_config)
        if trainer_config.get("logger") in (True, None) and "logger" not in kwargs:
            kwargs["logger"] = CSVLogger(save_dir=self.run_dir, name=rundir.LOG_NAME)
        trainer = super().instantiate_trainer(**kwargs)
        # checkpoints are replaced atomically (zoo/checkpoint_io.py) unless the config chose its own CheckpointIO
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        checkpoint_dir = os.path.realpath(self.run_dir / rundir.CHECKPOINT_DIR)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = checkpoint_dir
        one_column_result_tables(trainer)
        if self._training:
            self._claim_run_dir(trainer, own_logs=kwargs.get("logger"))
            seed = self._get(self.config, "seed_everything")
            trainer.callbacks.append(RunRecord(shlex.join(["zoo", *self._argv]), seed if isinstance(seed, int) and not isinstance(seed, bool) else None))
        return trainer

    def _claim_run_dir(self, trainer: Trainer, own_logs: Any) -> None:
        """Lock the run directory; resume, overwrite or refuse it when it holds another run's checkpoints; add the
        :class:`RunGuard`. Runs once the config has built every object, so a config error leaves no directory behind."""
        if rundir.is_launcher_rank_zero():
            self._lock = rundir.RunLock(self.run_dir)
            try:
                note = self._lock.acquire(command=shlex.join([*shlex.split(self.prog), *self._argv]))
            except rundir.RunDirError as e:
                self._lock = None
                raise CLIError(str(e)) from None
            if note:
                print(f"{self._prog()}: note: {note}", file=sys.stderr)
        checkpoint_dirs = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
        config = self.config_init.get(str(self.subcommand), self.config_init)
        ckpt_path = config.get("ckpt_path") if self.subcommand == "fit" else None
        prog = self._prog()
        command = rundir.resume_command(self.prog, self._argv)
        guard = self._guard = rundir.RunGuard(self.run_dir, self._lock, command=command, prog=prog)
        first_checkpoint = next((i for i, cb in enumerate(trainer.callbacks) if isinstance(cb, ModelCheckpoint)), len(trainer.callbacks))
        trainer.callbacks.insert(first_checkpoint, guard)  # before the checkpoint callbacks, as Lightning orders them
        here = ", ".join(dict.fromkeys(rundir.shown(d) for d in checkpoint_dirs)) or str(self.run_dir)
        if self._resume:
            if ckpt_path:
                raise CLIError(f"--resume continues from the last.ckpt in {here}: leave out --ckpt_path, or --resume")
            last = next((os.path.join(d, rundir.LAST) for d in checkpoint_dirs if os.path.isfile(os.path.join(d, rundir.LAST))), None)
            if last is None:
                raise CLIError(f"nothing to resume in {self.run_dir}: no {rundir.LAST} in {here}; start it without --resume")
            self.resume_ckpt_path = last
            if self.subcommand == "fit":
                config["ckpt_path"] = last
            if rundir.is_launcher_rank_zero():
                print(f"{prog}: resuming from {rundir.shown(last)}", file=sys.stderr)
            return
        if not rundir.is_launcher_rank_zero():  # the launcher decided for the whole job before starting this process
            return
        if self._overwrite:
            if ckpt_path and os.path.isfile(ckpt_path) and any(rundir.is_within(ckpt_path, d) for d in checkpoint_dirs):
                raise CLIError(f"--overwrite would delete --ckpt_path {ckpt_path}: copy it out of {here} first")
            log_dirs = [own_logs.root_dir] if isinstance(own_logs, CSVLogger) else []
            removed = rundir.clear_run(checkpoint_dirs, log_dirs, self.run_dir / rundir.CONFIG_NAME)
            print(f"{prog}: --overwrite: {removed}", file=sys.stderr)
            return
        existing = rundir.checkpoint_files(checkpoint_dirs)
        if not existing:
            return
        if ckpt_path in ("last", "best", "hpc", "registry") or (ckpt_path and any(rundir.is_within(ckpt_path, d) for d in checkpoint_dirs)):
            return  # continuing this run from one of its own checkpoints
        raise CLIError(
            f"{self.run_dir} holds the checkpoints of an earlier run ({len(existing)} in {here}); add --resume to "
            f"continue it from its {rundir.LAST}, or --overwrite to start over (removes its checkpoints, logs and "
            "config.yaml), or choose another directory with --trainer.default_root_dir DIR"
        )

    def _release_run_dir(self) -> None:
        if self._guard is not None:
            self._guard.restore_signals()
        if self._lock is not None:
            self._lock.release()

    def instantiate_classes(self) -> None:
        # the datamodule of a zoo CLI is a ZooDataModule (its datamodule_class), instantiated below with the trainer
        silence_warnings_that_do_not_apply_to_zoo()
        # A config whose values type-check but that a class rejects (unknown encoder key, bad data path, lr <= 0)
        # fails here, before any training, with the class's own message instead of a traceback.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
            missing = missing_dependency(e)
            if missing:
                raise CLIError(missing) from e
            # jsonargparse wraps the class's message in its Union report: keep the message
            raise CLIError(f"{type(e).__name__}: {summarize_parser_error(str(e.args[0] if e.args else e))}") from e


class ZooCLI(ZooLightningCLI):
    """LightningCLI over every registered method and zoo datamodule."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=SSLMethod,
            datamodule_class=ZooDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": DESCRIPTION, "formatter_class": argparse.RawDescriptionHelpFormatter},
            args=args,
            run=run,
        )

    def default_run_dir(self, config: Any) -> str:
        method = str((config.get("model") or {}).get("class_path") or "zoo").rsplit(".", 1)[-1].lower()
        return f"runs/{method}"

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        # before LightningCLI merges a --ckpt_path checkpoint's hyper-parameters over the config (it would replace
        # the configured model silently): the checkpoint must match the config, and predict needs one
        from zoo.validation import check_checkpoint_config

        if self.config.get("subcommand"):
            settings = self.config[self.config.subcommand]
            check_checkpoint_config(self.config.subcommand, settings.get("model"), settings.get("ckpt_path"))

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        # tabular data: the column schema builds the tokenizer (jsonargparse skips the link for datamodules without it)
        parser.link_arguments("data.feature_schema", "model.init_args.feature_schema", apply_on="instantiate")
