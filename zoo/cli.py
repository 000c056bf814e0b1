"""The ``zoo`` command.

    zoo fit|validate|test|predict --config configs/<method>/<data>.yaml [--config configs/trainer/<preset>.yaml]
    zoo list                      registered methods
    zoo export CKPT DIR           Lightning checkpoint → Hub folder (config.json, model.safetensors, README.md)
    zoo push DIR ORG/REPO         upload a Hub folder (after checking it loads)
    zoo cards [--check]           regenerate MODEL_CARD.md from checkpoints/*/README.md
    zoo finetune --pretrained DIR --config ...   linear-probe / fine-tune a pretrained encoder (zoo/finetune.py)
    zoo tabular-eval MODEL        T-JEPA downstream protocol: frozen encoder + MLP vs raw-feature MLP and boosting
    zoo data build skeleton-actions|music-captions DIR   write a generated data set (NTU skeletons; audio–captions)

The Lightning subcommands are a ``LightningCLI`` over any registered method (``model: class_path: ...``) and any
zoo datamodule; ``num_classes`` is linked from the datamodule to the method's evaluation heads, and a tabular
datamodule's ``feature_schema`` to the method's tokenizer.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo import rundir
from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli_errors import summarize_parser_error
from zoo.data.base import DataError, ZooDataModule
from zoo.methods.base import NonFiniteLossError, SSLMethod


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

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
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
        if self._training:
            self._claim_run_dir(trainer, own_logs=kwargs.get("logger"))
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
        # A config whose values type-check but that a class rejects (unknown encoder key, bad data path, lr <= 0)
        # fails here, before any training, with the class's own message instead of a traceback.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
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
            # exit_on_error=False: parse errors raise instead of printing usage and a multi-line report; main()
            # turns them into one line
            parser_kwargs={"description": __doc__, "formatter_class": argparse.RawDescriptionHelpFormatter, "exit_on_error": False},
            args=args,
            run=run,
        )

    def default_run_dir(self, config: Any) -> str:
        method = str((config.get("model") or {}).get("class_path") or "zoo").rsplit(".", 1)[-1].lower()
        return f"runs/{method}"

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        # tabular data: the column schema builds the tokenizer (jsonargparse skips the link for datamodules without it)
        parser.link_arguments("data.feature_schema", "model.init_args.feature_schema", apply_on="instantiate")


class CLIError(Exception):
    """A user error (config, data, file) reported as one line by :func:`main`."""


def _list(argv: list[str]) -> int:
    import inspect

    from zoo.registry import get_method, list_models

    argparse.ArgumentParser(prog="zoo list", description="List the registered methods.").parse_args(argv)
    for name in list_models():
        cls = get_method(name)
        summary = (inspect.getdoc(cls) or "").split("\n")[0]
        print(f"{name:16s} {cls.__module__}.{cls.__qualname__}  {summary}")
    return 0


def _export(argv: list[str]) -> int:
    from zoo.hub import export_checkpoint

    parser = argparse.ArgumentParser(prog="zoo export", description="Turn a zoo Lightning checkpoint into a Hub folder.")
    parser.add_argument("checkpoint", help="path to a .ckpt written by `zoo fit`")
    parser.add_argument("directory", help="output folder (replaced atomically)")
    parser.add_argument(
        "--inference-only", action="store_true",
        help="leave out what from_pretrained rebuilds (BYOL/SLAP EMA targets): a smaller folder with the same embeddings",
    )
    args = parser.parse_args(argv)
    out = export_checkpoint(args.checkpoint, args.directory, inference_only=args.inference_only)
    print(f"exported {args.checkpoint} -> {out}")
    return 0


def _push(argv: list[str]) -> int:
    from zoo.hub import upload_folder

    parser = argparse.ArgumentParser(prog="zoo push", description="Upload a zoo Hub folder to the Hugging Face Hub.")
    parser.add_argument("directory")
    parser.add_argument("repo_id", help="e.g. my-org/simclr-fashion-mnist")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="defaults to the cached `hf auth login` token")
    args = parser.parse_args(argv)
    commit = upload_folder(args.directory, args.repo_id, private=args.private, token=args.token)
    print(f"pushed {args.directory} -> {commit}")
    return 0


def _cards(argv: list[str]) -> int:
    from zoo.cards import main as cards_main

    return cards_main(argv)


def _finetune(argv: list[str]) -> int:
    from zoo.finetune import main as finetune_main

    return finetune_main(argv)


def _tabular_eval(argv: list[str]) -> int:
    from zoo.eval.tabular_protocol import main as tabular_eval

    return tabular_eval(argv)


def _data(argv: list[str]) -> int:
    import importlib

    builders = {"skeleton-actions": "zoo.data.skeleton_generator", "music-captions": "zoo.data.music_captions"}
    parser = argparse.ArgumentParser(prog="zoo data", description="Build a generated dataset.", exit_on_error=False)
    parser.add_argument("action", choices=["build"])
    parser.add_argument("dataset", choices=sorted(builders))
    try:
        if len(argv) < 2:  # argparse would exit on a missing positional even with exit_on_error=False
            raise argparse.ArgumentError(None, "expected: build DATASET DIR")
        args, rest = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:  # one line through main(), like every other user error
        raise ValueError(f"{e}; usage: zoo data build {{{','.join(sorted(builders))}}} DIR [options]") from None
    return importlib.import_module(builders[args.dataset]).main(rest)


TOOLS: dict[str, Callable[[list[str]], int]] = {
    "list": _list, "export": _export, "push": _push, "cards": _cards, "finetune": _finetune,
    "tabular-eval": _tabular_eval, "data": _data,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        try:
            return TOOLS[args[0]](args[1:])
        except (CLIError, DataError, FileNotFoundError, KeyError, ValueError) as e:  # PretrainedLoadError is a ValueError
            print(f"zoo {args[0]}: error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 2
    prog = f"zoo {args[0]}" if args and args[0] in ("fit", "validate", "test", "predict") else "zoo"
    try:
        ZooCLI(args=argv)  # None → LightningCLI reads sys.argv itself
    except argparse.ArgumentError as e:  # the parser runs with exit_on_error=False: its report, as one line
        print(f"{prog}: error: {summarize_parser_error(str(e))}", file=sys.stderr)
        return 2
    except (CLIError, DataError, FileNotFoundError) as e:  # data problems surface in the datamodule's setup, before training
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:  # not a config error: training ran and diverged
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
