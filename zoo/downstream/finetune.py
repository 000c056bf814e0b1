"""Supervised fine-tuning of any pretrained zoo encoder: images, tables, skeletons, audio.

:class:`FineTuner` puts a classification head on what a zoo model's ``embed`` runs (its ``embedding_encoder()``) and
trains it on labelled batches ``{input_key: ..., "label": int64}``. :func:`run_finetune` fits and tests it for the
pretrained model and its baselines and returns result records (the ``"finetune"`` protocol; CONTRACT §2).

Modes (the evaluation protocols of SimCLR §B.5-B.6, BYOL §C, MAE §A.2):

- ``linear``: linear probe — the encoder is frozen (no gradient, BatchNorm statistics and dropout in inference mode),
  only the head trains;
- ``finetune``: everything trains, the encoder at ``lr × encoder_lr_scale`` (and ``layer_decay``: BEiT/MAE's
  layer-wise decay over a timm backbone's layers);
- ``freeze_then_unfreeze``: ``linear`` for ``unfreeze_epoch`` epochs, then ``finetune`` (LP-FT, Kumar et al. 2022).

Baselines a representation has to beat: ``random-init`` (the same architecture with fresh weights drawn from
``init_seed``) and ``raw-input`` (no encoder: the head reads the flattened inputs; linear mode).

Heads: ``linear`` (BatchNorm without affine → Linear, MAE's probe: it standardises the features whatever their scale, so
one lr suits every encoder, and stays a linear map), ``mlp``, or ``method``: the method paper's own head (SkeletonMAE:
the STRL head on per-joint features). Recipes are options: AdamW + warm-up/cosine by default; SkeletonMAE's
fine-tuning recipe is ``optimizer="sgd", lr=0.1, weight_decay=5e-4, lr_schedule="step", label_smoothing=0.1``
(configs/finetune/skeleton_actions.yaml).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import timm.optim
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo import schedules
from zoo.downstream.pretrained import load_model, random_init_model

MODES = ("linear", "finetune", "freeze_then_unfreeze")
HEADS = ("linear", "mlp", "method")
BASELINES = ("random-init", "raw-input")


class FineTuner(L.LightningModule):
    """A pretrained zoo model's encoder with a classification head; see the module docstring."""

    def __init__(
        self,
        pretrained: Any = None,
        num_classes: int | None = None,
        mode: str = "linear",
        baseline: str | None = None,
        init_seed: int = 0,
        head: str = "linear",
        head_hidden_dim: int = 512,
        head_kwargs: dict[str, Any] | None = None,
        input_shape: list[int] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        momentum: float = 0.9,
        encoder_lr_scale: float = 1.0,
        layer_decay: float = 1.0,
        unfreeze_epoch: int = 1,
        lr_schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        milestones: Sequence[float] = (90 / 110, 100 / 110),
        label_smoothing: float = 0.0,
        views: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            pretrained: a Hub folder (``checkpoints/<name>``), a Hub repo id or a ``zoo fit`` checkpoint (``.ckpt``);
                or an already loaded zoo model (trained in place; not recorded in the hyper-parameters).
            num_classes: classes of the labelled data (``zoo finetune`` links it from the datamodule).
            mode: ``linear`` | ``finetune`` | ``freeze_then_unfreeze``.
            baseline: None (the pretrained weights), ``random-init`` or ``raw-input``.
            init_seed: seed of the ``random-init`` weights.
            head: ``linear`` | ``mlp`` | ``method`` (the method's ``task_head``; SkeletonMAE: STRL).
            head_hidden_dim: width of the ``mlp`` head.
            head_kwargs: arguments of the ``method`` head (STRL: ``num_frames`` (required), ``hidden_dim``,
                ``num_layers``, ``temporal_kernel``).
            input_shape: one sample's shape, sizing the ``raw-input`` head; None = read from the datamodule's data.
            optimizer, lr, weight_decay, momentum: a timm optimizer (``adamw``, ``sgd`` = Nesterov SGD, ``lars``...);
                ``momentum`` for the optimizers that have one.
            encoder_lr_scale: the encoder's lr as a fraction of ``lr`` when it trains.
            layer_decay: layer-wise lr decay of the encoder (1.0 = off); needs a timm backbone.
            unfreeze_epoch: epoch at which ``freeze_then_unfreeze`` starts training the encoder.
            lr_schedule: ``cosine`` (to ``min_lr_ratio``) or ``step`` (÷10 at each of ``milestones``, fractions of
                the run), after ``warmup_epochs`` of linear warm-up (:mod:`zoo.schedules`).
            label_smoothing: cross-entropy label smoothing.
            views: image augmentation of training batches (an ``ImageViewConfig``, e.g. crop + flip); None = none.
        """
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {mode!r}; choose one of {', '.join(MODES)}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if baseline is not None and baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)} (or none)")
        if baseline == "raw-input" and (mode != "linear" or head == "method"):
            raise ValueError(f"the raw-input baseline has no encoder to train or method head: mode 'linear' with head "
                             f"'linear' or 'mlp', got mode={mode!r}, head={head!r}")  # fmt: skip
        if num_classes is None or num_classes < 2:
            raise ValueError(f"FineTuner needs labelled data with >= 2 classes, got num_classes={num_classes}")
        if lr <= 0 or not 0 < layer_decay <= 1 or encoder_lr_scale < 0 or warmup_epochs < 0:
            raise ValueError(f"need lr > 0, 0 < layer_decay <= 1, encoder_lr_scale >= 0 and warmup_epochs >= 0, got "
                             f"lr={lr}, layer_decay={layer_decay}, encoder_lr_scale={encoder_lr_scale}, warmup_epochs={warmup_epochs}")  # fmt: skip
        if lr_schedule not in schedules.LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(schedules.LR_SCHEDULES)}")
        if pretrained is None:
            raise ValueError("FineTuner needs pretrained: a Hub folder, a Hub repo id or a .ckpt of a zoo model")
        loaded = not isinstance(pretrained, str)
        self.save_hyperparameters(ignore=["pretrained"] if loaded else None)
        model = pretrained if loaded else load_model(pretrained)
        self.input_key: str = model.input_key
        if baseline == "random-init":
            model = random_init_model(model, init_seed)
        #: the zoo model whose ``embedding_encoder()`` is fine-tuned; None for the raw-input baseline
        self.backbone = None if baseline == "raw-input" else model
        self.head: nn.Module | None = None
        if self.backbone is None:
            if input_shape is not None:
                self._build_head(math.prod(input_shape))
        elif head == "method":  # the paper's own head, e.g. SkeletonMAE's STRL head on per-joint features
            self.head = self.backbone.task_head(num_classes, **(head_kwargs or {}))
        else:
            dim = getattr(self.backbone, "feature_dim", None)
            if dim is None:
                raise ValueError(f"{type(self.backbone).__name__} does not report its feature_dim; cannot size the head")
            self._build_head(int(dim))
        self.views = None
        if views is not None:
            from zoo.nn.views import ImageViews

            self.views = ImageViews(views)
        self.metrics = nn.ModuleDict({
            stage: MulticlassAccuracy(num_classes, average="micro") for stage in ("train_acc", "val_acc", "test_acc")
        })
        self._encoder_trains = mode == "finetune"
        self._set_encoder_trainable(self._encoder_trains)

    def _build_head(self, dim: int) -> None:
        hp = self.hparams
        if hp.head == "linear":
            self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, hp.num_classes))
        else:
            self.head = nn.Sequential(
                nn.Linear(dim, hp.head_hidden_dim), nn.BatchNorm1d(hp.head_hidden_dim), nn.ReLU(inplace=True),
                nn.Linear(hp.head_hidden_dim, hp.num_classes),
            )

    def setup(self, stage: str) -> None:
        if self.head is None:  # raw-input without input_shape: the shape of one sample of the data
            datamodule = self.trainer.datamodule
            if datamodule is None:
                raise ValueError("the raw-input baseline needs input_shape (or a datamodule to read it from)")
            sample = next(iter(datamodule.predict_dataloader()))[self.input_key]
            self.hparams.input_shape = list(sample.shape[1:])  # saved with the checkpoint: it reloads
            self._build_head(math.prod(self.hparams.input_shape))

    # ---- encoder ------------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module | None:
        """The part of the zoo model that ``embed`` runs: what ``finetune`` trains. Its SSL heads, EMA targets and
        predictors never train here (None for the raw-input baseline)."""
        return None if self.backbone is None else self.backbone.embedding_encoder()

    def _set_encoder_trainable(self, trainable: bool) -> None:
        if self.backbone is not None:
            self.backbone.requires_grad_(False)
            self.encoder.requires_grad_(trainable)

    def train(self, mode: bool = True) -> FineTuner:
        """Train mode for the head (and the encoder when it trains); a frozen encoder and the SSL model's other parts
        stay in eval mode, so BatchNorm keeps the pretrained statistics."""
        super().train(mode)
        if self.backbone is not None:
            self.backbone.eval()
            self.encoder.train(mode and self._encoder_trains)
        return self

    def features(self, inputs: Tensor) -> Any:
        if self.backbone is None:
            flat = inputs.float().flatten(1)
            expected = math.prod(self.hparams.input_shape)
            if flat.shape[1] != expected:
                raise ValueError(f"raw-input baseline: batch[{self.input_key!r}] has shape {tuple(inputs.shape)}, "
                                 f"{flat.shape[1]} values per sample; the head was sized for input_shape "
                                 f"{self.hparams.input_shape} ({expected})")  # fmt: skip
            return flat
        extract = self.backbone.task_features if self.hparams.head == "method" else self.backbone.embed
        with torch.set_grad_enabled(self._encoder_trains and torch.is_grad_enabled()):
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

    def on_fit_start(self) -> None:
        # a frozen encoder and the SSL model's unused heads stay in eval mode by design: Lightning's warning about
        # modules in eval mode at the start of training does not apply
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")

    def on_train_epoch_start(self) -> None:
        hp = self.hparams
        if hp.mode == "freeze_then_unfreeze" and self.current_epoch >= hp.unfreeze_epoch and not self._encoder_trains:
            self._encoder_trains = True
            self._set_encoder_trainable(True)
        # Lightning keeps each module's mode as it finds it (and from_pretrained hands out models in eval mode)
        self.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        inputs, labels = self._inputs_and_labels(batch)
        if self.views is not None:
            sizes = batch.get("image_size")  # padded images of mixed sizes
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
            # the encoder's groups exist from the start (frozen parameters get no gradient, so no update): no
            # optimizer rebuild when freeze_then_unfreeze unfreezes
            groups += self._encoder_groups()
        optimizer = timm.optim.create_optimizer_v2(
            groups, opt=hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay, momentum=hp.momentum
        )
        scheduler = schedules.lr_scheduler(
            optimizer, self.trainer, hp.warmup_epochs, hp.lr_schedule, hp.min_lr_ratio, hp.milestones
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def run_finetune(
    pretrained: Any,
    datamodule: L.LightningDataModule,
    *,
    baselines: Sequence[str] = (),
    seeds: Sequence[int] = (0,),
    dataset: str | None = None,
    trainer: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Fit and test a :class:`FineTuner` on ``datamodule`` for the pretrained model, then for each of ``baselines``,
    once per seed; one result record per model (CONTRACT §2, protocol ``"finetune"``): test accuracy, mean over
    seeds, with its std when repeated.

    Args:
        pretrained: a Hub folder / repo id / ``.ckpt``, or a loaded zoo model (copied for every run, never changed).
        datamodule: labelled data (``num_classes``); its test split is scored.
        baselines: ``random-init`` and/or ``raw-input`` (``raw-input`` always runs as a linear probe).
        seeds: each run seeds everything (head, data order, ``random-init`` weights) with one of these.
        dataset: the data set's name in the records (default: the datamodule's ``dataset`` or class name).
        trainer: ``lightning.Trainer`` arguments (``max_epochs``, ``accelerator``, ...); quiet by default.
        **options: :class:`FineTuner` arguments (``mode``, ``head``, ``lr``, ``optimizer``, ``lr_schedule``, ...).
    """
    for name in baselines:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    if not seeds:
        raise ValueError("run_finetune needs at least one seed")
    model = load_model(pretrained) if isinstance(pretrained, str) else pretrained
    datamodule.setup("fit")  # the number of classes sizes the head
    num_classes = getattr(datamodule, "num_classes", None)
    results = []
    for baseline in (None, *baselines):
        run_options = {**options, "mode": "linear"} if baseline == "raw-input" else options

        def build(seed: int, baseline: str | None = baseline, run_options: dict[str, Any] = run_options) -> FineTuner:
            return FineTuner(copy.deepcopy(model), num_classes, baseline=baseline, init_seed=seed, **run_options)

        accuracies, tuner = seeded_test_accuracies(build, seeds, {"datamodule": datamodule}, {"datamodule": datamodule}, trainer)
        settings = {k: v for k, v in tuner.hparams.items() if k not in ("num_classes", "baseline", "init_seed")}
        settings.update({k: v for k, v in (trainer or {}).items() if k in ("max_epochs", "max_steps")})
        mean = sum(accuracies) / len(accuracies)
        std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) if len(accuracies) > 1 else None
        results.append({
            "protocol": "finetune", "metric": "accuracy", "value": mean, "std": std, "seeds": list(seeds),
            "model": baseline or "pretrained", "dataset": dataset or _dataset_name(datamodule), "split": "test",
            "settings": _jsonable(settings),
        })  # fmt: skip
    return results


def seeded_test_accuracies(
    build: Any, seeds: Sequence[int], fit_kwargs: dict[str, Any], test_kwargs: dict[str, Any], trainer: dict[str, Any] | None = None,
) -> tuple[list[float], FineTuner]:
    """For each seed: seed everything, ``build(seed)`` a :class:`FineTuner`, fit it and test it; returns every
    seed's ``test/acc`` and the last fine-tuner. ``fit_kwargs`` / ``test_kwargs``: a datamodule or dataloaders for
    ``Trainer.fit`` / ``Trainer.test``; ``trainer``: ``lightning.Trainer`` arguments over quiet defaults. The one
    loop behind both ``run_finetune`` functions (this module's, over a datamodule; ``zoo evaluate``'s finetune
    protocol, over arrays)."""
    trainer_args = {
        "accelerator": "auto", "devices": 1, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, **(trainer or {}),
    }  # fmt: skip
    accuracies = []
    for seed in seeds:
        L.seed_everything(seed, verbose=False)
        tuner = build(seed)
        fit = L.Trainer(**trainer_args)
        fit.fit(tuner, **fit_kwargs)
        metrics = fit.test(tuner, verbose=False, **test_kwargs)
        accuracies.append(float({k: v for m in metrics for k, v in m.items()}["test/acc"]))
    return accuracies, tuner


def _dataset_name(datamodule: Any) -> str:
    name = getattr(datamodule, "hparams", {}).get("dataset") or getattr(datamodule, "dataset_name", None)
    return name if isinstance(name, str) else type(datamodule).__name__


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
