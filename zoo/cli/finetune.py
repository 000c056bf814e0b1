"""``zoo finetune``: linear-probe or fine-tune a pretrained zoo encoder on labelled data, then test it.

    zoo finetune --pretrained checkpoints/simclr-fashion-mnist --config configs/finetune/fashion_mnist.yaml
    zoo finetune --pretrained checkpoints/simclr-fashion-mnist --data ImageDataModule --data.dataset fashion-mnist \\
        --model.mode finetune --trainer.max_epochs 5
    zoo finetune --pretrained checkpoints/skeleton_mae-generated --config configs/finetune/skeleton_actions.yaml

A LightningCLI over :class:`zoo.downstream.finetune.FineTuner` (``--model.*``: mode, baseline, head, optimizer, lr
schedule, ...) and any zoo datamodule (``--data``); fits, then tests the best checkpoint. ``--pretrained X`` is short
for ``--model.pretrained X``.
"""

from __future__ import annotations

import argparse
from typing import Any

from zoo.cli.lightning import ZooLightningCLI
from zoo.data.base import ZooDataModule
from zoo.downstream.finetune import FineTuner


class FineTuneCLI(ZooLightningCLI):
    prog = "zoo finetune"

    def default_run_dir(self, config: Any) -> str:
        return "runs/finetune"

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main(argv: list[str]) -> int:
    args = [
        "--model.pretrained" if arg == "--pretrained" else arg.replace("--pretrained=", "--model.pretrained=", 1)
        for arg in argv
    ]
    cli = FineTuneCLI(
        FineTuner, ZooDataModule, subclass_mode_data=True, run=False, args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "zoo finetune", "description": __doc__, "formatter_class": argparse.RawDescriptionHelpFormatter,
        },
    )  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_ckpt_path)
    checkpoint = cli.trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best)
    # one dict per test loader; the metrics come from the held-out loader (a kNN-bank loader may come first)
    for name, value in {k: v for result in results for k, v in result.items()}.items():
        print(f"{name}: {value:.4f}")
    return 0
