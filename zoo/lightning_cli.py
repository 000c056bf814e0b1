"""The LightningCLI behind ``zoo fit|validate|test|predict`` and ``zoo finetune``.

Kept apart from ``zoo.cli`` (the entry point) because defining these classes imports Lightning: ``zoo list``,
``zoo --help`` and argument errors answer without it.
"""

from __future__ import annotations

import argparse
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli_errors import CLIError, summarize_parser_error
from zoo.data.base import ZooDataModule
from zoo.methods.base import SSLMethod


DESCRIPTION = """\
zoo fit|validate|test|predict --config configs/<method>/<data>.yaml [--config configs/trainer/<preset>.yaml]

A LightningCLI over every registered method (`zoo list` shows their class paths) and every zoo datamodule;
``num_classes`` is linked from the datamodule to the method's evaluation heads, and a tabular datamodule's
``feature_schema`` to the method's tokenizer. `--print_config` shows the whole configuration a command would run."""


class ZooLightningCLI(LightningCLI):
    """What every zoo LightningCLI shares (``zoo fit|…`` and ``zoo finetune``): atomic checkpoints and one-line
    errors for configs a class rejects."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # checkpoints are replaced atomically (zoo/checkpoint_io.py) unless the config chose its own CheckpointIO
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

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
            parser_kwargs={"description": DESCRIPTION, "formatter_class": argparse.RawDescriptionHelpFormatter, "exit_on_error": False},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        # tabular data: the column schema builds the tokenizer (jsonargparse skips the link for datamodules without it)
        parser.link_arguments("data.feature_schema", "model.init_args.feature_schema", apply_on="instantiate")
