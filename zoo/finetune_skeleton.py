"""Supervised evaluation of skeleton encoders: linear probe and STRL fine-tuning (SkeletonMAE, Yan et al. 2023).

``SkeletonClassifier`` takes a :class:`~zoo.methods.skeleton_mae.SkeletonMAE` (pre-trained, e.g. from
``zoo.from_pretrained``, or freshly initialised for the random-init baseline) and a mode:

- ``mode="linear"``: the backbone is frozen (eval mode, no gradient); a linear classifier on ``backbone.embed(x)``
  behind a BatchNorm without affine parameters (MAE's linear-probe recipe, He et al. 2022 §A.2: it standardises
  features whatever their scale). With ``backbone=None`` the same classifier reads the flattened raw coordinates:
  the baseline a pre-trained representation has to beat.
- ``mode="finetune"``: backbone and an STRL head (:class:`~zoo.encoders.skeleton.STRLHead`) trained end to end.

Optimisation follows the paper's fine-tuning recipe, SGD momentum 0.9, lr 0.1 with linear warm-up, ÷10 at
90/110 and 100/110 of the run (epochs are fractions here so short runs keep the shape), label smoothing 0.1.

Command line (prints and optionally writes the test accuracy as JSON):

    python -m zoo.finetune_skeleton --data runs/skeleton-actions --pretrained checkpoints/skeleton_mae-generated \\
        --mode finetune --epochs 10 [--random-init] [--raw]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.encoders.skeleton import STRLHead
from zoo.methods.skeleton_mae import SkeletonMAE

MODES = ("linear", "finetune")


class SkeletonClassifier(L.LightningModule):
    """A pre-trained (or random) SkeletonMAE encoder with a classification head; see the module docstring.

    Args:
        backbone: the SkeletonMAE whose encoder is evaluated; None = raw-coordinate linear probe.
        num_classes: action classes.
        mode: ``"linear"`` (frozen backbone, linear head on the pooled embedding) or ``"finetune"`` (STRL head,
            everything trained).
        input_shape: (C, T, V, M) of the batches; needed for the raw probe and the STRL time embedding.
        head_hidden_dim, head_layers, temporal_kernel: STRL head (paper: 3 layers).
        optimizer: ``"sgd"`` (paper, momentum 0.9) or ``"adamw"``.
        lr, weight_decay, warmup_epochs, label_smoothing: paper: 0.1, 5e-4 (CTR-GCN's), 5 of 110, 0.1.
        milestones: lr ÷10 at these fractions of the run (paper: 90/110, 100/110).
    """

    def __init__(
        self,
        backbone: SkeletonMAE | None,
        num_classes: int,
        mode: str = "finetune",
        input_shape: tuple[int, int, int, int] = (3, 64, 25, 2),
        head_hidden_dim: int = 128,
        head_layers: int = 3,
        temporal_kernel: int = 1,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 5.0,
        label_smoothing: float = 0.1,
        milestones: tuple[float, float] = (90 / 110, 100 / 110),
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if backbone is None and mode != "linear":
            raise ValueError("backbone=None (raw coordinates) supports mode='linear' only")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.backbone = backbone
        self.mode = mode
        c, t, v, m = input_shape
        if mode == "linear":
            if backbone is not None:
                backbone.requires_grad_(False)
            in_dim = backbone.feature_dim if backbone is not None else c * t * v * m
            self.head: nn.Module = nn.Sequential(nn.BatchNorm1d(in_dim, affine=False), nn.Linear(in_dim, num_classes))
        else:
            assert backbone is not None
            self.head = STRLHead(backbone.encoder.num_features, num_classes, t, head_hidden_dim, head_layers, temporal_kernel)
        self.accuracy = nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")})

    @classmethod
    def from_pretrained(cls, model_id: str, num_classes: int, random_init: bool = False, **kwargs: Any) -> SkeletonClassifier:
        """Load a SkeletonMAE with ``zoo.from_pretrained`` (``random_init``: same architecture, fresh weights)."""
        import zoo

        backbone = zoo.from_pretrained(model_id)
        if not isinstance(backbone, SkeletonMAE):
            raise ValueError(f"{model_id} holds a {type(backbone).__name__}, not a SkeletonMAE")
        if random_init:
            backbone = SkeletonMAE(**backbone.init_args())
        return cls(backbone.train(), num_classes, **kwargs)

    def train(self, mode: bool = True) -> SkeletonClassifier:
        super().train(mode)
        if self.mode == "linear" and self.backbone is not None:
            self.backbone.eval()  # frozen: BatchNorm keeps the pre-trained statistics
        return self

    def forward(self, skeletons: Tensor) -> Tensor:
        if self.mode == "linear":
            if self.backbone is None:
                return self.head(skeletons.float().flatten(1))
            with torch.no_grad():
                features = self.backbone.embed(skeletons)
            return self.head(features)
        assert self.backbone is not None
        features, present = self.backbone.encoder(skeletons)
        return self.head(features, present)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["skeleton"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        self.log("train/acc", (logits.argmax(1) == batch["label"]).float().mean(), batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        self.accuracy[stage].update(self(batch["skeleton"]), batch["label"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log("val/acc", self.accuracy["val"].compute(), prog_bar=True)
        self.accuracy["val"].reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.accuracy["test"].compute())
        self.accuracy["test"].reset()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = round(hp.warmup_epochs * per_epoch)
        steps = [round(f * total) for f in hp.milestones]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 ** sum(step >= s for s in steps)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _main(argv: list[str] | None = None) -> int:
    from zoo.data.skeleton import SkeletonDataModule

    parser = argparse.ArgumentParser(prog="python -m zoo.finetune_skeleton", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of a generated / NTU-format data set")
    parser.add_argument("--data-format", default="generated")
    parser.add_argument("--pretrained", help="a SkeletonMAE Hub folder or repo id")
    parser.add_argument("--random-init", action="store_true", help="the pretrained model's architecture, fresh weights")
    parser.add_argument("--raw", action="store_true", help="linear probe on raw coordinates (no backbone)")
    parser.add_argument("--mode", choices=MODES, default="finetune")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None, help="default 0.1 (SGD)")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--num-persons", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-hidden-dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the result JSON here")
    args = parser.parse_args(argv)
    if args.raw == bool(args.pretrained):
        parser.error("give exactly one of --pretrained or --raw")
    L.seed_everything(args.seed, verbose=False)
    data = SkeletonDataModule(args.data, data_format=args.data_format, num_frames=args.num_frames,
                              num_persons=args.num_persons, batch_size=args.batch_size, val_size=400, knn_bank_size=0)  # fmt: skip
    shape = tuple(data.dataset("train").skeletons.shape[1:])
    common = dict(mode=args.mode, input_shape=shape, head_hidden_dim=args.head_hidden_dim, optimizer=args.optimizer,
                  lr=args.lr or 0.1, warmup_epochs=args.warmup_epochs)  # fmt: skip
    if args.raw:
        model = SkeletonClassifier(None, data.num_classes, **common)
    else:
        model = SkeletonClassifier.from_pretrained(args.pretrained, data.num_classes, random_init=args.random_init, **common)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    start = time.time()
    trainer.fit(model, datamodule=data)
    train_s = time.time() - start
    val = float(trainer.callback_metrics.get("val/acc", math.nan))
    test = trainer.test(model, dataloaders=data.predict_dataloader(), verbose=False)[0]["test/acc"]
    result = {
        "backbone": "raw" if args.raw else ("random-init" if args.random_init else "pretrained"),
        "mode": args.mode, "epochs": args.epochs, "val_acc": round(val, 4), "test_acc": round(float(test), 4),
        "train_seconds": round(train_s, 1), "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }  # fmt: skip
    print(json.dumps(result))
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
