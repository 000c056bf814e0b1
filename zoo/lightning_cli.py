"""The LightningCLI behind ``zoo fit|validate|test|predict`` and ``zoo finetune``.

Kept apart from ``zoo.cli`` (the entry point) because defining these classes imports Lightning: ``zoo list``,
``zoo --help`` and argument errors answer without it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli_errors import CLIError, missing_dependency, summarize_parser_error
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


class ZooLightningCLI(LightningCLI):
    """What every zoo LightningCLI shares (``zoo fit|…`` and ``zoo finetune``): atomic checkpoints and one-line
    errors for configs a class rejects."""

    def init_parser(self, **kwargs: Any) -> Any:
        # parse errors raise (instead of printing usage and a multi-line report) so that they become one line
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: Any, args: Any) -> None:
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
        drop_progress_bars_when_disabled(self._get(self.config_init, "trainer", default={}))
        trainer = super().instantiate_trainer(**kwargs)
        # checkpoints are replaced atomically (zoo/checkpoint_io.py) unless the config chose its own CheckpointIO
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        one_column_result_tables(trainer)
        return trainer

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
