"""Fine-tune starter: a pretrained zoo encoder + a classification head, trained on your labelled data, then tested.

Copy this file and put your data in ``my_data()``: any LightningDataModule whose batches are dicts
``{<the model's input key>: inputs, "label": int64 class ids}`` and that knows its ``num_classes`` (every zoo
datamodule does). Then:

    python examples/finetune_starter.py --pretrained checkpoints/simclr-fashion-mnist                     # images
    python examples/finetune_starter.py --pretrained checkpoints/simclr-fashion-mnist --mode finetune --lr 3e-4
    python examples/finetune_starter.py --pretrained checkpoints/tjepa-adult                              # a table
    python examples/finetune_starter.py --pretrained checkpoints/skeleton_mae-generated --head method      # skeletons
    python examples/finetune_starter.py --pretrained checkpoints/slap-music-captions                      # audio

(skeletons and audio read generated data: ``zoo data build skeleton-actions runs/skeleton-actions-fine --actions fine``,
``zoo data build music-captions runs/data/music-captions``.) The same with every option on the command line:
``zoo finetune --pretrained DIR --config configs/finetune/<data>.yaml``.
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning as L

import zoo
from zoo.downstream.finetune import MODES, FineTuner


def my_data(input_key: str) -> L.LightningDataModule:
    """Your labelled data. These examples match the shipped checkpoints, one per input key (modality)."""
    if input_key == "image":  # uint8 [B, C, H, W]
        from zoo.data.images import ImageDataModule

        return ImageDataModule(dataset="fashion-mnist", batch_size=256, val_size=5000, knn_bank_size=0)
    if input_key == "features":  # table rows: numeric columns, then categorical codes
        from zoo.data.tabular import TabularDataModule

        return TabularDataModule(dataset="adult", knn_bank_size=0)
    if input_key == "skeleton":  # [B, C, T, V, M]
        from zoo.data.skeleton import SkeletonDataModule

        return SkeletonDataModule("runs/skeleton-actions-fine", data_format="generated", num_frames=32, num_persons=1,
                                  val_size=400, knn_bank_size=0)  # fmt: skip
    if input_key == "audio":  # waveforms [B, samples]
        from zoo.data.audio_text import AudioTextDataModule

        return AudioTextDataModule("runs/data/music-captions/train.csv", "runs/data/music-captions/test.csv",
                                   clip_seconds=3.0, val_size=100, knn_bank_size=0)  # fmt: skip
    raise SystemExit(f"no example data for input key {input_key!r}: write my_data() for your data")


def finetune(
    pretrained: Any, data: L.LightningDataModule, epochs: int = 5, trainer_args: dict[str, Any] | None = None, **options: Any
) -> float:
    """Fit a FineTuner on ``data`` (``pretrained``: a zoo model or its folder; ``options``: FineTuner arguments, e.g.
    ``mode``, ``lr``), then return its test accuracy."""
    data.setup("fit")  # reads the data: the number of classes sizes the head
    model = FineTuner(pretrained, num_classes=data.num_classes, **options)
    defaults = {"accelerator": "auto", "devices": 1, "logger": False, "enable_checkpointing": False}
    trainer = L.Trainer(max_epochs=epochs, **{**defaults, **(trainer_args or {})})
    trainer.fit(model, datamodule=data)
    metrics = trainer.test(model, datamodule=data)
    return float({k: v for m in metrics for k, v in m.items()}["test/acc"])


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default="checkpoints/simclr-fashion-mnist", help="Hub folder or repo id")
    parser.add_argument("--mode", choices=MODES, default="linear")
    parser.add_argument("--head", default="linear", help="linear | mlp | method (the method's own head)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)

    pretrained = zoo.from_pretrained(args.pretrained)
    input_key = type(pretrained).input_key
    data = my_data(input_key)
    options: dict[str, Any] = {"mode": args.mode, "head": args.head, "lr": args.lr, "encoder_lr_scale": 0.1}
    if args.head == "method" and input_key == "skeleton":
        options["head_kwargs"] = {"num_frames": data.hparams.num_frames}  # the STRL head's time embedding
    accuracy = finetune(pretrained, data, epochs=args.epochs, **options)
    print(f"{args.pretrained} ({args.mode}, {args.epochs} epochs): test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
