"""Fine-tune starter: a pretrained zoo encoder + a classification head, trained on labelled data.

    zoo finetune --pretrained checkpoints/simclr-fashion-mnist --config configs/finetune/fashion_mnist.yaml
    zoo finetune --pretrained checkpoints/simclr-fashion-mnist --data.class_path zoo.data.images.ImageDataModule \\
        --data.init_args.dataset fashion-mnist --model.mode linear --trainer.max_epochs 5

Modes (the usual evaluation protocols of SimCLR §B.5-B.6, BYOL §C, MAE §A.2):

- ``linear``: linear probe — the encoder is frozen (eval mode: BN statistics frozen too), only the head trains;
- ``finetune``: everything trains, the encoder at ``lr × encoder_lr_scale``;
- ``freeze_then_unfreeze``: ``linear`` for ``unfreeze_epoch`` epochs, then ``finetune`` (head warmed up first, so the
  random head's gradients do not wreck the pretrained features — the LP-FT recipe, Kumar et al. 2022).

``layer_decay`` < 1 gives each encoder layer the lr ``lr × layer_decay^(depth − layer)`` (BEiT/MAE layer-wise decay),
using timm's layer grouping of the backbone. Works for any zoo method: the encoder is ``pretrained.embed``, and the
batch key is the method's ``input_key`` (images, tabular features, skeletons, audio).
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import timm.optim
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.methods.base import warmup_cosine_factor

MODES = ("linear", "finetune", "freeze_then_unfreeze")
HEADS = ("linear", "mlp", "method")


class FineTuner(L.LightningModule):
    """A pretrained zoo model's encoder (``embed``) with a linear or MLP classification head."""

    def __init__(
        self,
        pretrained: str,
        num_classes: int | None = None,
        mode: str = "linear",
        head: str = "linear",
        head_hidden_dim: int = 512,
        head_kwargs: dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        encoder_lr_scale: float = 1.0,
        layer_decay: float = 1.0,
        unfreeze_epoch: int = 1,
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
        views: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            pretrained: a Hub folder (``checkpoints/<name>``), a Hub repo id, or a ``zoo fit`` Lightning checkpoint.
            num_classes: classes of the labelled data (the CLI links it from the datamodule).
            mode: ``linear`` | ``finetune`` | ``freeze_then_unfreeze``.
            head: ``linear`` (BN without affine → Linear, MAE's probe), ``mlp`` (Linear → BN → ReLU → Linear), or
                ``method``: the method paper's own head (``task_head``; SkeletonMAE: STRL on per-joint features).
            head_kwargs: arguments of the ``method`` head (STRL: ``num_frames``, ``hidden_dim``, ``num_layers``).
            optimizer, lr, weight_decay: timm optimizer for the head (and encoder when it trains); cosine schedule.
            encoder_lr_scale: encoder lr as a fraction of ``lr`` when it trains.
            layer_decay: layer-wise lr decay of the encoder (1.0 = off); needs a timm backbone.
            unfreeze_epoch: epoch at which ``freeze_then_unfreeze`` starts training the encoder.
            warmup_epochs: linear lr warm-up before the cosine decay.
            label_smoothing: cross-entropy label smoothing.
            views: image augmentation for training batches (an ``ImageViewConfig``, e.g. crop + flip); None = none.
        """
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {mode!r}; choose one of {', '.join(MODES)}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if num_classes is None or num_classes < 2:
            raise ValueError(f"FineTuner needs labelled data with >= 2 classes, got num_classes={num_classes}")
        if not 0 < layer_decay <= 1 or lr <= 0:
            raise ValueError(f"need lr > 0 and 0 < layer_decay <= 1, got lr={lr}, layer_decay={layer_decay}")
        self.save_hyperparameters()
        self.backbone = load_pretrained(pretrained)
        self.input_key = type(self.backbone).input_key
        if head == "method":  # the paper's own head, e.g. SkeletonMAE's STRL head on per-joint features
            self.head: nn.Module = self.backbone.task_head(num_classes, **(head_kwargs or {}))
        elif head == "linear":
            feature_dim = self._feature_dim()
            # BN without affine before the classifier (MAE §A.2): normalises the frozen features' scale, so one lr
            # suits every encoder; it is a linear map at inference, so the probe stays linear
            self.head = nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, num_classes))
        else:
            feature_dim = self._feature_dim()
            self.head = nn.Sequential(
                nn.Linear(feature_dim, head_hidden_dim), nn.BatchNorm1d(head_hidden_dim), nn.ReLU(inplace=True),
                nn.Linear(head_hidden_dim, num_classes),
            )
        self.views = None
        if views is not None:
            from zoo.nn.views import ImageViews

            self.views = ImageViews(views)
        self.metrics = nn.ModuleDict({
            stage: MulticlassAccuracy(num_classes, average="micro") for stage in ("train_acc", "val_acc", "test_acc")
        })
        self._encoder_trains = mode == "finetune"
        self._set_encoder_trainable(self._encoder_trains)

    # ---- encoder ------------------------------------------------------------------------------------------------
    def _feature_dim(self) -> int:
        dim = getattr(self.backbone, "feature_dim", None)
        if dim is None:
            raise ValueError(f"{type(self.backbone).__name__} does not report its feature_dim; cannot size the head")
        return int(dim)

    @property
    def encoder(self) -> nn.Module:
        """The part of the pretrained model that ``embed`` runs (``embedding_encoder()`` of every zoo method); its
        heads, other targets and probes are not trained here."""
        return self.backbone.embedding_encoder()

    def _set_encoder_trainable(self, trainable: bool) -> None:
        self.backbone.requires_grad_(False)
        self.encoder.requires_grad_(trainable)

    def features(self, inputs: Tensor) -> Any:
        extract = self.backbone.task_features if self.hparams.head == "method" else self.backbone.embed
        if self._encoder_trains:
            return extract(inputs)
        self.encoder.eval()  # frozen encoder: BN/dropout in inference mode, whatever Lightning's train() did
        with torch.no_grad():
            return extract(inputs)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.features(inputs)
        if isinstance(features, tuple):
            return self.head(*features)
        return self.head(features.float())

    # ---- steps --------------------------------------------------------------------------------------------------
    def _inputs_and_labels(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, dict) or self.input_key not in batch or "label" not in batch:
            keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
            raise KeyError(f"fine-tuning needs batch[{self.input_key!r}] and batch['label'], got {keys}")
        return batch[self.input_key], batch["label"]

    def on_train_epoch_start(self) -> None:
        if self.hparams.mode == "freeze_then_unfreeze" and self.current_epoch >= self.hparams.unfreeze_epoch:
            if not self._encoder_trains:
                self._encoder_trains = True
                self._set_encoder_trainable(True)
        # Lightning keeps each module's train/eval mode as it finds it, and from_pretrained hands out the model in
        # eval mode: set the modes for this epoch (a trained encoder needs BN batch statistics and dropout; the SSL
        # heads and targets never train here)
        self.backbone.eval()
        self.encoder.train(self._encoder_trains)
        self.head.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        inputs, labels = self._inputs_and_labels(batch)
        if self.views is not None:
            sizes = batch.get("image_size") if isinstance(batch, dict) else None  # padded images of mixed sizes
            inputs = self.views(inputs, torch.Generator(inputs.device).manual_seed(self.global_step), sizes)
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.metrics["train_acc"](logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        self.log("train/acc", self.metrics["train_acc"], batch_size=labels.shape[0])
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        inputs, labels = self._inputs_and_labels(batch)
        logits = self(inputs)
        self.metrics[f"{stage}_acc"](logits, labels)
        # only the held-out loader is evaluated (a kNN-bank loader before it is skipped): plain metric names
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=labels.shape[0], add_dataloader_idx=False)
        self.log(f"{stage}/acc", self.metrics[f"{stage}_acc"], prog_bar=True, batch_size=labels.shape[0], add_dataloader_idx=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == self._eval_loader_index("val"):
            self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == self._eval_loader_index("test"):
            self._eval_step(batch, "test")

    def _eval_loader_index(self, stage: str) -> int:
        # zoo datamodules put a kNN-bank loader first when they have one; the held-out split is the last loader
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        return len(loaders) - 1 if isinstance(loaders, (list, tuple)) else 0

    # ---- optimisation -------------------------------------------------------------------------------------------
    def _encoder_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        lr = hp.lr * hp.encoder_lr_scale
        if hp.layer_decay < 1.0:
            backbone = getattr(self.encoder, "backbone", None)
            if backbone is None or not hasattr(backbone, "group_matcher"):
                raise ValueError(
                    f"layer_decay needs a timm backbone with layer groups; {type(self.backbone).__name__} has none "
                    "(use layer_decay: 1.0)"
                )
            groups = timm.optim.param_groups_layer_decay(backbone, hp.weight_decay, layer_decay=hp.layer_decay)
            for group in groups:
                group["lr"] = lr * group.pop("lr_scale", 1.0)
            covered = {id(p) for g in groups for p in g["params"]}
            rest = [p for p in self.encoder.parameters() if id(p) not in covered]
            return groups + ([{"params": rest, "lr": lr}] if rest else [])
        decay = [p for p in self.encoder.parameters() if p.ndim > 1]
        no_decay = [p for p in self.encoder.parameters() if p.ndim <= 1]
        return [{"params": decay, "lr": lr}, {"params": no_decay, "lr": lr, "weight_decay": 0.0}]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = [{"params": list(self.head.parameters()), "lr": hp.lr}]
        if hp.mode != "linear":
            # the encoder's groups exist from the start (frozen parameters get no gradient, so no update) so that
            # freeze_then_unfreeze needs no optimizer rebuild
            groups += self._encoder_groups()
        optimizer = timm.optim.create_optimizer_v2(groups, opt=hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = round(hp.warmup_epochs * per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_pretrained(pretrained: str) -> Any:
    """A zoo model from a Hub folder / repo id, or from a ``zoo fit`` Lightning checkpoint (``.ckpt``).

    Built in a fresh ``contextvars`` context: LightningCLI instantiates the FineTuner inside a context that hands
    *its* config to every ``save_hyperparameters`` call, which would otherwise become the pretrained model's."""
    import contextvars

    import zoo
    from zoo.hub import load_checkpoint_model

    if str(pretrained).endswith(".ckpt"):
        return contextvars.Context().run(load_checkpoint_model, pretrained)[0]
    return contextvars.Context().run(zoo.from_pretrained, pretrained)


def main(argv: list[str]) -> int:
    """``zoo finetune``: LightningCLI over :class:`FineTuner` and any zoo datamodule; fits, then tests the best
    checkpoint. ``--pretrained X`` is short for ``--model.pretrained X``."""
    from zoo.cli.lightning import ZooLightningCLI
    from zoo.data.base import ZooDataModule

    args = []
    for arg in argv:
        args.append("--model.pretrained" if arg == "--pretrained" else arg.replace("--pretrained=", "--model.pretrained="))

    class FineTuneCLI(ZooLightningCLI):
        prog = "zoo finetune"

        def default_run_dir(self, config: Any) -> str:
            return "runs/finetune"

        def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    cli = FineTuneCLI(
        FineTuner, ZooDataModule, subclass_mode_data=True, run=False, args=args,
        save_config_kwargs={"overwrite": True}, parser_kwargs={"description": __doc__},
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_ckpt_path)
    checkpoint = cli.trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best)
    # one dict per test loader; the metrics come from the held-out loader (a kNN-bank loader may come first)
    for name, value in {k: v for result in results for k, v in result.items()}.items():
        print(f"{name}: {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
