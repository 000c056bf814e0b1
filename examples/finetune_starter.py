"""Fine-tune starter: take any pretrained zoo encoder, put a classification head on it, train on labelled data.

    python examples/finetune_starter.py                                       # linear probe, SimCLR, 2k labels
    python examples/finetune_starter.py --mode finetune --labels 5000
    python examples/finetune_starter.py --pretrained checkpoints/byol-fashion-mnist --mode freeze_then_unfreeze
    python examples/finetune_starter.py --pretrained checkpoints/tjepa-adult --epochs 5      # tables
    python examples/finetune_starter.py --pretrained checkpoints/skeleton_mae-generated      # skeletons (*)

By default the labelled data is the dataset the encoder was pre-trained on, rebuilt from the training record in its
checkpoint (class and arguments of the datamodule), this time with its labels; ``--labels N`` keeps N training images
(image data only). For your own data, build any zoo datamodule yourself and pass it to ``trainer.fit`` as below.
(*) the generated skeleton data must exist first: ``zoo data build skeleton-actions runs/skeleton-actions``.

The same in one command, with every option of the LightningCLI:
    zoo finetune --pretrained checkpoints/simclr-fashion-mnist --config configs/finetune/fashion_mnist.yaml
"""

from __future__ import annotations

import argparse

import lightning as L

import zoo.data
from zoo.finetune import MODES, FineTuner, load_pretrained


def pretraining_datamodule(pretrained: str, labels: int | None) -> L.LightningDataModule:
    """The datamodule the encoder was pre-trained on, from the training record saved with its weights."""
    record = dict(load_pretrained(pretrained).training_record().get("data") or {})
    class_name = record.pop("class", None)
    if class_name is None or not hasattr(zoo.data, class_name):
        raise SystemExit(f"{pretrained}: no datamodule in its training record; build one yourself (see the docstring)")
    if labels and class_name == "ImageDataModule":
        record["train_subset"] = labels
        record["batch_size"] = min(record.get("batch_size", 64), 64)  # few labels: smaller batches, more steps
    return getattr(zoo.data, class_name)(**record)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default="checkpoints/simclr-fashion-mnist", help="Hub folder, repo id or .ckpt")
    parser.add_argument("--mode", choices=MODES, default="linear")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--labels", type=int, default=2000, help="labelled training images (image data; 0 = all)")
    args = parser.parse_args(argv)

    data = pretraining_datamodule(args.pretrained, args.labels)
    data.setup("fit")  # reads the data: the number of classes sizes the head
    model = FineTuner(
        pretrained=args.pretrained, num_classes=data.num_classes, mode=args.mode, lr=args.lr,
        encoder_lr_scale=0.1,  # a pretrained encoder moves more slowly than a fresh head
        unfreeze_epoch=max(1, args.epochs // 2),  # freeze_then_unfreeze: head first, then everything
    )  # fmt: skip
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data)
    accuracy = float(trainer.callback_metrics["test/acc"])
    print(f"{args.pretrained} ({args.mode}, {args.epochs} epochs): test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
