"""T-JEPA: Thimonier et al. 2025, "T-JEPA: Augmentation-Free Self-Supervised Learning for Tabular Data" (ICLR 2025,
arXiv 2410.05016). Reference code: jose-melo/t-jepa (src/encoder.py, src/mask.py, src/predictors.py, src/train.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from zoo.deprecation import renamed
from zoo.encoders.tabular import RENAMED_KEYS as TABULAR_RENAMED_KEYS
from zoo.encoders.tabular import TabularEncoderConfig, TabularTransformer
from zoo.losses.jepa import LOSSES, jepa_loss
from zoo.methods.base import SSLOutput
from zoo.methods.momentum import MomentumMethod
from zoo.nn.jepa_predictor import JEPAPredictor, migrate_predictor_state
from zoo.nn.tabular_masking import sample_tabular_masks
from zoo.nn.tokens import TokenMasks, apply_masks, sincos_1d
from zoo.registry import register_method
from zoo.validation import check_tensor


@register_method("tjepa")
class TJEPA(MomentumMethod):
    """T-JEPA (Thimonier et al. 2025, arXiv 2410.05016): a context encoder sees a random subset of a row's feature
    tokens, an I-JEPA-style predictor regresses what an EMA target encoder computes for held-out features; no
    augmentations.

    Algorithm per batch: features → tokens ([REG] + one per feature) → masks (context ⊂ features; 4 target subsets of
    the rest; [REG] always in the context) → context encoder f_θ(context tokens) → predictor g_φ at each target mask
    → MSE to sg(f_ξ(all tokens)) at the target positions; then ξ ← τξ + (1 − τ)θ, τ linear 0.996 → 1.
    ``embed`` is the mean over the target encoder's R + D output tokens (the frozen target encoder is what the paper
    evaluates downstream); :meth:`embed_tokens` gives the tokens for the downstream adapters.
    """

    pretraining_heads = ("predictor",)

    input_key = "features"

    def __init__(
        self,
        feature_schema: dict[str, Any] | None = None,
        encoder: TabularEncoderConfig | None = None,
        predictor_dim: int = 16,
        predictor_depth: int = 16,
        predictor_heads: int = 2,
        context_share: Sequence[float] = (0.2, 0.4),
        target_share: Sequence[float] = (0.2, 0.4),
        num_targets: int = 4,
        loss: str = "mse",
        ema_tau_base: float = 0.996,
        ema_tau_final: float = 1.0,
        ema_tau_schedule: str = "linear",
        optimizer: str = "adamw",
        lr: float = 3.66e-4,
        weight_decay: float = 0.0,
        warmup_epochs: float = 10.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            feature_schema: ``{"numeric": [names], "categorical": [names], "cardinalities": [ints]}`` of the input
                columns, as :attr:`zoo.data.tabular.TabularDataModule.feature_schema` gives it (the CLI links it).
            encoder: tabular transformer spec (embed_dim, depth, num_heads, ff_dim, dropout, num_reg_tokens); default the
                paper's reference run (h 64, L 16, 2 heads, F 64).
            predictor_dim, predictor_depth, predictor_heads: predictor width p, layers, heads (reference: 16, 16, 2).
            context_share, target_share: (low, high) shares of the D features in the context and in each target mask.
            num_targets: target masks per sample (4).
            loss: ``"mse"`` (the paper) or ``"smooth_l1"`` (the I-JEPA release).
            ema_tau_base, ema_tau_final, ema_tau_schedule: EMA momentum, linear over the run (0.996 → 1).
            optimizer, lr, weight_decay, warmup_epochs: AdamW at the reference run's 3.66e-4, no weight decay (the
                release's sweep configs), 10 warm-up epochs then cosine; bias/norm parameters are never decayed.
                The paper clips gradients element-wise to ±1: set ``trainer.gradient_clip_val: 1.0`` and
                ``gradient_clip_algorithm: value`` (the recipes do).
            **kwargs: evaluation args of :class:`~zoo.methods.base.SSLMethod` (``num_classes`` etc.).
        """
        if encoder:  # the hparams (hence checkpoints and config.json) keep the new names
            encoder = renamed(encoder, TABULAR_RENAMED_KEYS, "TJEPA encoder")
        super().__init__(
            ema_tau_base=ema_tau_base, ema_tau_final=ema_tau_final, ema_tau_schedule=ema_tau_schedule, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs,
        )  # fmt: skip
        if not feature_schema or not {"numeric", "categorical", "cardinalities"} <= set(feature_schema):
            raise ValueError(
                "TJEPA needs feature_schema={'numeric': [...], 'categorical': [...], 'cardinalities': [...]} "
                "(the CLI links it from data.feature_schema)"
            )
        if len(feature_schema["categorical"]) != len(feature_schema["cardinalities"]):
            raise ValueError("feature_schema: one cardinality per categorical column is needed")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if len(context_share) != 2 or len(target_share) != 2:
            raise ValueError(f"context_share and target_share are (low, high) pairs, got {context_share}, {target_share}")
        self.encoder = TabularTransformer(len(feature_schema["numeric"]), feature_schema["cardinalities"], encoder)
        if self.encoder.num_columns < 2:
            raise ValueError("T-JEPA needs at least 2 features (a context and a target)")
        # the predictor's positions: the encoder's table (base 100) at the predictor width
        positions = sincos_1d(self.encoder.num_tokens, predictor_dim, base=100.0)
        self.predictor = JEPAPredictor(self.encoder.embed_dim, positions, predictor_depth, predictor_heads)
        self.target_encoder = self.make_target(self.encoder)
        self.init_evaluation(self.encoder.num_features)

    # ---- representation -------------------------------------------------------------------------------------------
    def embedding_encoder(self) -> torch.nn.Module:
        return self.target_encoder  # T-JEPA's downstream protocol reads the target encoder

    def embed_tokens(self, features: Tensor) -> Tensor:
        """The target encoder's output tokens [B, R + D, h] (input of the downstream adapters)."""
        d = self.target_encoder.num_columns
        check_tensor(features, f"{type(self).__name__}.embed", f"features [B, {d}]", ndim=2, sizes={1: d}, integers=True)
        return self.target_encoder(features)

    def embed(self, features: Tensor) -> Tensor:
        return self.embed_tokens(features).mean(dim=1)

    @classmethod
    def migrate_state_dict(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        return migrate_predictor_state(state)

    # ---- training ---------------------------------------------------------------------------------------------------
    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This batch's context and target feature masks, drawn on the device from stream 0."""
        hp = self.hparams
        masks = sample_tabular_masks(
            batch[self.input_key].shape[0], self.encoder.num_columns, self.encoder.num_reg_tokens,
            tuple(hp.context_share), tuple(hp.target_share), hp.num_targets, generator=self.view_generator(0),
        )  # fmt: skip
        return {"masks": masks}

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        features = batch["features"]
        masks: TokenMasks = batch["masks"]
        with torch.no_grad():  # target encoder: the full sequence, stop-gradient
            full = self.target_encoder(features)
            targets = apply_masks(full, masks.targets)
        context = self.encoder(features, masks.context)
        predictions = self.predictor(context, masks.context, masks.targets)
        loss = jepa_loss(predictions, targets, self.hparams.loss)
        logs = {
            "ema_tau": torch.tensor(self.current_tau()),
            "context_features": torch.tensor(float(masks.context.shape[1] - self.encoder.num_reg_tokens)),
            "target_features": torch.tensor(float(masks.targets.shape[2])),
        }
        return SSLOutput(loss=loss, features=full.mean(dim=1), logs=logs)
