"""``SSLMethod``: what every self-supervised method shares (solo-learn's base-method pattern).

- optimizer and schedule as init args: any timm optimizer (LARS, SGD, AdamW, LAMB, …), linear warm-up then cosine
  decay per step; no weight decay (and so no LARS adaptation) on norm/bias parameters;
- the evaluation hooks: an online linear probe on detached features (own parameter group), and kNN accuracy,
  probe accuracy and RankMe logged every validation/test epoch;
- ``embed(x)`` for downstream use, ``predict`` returning embeddings;
- Hub save/load through :class:`zoo.hub.HubMixin`: the init args are the Hub ``config.json``.

A subclass builds its networks in ``__init__``, calls ``self.init_evaluation(feature_dim)``, and implements
``make_inputs`` (its views and/or masks, drawn on the device), ``ssl_step`` (the paper's algorithm box: which
encoder, which loss, on the inputs ``make_inputs`` made) and ``embed``.

Batches are dicts. Labels, when a datamodule has them, are under ``"label"`` and used for evaluation only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import timm.optim
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from zoo import schedules
from zoo.eval.collapse import CollapseWarning, collapse_message
from zoo.eval.probe import OnlineLinearProbe
from zoo.eval.suite import EvaluationSuite
from zoo.hub import HubMixin
from zoo.nn.views import view_generator
from zoo.validation import check_checkpoint_classes, check_train_loader

#: timm optimizer names that build a torch optimizer with fused kernels (``fused=True``)
_FUSED_OPTIMIZERS = ("sgd", "nesterov", "momentum", "adam", "adamw")


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the step."""


@dataclass
class SSLOutput:
    """What ``ssl_step`` returns: the SSL loss, the encoder features of one view (for the online probe; the base
    detaches them) and extra scalars to log under ``train/``."""

    loss: Tensor
    features: Tensor | None = None
    logs: dict[str, Tensor] = field(default_factory=dict)


class SSLMethod(HubMixin, L.LightningModule):
    """Base LightningModule of every zoo method."""

    method_name: ClassVar[str] = ""
    #: batch key that ``embed`` reads (images by default; tabular/skeleton/audio methods override)
    input_key: ClassVar[str] = "image"
    #: smallest global training batch the loss is defined on (a contrastive loss needs negatives: 2)
    min_batch_size: ClassVar[int] = 1
    #: old init-arg names → new ones, still accepted (:func:`zoo.deprecation.renamed`, in the subclass's __init__)
    renamed_args: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        optimizer: str = "lars",
        lr: float = 0.3,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        warmup_epochs: float = 10.0,
        min_lr_ratio: float = 0.0,
        num_classes: int | None = None,
        probe_lr: float = 0.1,
        knn_k: int = 200,
        knn_temperature: float = 0.1,
        collapse_min_rankme: float | None = 1.5,
        collapse_min_std: float | None = 0.05,
        compile: bool | dict[str, Any] = False,
        channels_last: bool = False,
        fused_optimizer: bool | None = None,
    ) -> None:
        """
        Args:
            optimizer: a timm optimizer name ("lars", "sgd", "adamw", "lamb", …).
            lr: peak learning rate (after warm-up). Scale it with the global batch yourself, e.g. SimCLR's
                0.3·B/256 with LARS.
            weight_decay: applied to weights only, never to norm/bias parameters.
            momentum: for SGD/LARS.
            warmup_epochs: linear warm-up length (fractions allowed), then cosine decay.
            min_lr_ratio: final lr as a fraction of ``lr``.
            num_classes: classes of the labelled data, for the online probe and kNN (None: RankMe only). The CLI
                links it from the datamodule.
            probe_lr: lr of the online linear probe's own parameter group (no weight decay).
            knn_k, knn_temperature: weighted kNN evaluation (Wu et al. 2018).
            collapse_min_rankme, collapse_min_std: a validation epoch whose RankMe (≈ 1 when collapsed) or normalised
                embedding std (≈ 1 spread, 0 collapsed; :mod:`zoo.eval.collapse`) falls below these gives a
                :class:`~zoo.eval.collapse.CollapseWarning` naming the epoch; None turns a check off.
            compile: ``torch.compile`` each network of the method in place (:meth:`apply_speed_options`; state-dict
                keys and checkpoints are unchanged); a dict is passed to ``torch.compile`` (``{"mode":
                "max-autotune"}``, ``{"dynamic": true}``).
            channels_last: convolution weights and image inputs in channels-last memory format (faster convolutions
                under bf16/fp16 on GPUs and on CPUs with oneDNN).
            fused_optimizer: fused kernels for the optimizers torch has them for (SGD, Adam, AdamW); None = on when
                the parameters are on a CUDA device, True = wherever torch supports it, False = never.
        """
        super().__init__()
        if optimizer.lower() not in timm.optim.list_optimizers():
            raise ValueError(f"unknown optimizer {optimizer!r}; choose a timm optimizer, e.g. lars, sgd, adamw, lamb")
        if lr <= 0 or weight_decay < 0 or warmup_epochs < 0 or not 0 <= min_lr_ratio <= 1:
            raise ValueError(
                f"invalid optimisation settings: lr={lr}, weight_decay={weight_decay}, "
                f"warmup_epochs={warmup_epochs}, min_lr_ratio={min_lr_ratio}"
            )
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 or None, got {num_classes}")
        # collects the init args of the whole constructor chain (subclass args included): the Hub config
        self.save_hyperparameters()
        self.probe: OnlineLinearProbe | None = None
        self._view_seed = 0
        self._training_record: dict[str, Any] = {}
        self._speed_options_applied = False

    # ---- to implement in a method -------------------------------------------------------------------------------
    def embed(self, inputs: Tensor) -> Tensor:
        """Representation used downstream (the encoder output, before any projection head)."""
        raise NotImplementedError

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        """One training step's self-supervised loss on a batch (views already on the device)."""
        raise NotImplementedError

    def task_features(self, inputs: Tensor) -> Any:
        """What the method's own fine-tuning head reads (:meth:`task_head`); ``embed(inputs)`` by default."""
        return self.embed(inputs)

    def task_head(self, num_classes: int, **kwargs: Any) -> torch.nn.Module:
        """The method paper's own fine-tuning head on :meth:`task_features` (``FineTuner(head="method")``); a
        tuple of task features is passed to it unpacked. Methods without one raise."""
        raise ValueError(f"{type(self).__name__} has no fine-tuning head of its own; use head 'linear' or 'mlp'")

    def embedding_encoder(self) -> torch.nn.Module:
        """The network ``embed`` runs: what a fine-tune trains. ``self.encoder`` by default; methods that evaluate
        their EMA target (the JEPAs) return it instead."""
        return self.encoder

    # ---- evaluation ---------------------------------------------------------------------------------------------
    def init_evaluation(self, feature_dim: int) -> None:
        """Create the online probe and metric suites; call at the end of a subclass ``__init__``."""
        num_classes = self.hparams.num_classes
        self.feature_dim = feature_dim
        if num_classes:
            self.probe = OnlineLinearProbe(feature_dim, num_classes)
        self.evaluation = torch.nn.ModuleDict(
            {stage: EvaluationSuite(num_classes, self.hparams.knn_k, self.hparams.knn_temperature) for stage in ("val", "test")}
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return self.embed(inputs)

    def embed_batch(self, batch: dict[str, Any]) -> Tensor:
        try:
            inputs = batch[self.input_key]
        except (KeyError, TypeError):
            keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
            raise KeyError(f"{type(self).__name__} reads batch[{self.input_key!r}], but the batch has {keys}") from None
        return self.embed(inputs)

    # ---- training -----------------------------------------------------------------------------------------------
    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The method's inputs for one training batch: views and/or masks, made on the device after the transfer and
        drawn from :meth:`view_generator` streams. Returns the entries to add to the batch (``"views"``,
        ``"masks"``, ...), which ``ssl_step`` then reads. The base class calls it from ``on_after_batch_transfer``;
        outside a Trainer, ``{**batch, **model.make_inputs(batch)}`` builds the same batch (the tests do).
        Nothing by default: a method that trains on the batch as it comes adds no entries."""
        return {}

    def image_views(self, batch: dict[str, Any], augmentations: Sequence[Callable[..., Tensor]]) -> list[Tensor]:
        """One view of ``batch[input_key]`` per augmentation, the i-th drawn from ``view_generator(i)``; crops stay
        inside each image's valid ``image_size`` when the batch has one (zero-padded images of different sizes,
        zoo.data.image_files)."""
        images, sizes = batch[self.input_key], batch.get("image_size")
        return [augment(images, self.view_generator(i), sizes) for i, augment in enumerate(augmentations)]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # inputs are made here, after the transfer, so the DataLoader only decodes (DESIGN: views on the device).
        # Entries the batch already carries are kept: inputs drawn once for a global batch can be split over ranks.
        if self._trainer is not None and self.trainer.training and isinstance(batch, dict):
            batch = {**self.make_inputs(batch), **batch}
        return batch

    def view_generator(self, view_index: int) -> torch.Generator:
        """Random source for this batch's augmentations: a function of (seed, rank, batches seen, view), so views
        are reproducible and a resumed run draws the same ones."""
        batches_seen = 0
        if self._trainer is not None:
            batches_seen = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
        return view_generator(self.device, self._view_seed, self.global_rank, batches_seen, view_index)

    def on_fit_start(self) -> None:
        # seed_everything(s) makes this s; an unseeded run still gets fixed views for its own lifetime
        self._view_seed = torch.initial_seed() % (2**63)

    def on_train_start(self) -> None:
        check_train_loader(self)  # a batch too small for the loss is an error before the first step

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self.ssl_step(batch)
        batch_size = out.features.shape[0] if out.features is not None else None
        self.log("train/loss", out.loss, prog_bar=True, batch_size=batch_size)
        for name, value in out.logs.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        loss, losses = out.loss, {"loss": out.loss}
        labels = batch.get("label") if isinstance(batch, dict) else None
        if self.probe is not None and out.features is not None and labels is not None:
            probe_loss, logits = self.probe.loss(out.features, labels)
            self.log("train/probe_loss", probe_loss, batch_size=batch_size)
            self.log("train/probe_acc", (logits.argmax(1) == labels).float().mean(), batch_size=batch_size)
            losses["online probe loss"] = probe_loss
            loss = loss + probe_loss
        self._check_finite(losses, batch_idx)
        return loss

    def _check_finite(self, losses: dict[str, Tensor], batch_idx: int) -> None:
        # A NaN/inf loss poisons every weight at the next optimizer step and the run then trains on garbage for
        # hours; stop at once, naming the step. Under DDP the decision is collective: a rank that stopped alone would
        # leave the others waiting in the gradient all-reduce for ever. One all-reduce of a [W, n] table (rank r's
        # row: its non-finite values, 0 where finite) and one host sync per step: small next to a training step.
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        bad = ~torch.isfinite(values)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        world_size = torch.distributed.get_world_size() if distributed else 1
        if world_size > 1:
            flags = torch.zeros(world_size, 2, len(values), device=values.device)
            flags[torch.distributed.get_rank()] = torch.stack([bad.float(), torch.where(bad, values, 0.0)])
            torch.distributed.all_reduce(flags)  # each entry is non-zero on one rank at most: the sum is its value
        else:
            flags = torch.stack([bad.float(), torch.where(bad, values, 0.0)]).unsqueeze(0)
        flags = flags.cpu()
        if not flags[:, 0].any():
            return
        rank, index = (int(i) for i in flags[:, 0].nonzero()[0])
        on_rank = f" on rank {rank} (of {world_size})" if world_size > 1 else ""
        raise NonFiniteLossError(
            f"{type(self).__name__}: {list(losses)[index]} is {flags[rank, 1, index].item()}{on_rank} at global step "
            f"{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}); training stopped. Lower the lr, "
            "check the inputs, or train in fp32 / bf16 instead of fp16"
        )

    # ---- validation / test / predict ----------------------------------------------------------------------------
    def _has_knn_bank(self, stage: str) -> bool:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        return isinstance(loaders, (list, tuple)) and len(loaders) == 2

    def _evaluation_step(self, batch: dict[str, Any], dataloader_idx: int, stage: str) -> None:
        features = self.embed_batch(batch)
        labels = batch.get("label")
        suite: EvaluationSuite = self.evaluation[stage]  # type: ignore[assignment]
        if dataloader_idx == 0 and self._has_knn_bank(stage):
            suite.update_bank(features, labels)
            return
        logits = self.probe(features) if self.probe is not None else None
        suite.update(features, labels, logits)

    def _log_evaluation(self, stage: str) -> None:
        suite: EvaluationSuite = self.evaluation[stage]  # type: ignore[assignment]
        metrics = suite.compute()
        for name, value in metrics.items():
            # every rank computed the same value from the gathered states: the sync only averages equal numbers, and
            # spares each validation Lightning's warning about unsynced epoch-level values under DDP
            self.log(f"{stage}/{name}", value, prog_bar=name == "knn_acc", sync_dist=True)
        suite.reset()
        # the sanity check runs an untrained network: its (often low) spread says nothing about training
        if stage == "val" and not self.trainer.sanity_checking:
            values = {k: float(v) for k, v in metrics.items() if k in ("rankme", "embedding_std")}
            message = collapse_message(
                values, self.hparams.collapse_min_rankme, self.hparams.collapse_min_std, f"epoch {self.current_epoch}"
            )
            if message:
                rank_zero_warn(f"{type(self).__name__}: {message}", category=CollapseWarning)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        out = {"embedding": self.embed_batch(batch)}
        if isinstance(batch, dict) and "label" in batch:
            out["label"] = batch["label"]
        return out

    # ---- optimisation -------------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Weights with weight decay; norm/bias (1-D) without, which also exempts them from LARS adaptation;
        the online probe in its own group."""
        decay, no_decay, probe = [], [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith("probe."):
                probe.append(param)
            elif param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]
        if probe:
            groups.append({"params": probe, "weight_decay": 0.0, "lr": self.hparams.probe_lr, "name": "probe"})
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        extra = {"momentum": hp.momentum} if hp.optimizer.lower() in ("sgd", "momentum", "lars", "larc", "nlars", "nlarc") else {}
        extra |= self._fused_optimizer_kwargs(hp.optimizer)
        optimizer = timm.optim.create_optimizer_v2(
            self.parameter_groups(), opt=hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay, **extra
        )
        scheduler = schedules.lr_scheduler(optimizer, self.trainer, hp.warmup_epochs, min_lr_ratio=hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def full_weights(self) -> contextlib.AbstractContextManager:
        """Context for in-place weight updates outside forward/backward (EMA targets, SwAV's prototype projection).
        Under FSDP (Lightning's ``FSDPStrategy``) each rank holds a slice of one flat parameter between steps, and
        those slices do not line up with whole weights (an online weight's slice and its EMA target's are different
        elements; a prototype row may straddle ranks); the update then runs on the gathered weights and each rank
        keeps its shard of the result. FSDP needs GPUs, so the CPU tests do not reach this branch; the
        ``fsdp`` section of benchmarks/gpu_check.py runs it (BYOL, SwAV)."""
        model = self._trainer.strategy.model if self._trainer is not None else None
        if model is None or not torch.distributed.is_available():
            return contextlib.nullcontext()
        from torch.distributed.fsdp import FullyShardedDataParallel

        if isinstance(model, FullyShardedDataParallel):
            return FullyShardedDataParallel.summon_full_params(model, writeback=True)
        return contextlib.nullcontext()

    # ---- speed options (compile, channels_last) -----------------------------------------------------------------
    def compiled_modules(self) -> list[str]:
        """Children that ``compile=True`` compiles: every network with parameters (encoders, EMA targets, heads,
        prototypes), not the evaluation parts, which run on detached features."""
        return [
            name for name, module in self.named_children()
            if name not in ("probe", "evaluation") and next(module.parameters(), None) is not None
        ]  # fmt: skip

    def use_channels_last(self) -> None:
        """Convolution weights (4-D tensors only) in channels-last memory format, and image encoders' inputs too; in
        place, so parameters, optimizer state and checkpoints are unchanged. The ``channels_last`` option calls it;
        so does :class:`zoo.speed.CPUPrecision` under bf16."""
        self.to(memory_format=torch.channels_last)
        for module in self.modules():
            if module is not self and hasattr(module, "use_channels_last"):
                module.use_channels_last()

    def apply_speed_options(self) -> None:
        """Apply ``channels_last`` and ``compile`` once. Lightning calls it through :meth:`configure_model`; call it
        yourself when stepping the model outside a Trainer. Both act in place, so parameter names, checkpoints and
        Hub files are the same as without them."""
        if self._speed_options_applied:
            return
        self._speed_options_applied = True
        if self.hparams.get("channels_last"):
            self.use_channels_last()
        options = self.hparams.get("compile")
        if options:
            for name in self.compiled_modules():
                getattr(self, name).compile(**(options if isinstance(options, dict) else {}))

    def configure_model(self) -> None:
        self.apply_speed_options()

    def _fused_optimizer_kwargs(self, optimizer: str) -> dict[str, Any]:
        """``{"fused": True}`` when the fused kernels apply: an optimizer torch has them for, parameters on a device
        that supports them, and ``fused_optimizer`` True (or None and the parameters on CUDA)."""
        choice = self.hparams.get("fused_optimizer")
        if choice is False:
            return {}
        if optimizer.lower() not in _FUSED_OPTIMIZERS:
            if choice:
                rank_zero_warn(f"fused_optimizer=True: {optimizer!r} has no fused kernels in torch; using the standard one")
            return {}
        devices = {p.device.type for p in self.parameters() if p.requires_grad}
        try:
            from torch.optim.optimizer import _get_fused_kernels_supported_devices

            supported = set(_get_fused_kernels_supported_devices())
        except ImportError:
            supported = {"cuda"}
        if devices and devices <= supported and (choice or devices == {"cuda"}):
            return {"fused": True}
        return {}

    # ---- checkpoint ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_method"] = self.method_name
        checkpoint["zoo_training_record"] = self.training_record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_classes(checkpoint, self.hparams.num_classes, type(self).__name__)
        # Lightning loads checkpoint["state_dict"] after this hook: a checkpoint of an earlier version gets
        # this version's names first
        saved = self.migrate_config({k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")})
        checkpoint["state_dict"] = self.migrate_state_dict(checkpoint["state_dict"], saved)
        self._training_record = dict(checkpoint.get("zoo_training_record", {}))

    def training_record(self) -> dict[str, Any]:
        """Data, recipe and last logged metrics of the run that produced these weights (for the model card)."""
        if self._trainer is None:
            return dict(self._training_record)
        trainer = self.trainer
        record: dict[str, Any] = {
            "metrics": {k: round(float(v), 5) for k, v in trainer.callback_metrics.items() if "/" in k and v.numel() == 1},
            # processed is bumped before the epoch-end checkpoint is written; current_epoch is not
            "epochs_completed": trainer.fit_loop.epoch_progress.current.processed,
            "global_step": trainer.global_step,
            "trainer": {
                "max_epochs": trainer.max_epochs,
                "precision": str(trainer.precision),
                "world_size": trainer.world_size,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
            },
        }
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            record["data"] = {"class": type(datamodule).__name__, **{k: v for k, v in dict(datamodule.hparams).items() if not k.startswith("_")}}
        self._training_record = record
        return record
