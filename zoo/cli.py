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
import sys
from typing import Any, Callable

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.checkpoint_io import AtomicCheckpointIO
from zoo.cli_errors import summarize_parser_error
from zoo.data.base import DataError, ZooDataModule
from zoo.methods.base import NonFiniteLossError, SSLMethod


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
            parser_kwargs={"description": __doc__, "formatter_class": argparse.RawDescriptionHelpFormatter, "exit_on_error": False},
            args=args,
            run=run,
        )

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
    except NonFiniteLossError as e:  # not a config error: training ran and diverged (on every rank: say it once)
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank == 0:
            print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
