"""The ``zoo`` command.

    zoo fit|validate|test|predict --config configs/<method>/<data>.yaml [--config configs/trainer/<preset>.yaml]
    zoo list                      registered methods
    zoo export CKPT DIR           Lightning checkpoint → Hub folder (config.json, model.safetensors, README.md)
    zoo push DIR ORG/REPO         upload a Hub folder (after checking it loads)
    zoo cards [--check]           regenerate MODEL_CARD.md from the checkpoints' records (config.json, safetensors metadata)
    zoo finetune --pretrained DIR --config ...   linear-probe / fine-tune a pretrained encoder (zoo/cli/finetune.py)
    zoo embed --pretrained DIR INPUT --output FILE   embeddings of a folder / list / table / split (zoo/cli/embed.py)
    zoo evaluate SRC [--protocol knn,linear,...] [--baselines random,raw] [--export DIR]   downstream protocols
    zoo data build skeleton-actions|music-captions DIR   write a generated data set (NTU skeletons; audio–captions)
    zoo weights [NAME ...]        rebuild shipped checkpoints from configs/weights.yaml (make weights)

One module per command family: ``errors`` (the shared parser and one-line error wrapper), ``lightning`` (the
LightningCLI subcommands), ``evaluate``, ``finetune``, ``embed``, ``hub`` (export, push, cards), ``data``, ``weights``. This module
imports none of them until a command runs.

``zoo`` / ``zoo --help`` list every command; ``zoo fit --help`` is a short guide (``--help-all``: every option).

The Lightning subcommands are a ``LightningCLI`` over any registered method (``model: class_path: ...``) and any
zoo datamodule; ``num_classes`` is linked from the datamodule to the method's evaluation heads, and a tabular
datamodule's ``feature_schema`` to the method's tokenizer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Nothing here imports torch or Lightning: `zoo`, `zoo --help`, `zoo list` and argument errors answer in well under a
# second; each command imports what it needs when it runs.
from zoo.cli.errors import ArgumentParser, CLIError, run_command  # noqa: F401  (CLIError: the class zoo commands raise)

#: the LightningCLI subcommands (zoo/cli/lightning.py), with their one-line summaries
LIGHTNING_COMMANDS = {
    "fit": "train a method from a recipe: zoo fit --config configs/<method>/<data>.yaml",
    "validate": "evaluate a checkpoint on the validation split (--ckpt_path CKPT)",
    "test": "evaluate a checkpoint on the test split (--ckpt_path CKPT)",
    "predict": "write embeddings of a checkpoint with zoo.eval.EmbeddingWriter (--ckpt_path CKPT)",
}
#: the zoo datamodules a recipe's `data: class_path:` can name (checked against the code by tests/test_cli_errors_help.py)
DATAMODULES = (
    "zoo.data.images.ImageDataModule",
    "zoo.data.tabular.TabularDataModule",
    "zoo.data.skeleton.SkeletonDataModule",
    "zoo.data.audio_text.AudioTextDataModule",
)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def __getattr__(name: str) -> Any:
    # the LightningCLI classes import Lightning: they live in zoo.cli.lightning and load on first use
    if name in ("ZooCLI", "ZooLightningCLI"):
        from zoo.cli import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'zoo.cli' has no attribute {name!r}")


def _list(argv: list[str]) -> int:
    from zoo.registry import list_models, method_info

    ArgumentParser(prog="zoo list", description="List the registered methods.").parse_args(argv)
    infos = {name: method_info(name) for name in list_models()}
    width = max(len(info.class_path) for info in infos.values())
    for name, info in infos.items():
        print(f"{name:13s} {info.class_path:{width}s}  {info.summary}")
    return 0


def _lazy(module: str, function: str) -> Callable[[list[str]], int]:
    """``zoo.cli.<module>.<function>``, imported when the command runs (``zoo --help`` stays free of torch)."""

    def run(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(f"zoo.cli.{module}"), function)(argv)

    return run


TOOLS: dict[str, Callable[[list[str]], int]] = {
    "list": _list, "export": _lazy("hub", "export"), "push": _lazy("hub", "push"), "cards": _lazy("hub", "cards"),
    "finetune": _lazy("finetune", "main"), "embed": _lazy("embed", "main"), "evaluate": _lazy("evaluate", "main"),
    "data": _lazy("data", "main"), "weights": _lazy("weights", "main"),
}  # fmt: skip
TOOL_SUMMARIES = {
    "list": "the registered methods: name, class path (--model CLASS_PATH) and a one-sentence summary",
    "export": "a checkpoint as a Hub folder, a timm folder or ONNX graphs: zoo export [--format hub|timm|onnx] SRC DIR",
    "push": "upload a Hub folder to the Hugging Face Hub: zoo push DIR ORG/REPO",
    "cards": "regenerate MODEL_CARD.md from the checkpoints' structured records (--check: only compare)",
    "finetune": "linear-probe / fine-tune a pretrained encoder: zoo finetune --pretrained DIR --config ...",
    "embed": "embeddings of an image folder/list, a table or a data split: zoo embed --pretrained DIR INPUT --output FILE",
    "evaluate": "score encoders (zoo, timm) and their baselines: zoo evaluate SRC [--protocol knn,linear,...] [--baselines random,raw]",
    "data": "generated data sets (zoo data build skeleton-actions|music-captions DIR) or litdata shards (zoo data optimize SRC OUT)",
    "weights": "rebuild the shipped checkpoints from their recipes (configs/weights.yaml): fit, evaluate, export, figures, cards",
}


def top_level_help() -> str:
    """``zoo`` / ``zoo --help``: every command with one line."""
    rows = {**LIGHTNING_COMMANDS, **TOOL_SUMMARIES}
    width = max(map(len, rows))
    lines = [
        "usage: zoo COMMAND [options]          (zoo COMMAND --help: the command's options)",
        "",
        "A PyTorch Lightning model zoo for self-supervised learning.",
        "",
        "commands:",
        *(f"  {name:{width}s}  {summary}" for name, summary in rows.items()),
    ]
    return "\n".join(lines)


def lightning_command_help(command: str) -> str:
    """``zoo fit --help``: where the methods, datamodules, recipes and options are (the full Lightning help, ~400
    lines, is ``--help-all``)."""
    from zoo.registry import list_models, method_info

    methods = {name: method_info(name).class_path for name in list_models()}
    width = max(map(len, methods))
    recipes: dict[str, list[str]] = {}
    if CONFIGS.is_dir():
        for path in sorted(CONFIGS.glob("*/*.yaml")):
            recipes.setdefault(path.parent.name, []).append(path.stem)
    presets = recipes.pop("trainer", [])
    shown = "configs" if Path.cwd() / "configs" == CONFIGS else str(CONFIGS)
    lines = [
        f"usage: zoo {command} --config configs/<method>/<data>.yaml [--config configs/trainer/<preset>.yaml] [--KEY VALUE ...]",
        "",
        f"{command}: {LIGHTNING_COMMANDS[command]}",
        "Every key of the config is also an option (--model.init_args.lr 0.1, --trainer.max_epochs 5, --data.init_args.batch_size 64).",
        "",
        "methods (model.class_path; `zoo list` for what each one does):",
        *(f"  {name:{width}s}  {path}" for name, path in methods.items()),
        "datamodules (data.class_path):",
        *(f"  {path}" for path in DATAMODULES),
    ]
    if recipes:
        lines += [f"recipes ({shown}/<method>/<data>.yaml):", *(f"  {m}: {', '.join(r)}" for m, r in recipes.items())]
    if presets:
        lines += [f"trainer presets (a second --config {shown}/trainer/<preset>.yaml):", f"  {', '.join(presets)}"]
    lines += [
        "options:",
        "  --config FILE            a recipe (several: later ones override earlier ones)",
        "  --print_config           print the whole configuration this command would run, then exit",
        "  --model.help CLASS_PATH  a method's options, e.g. --model.help zoo.methods.simclr.SimCLR",
        "  --data.help CLASS_PATH   a datamodule's options, e.g. --data.help zoo.data.images.ImageDataModule",
        "  --ckpt_path CKPT         resume (fit) or the weights to use (validate, test, predict)",
        "  --help-all               every option (Lightning's full help)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(top_level_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command = args[0]
    if command in TOOLS:
        return run_command(f"zoo {command}", lambda: TOOLS[command](args[1:]))
    if command not in LIGHTNING_COMMANDS and not command.startswith("-"):
        print(f"zoo: error: unknown command {command!r}; commands: {', '.join([*LIGHTNING_COMMANDS, *TOOLS])} "
              "(zoo --help says what each does)", file=sys.stderr)
        return 2
    if command in LIGHTNING_COMMANDS and any(a in ("-h", "--help") for a in args[1:]):
        print(lightning_command_help(command))
        return 0
    args = ["--help" if a == "--help-all" else a for a in args]
    prog = f"zoo {command}" if command in LIGHTNING_COMMANDS else "zoo"
    return run_command(prog, lambda: _run_lightning(args), tool=False)


def _run_lightning(args: list[str]) -> int:
    from zoo.cli.lightning import ZooCLI

    ZooCLI(args=args)
    return 0

