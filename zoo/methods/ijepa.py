"""I-JEPA: Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture" (arXiv 2301.08243). Reference code: facebookresearch/ijepa (src/train.py, src/masks/multiblock.py,
src/models/vision_transformer.py). zoo uses it as the ablation of DMT-JEPA (:mod:`zoo.methods.dmt_jepa`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.encoders.vit import ViTEncoder, ViTEncoderConfig
from zoo.losses.jepa import JEPALossKind, jepa_loss
from zoo.methods.base import SSLOutput
from zoo.methods.momentum import MomentumMethod
from zoo.nn.block_masking import MultiBlockMaskConfig, multi_block_masks, resolve_multi_block_config
from zoo.nn.jepa_predictor import JEPAPredictor, migrate_predictor_state
from zoo.nn.tokens import PosEmbedOrder, TokenMasks, apply_masks, sincos_2d
from zoo.nn.views import ImageViewConfig, ImageViews
from zoo.registry import register_method
from zoo.validation import check_images

#: I-JEPA's only augmentation: RandomResizedCrop with scale (0.3, 1) (release configs; no flip, no colour)
IJEPA_VIEW: ImageViewConfig = {
    "crop_scale": (0.3, 1.0),
    "flip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "blur_prob": 0.0,
    "solarize_prob": 0.0,
}


@register_method("ijepa")
class IJEPA(MomentumMethod):
    """I-JEPA (Assran et al. 2023, arXiv 2301.08243): from one context block of an image, predict the
    representations of several target blocks of the same image, in representation space; no views to compare.

    Algorithm: x → crop on the device → multi-block masks (:func:`zoo.nn.block_masking.multi_block_masks`) → context
    encoder f_θ on the context patches → predictor g_φ(context, target positions) → ŝ_y; EMA target encoder
    f_θ̄ on the whole image → LayerNorm (no affine) → s_y at the target patches; loss smooth-L1(ŝ_y, sg(s_y)); then
    θ̄ ← τθ̄ + (1 − τ)θ with τ rising *linearly* from ``ema_tau_base`` to ``ema_tau_final`` (the release's schedule).

    ``embed(images)`` = the mean over patches of the **target** encoder's output (after its final LayerNorm), as
    I-JEPA evaluates (average-pooled target-encoder patch features). The online probe trains on the same features.

    Not reproduced: the release's cosine weight-decay schedule 0.04 → 0.4 (zoo's base has a constant weight decay).
    """

    pretraining_heads = ("predictor",)

    def __init__(
        self,
        encoder: ViTEncoderConfig | None = None,
        view: ImageViewConfig | None = None,
        masking: MultiBlockMaskConfig | None = None,
        predictor_dim: int = 384,
        predictor_depth: int = 6,
        predictor_heads: int = 6,
        loss: JEPALossKind = "smooth_l1",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.04,
        warmup_epochs: float = 40.0,
        min_lr_ratio: float = 1e-3,
        ema_tau_base: float = 0.996,
        ema_tau_final: float = 1.0,
        ema_tau_schedule: str = "linear",
        pos_embed_order: PosEmbedOrder = "xy",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            encoder: ViT spec (:class:`~zoo.encoders.vit.ViTEncoderConfig`); default ViT-S/16 at 224×224.
            view: the crop applied before masking, merged over I-JEPA's RandomResizedCrop(0.3, 1) only.
            masking: multi-block masking spec, merged over I-JEPA's (4 targets of 15-20 %, context 85-100 %).
            predictor_dim, predictor_depth, predictor_heads: the narrow predictor ViT (paper: width 384, depth 6
                for ViT-B, 12 for ViT-L/H; the release gives it the encoder's number of heads, 6 for ViT-S).
            loss: "smooth_l1" (the release) or "mse" (the paper's L2).
            optimizer, lr, weight_decay, warmup_epochs, min_lr_ratio: the release's AdamW, peak 1e-3 after 40
                warm-up epochs, cosine to 1e-6 (ratio 1e-3), weight decay 0.04 (its schedule's start). zoo's
                warm-up starts from ~0, the release's from 2e-4.
            ema_tau_base, ema_tau_final, ema_tau_schedule: EMA 0.996 → 1.0, linearly over the run.
            pos_embed_order: channel layout of the fixed 2-D sin-cos positions of the encoder and the predictor
                (:func:`zoo.nn.tokens.sincos_2d`): "xy", the release's (so its weights import as they are), or "yx",
                the transpose, which the checkpoints of zoo 0.1 were trained with (their config.json has no such
                key; :meth:`migrate_config` sets it when loading them).
            **kwargs: the evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio, ema_tau_base=ema_tau_base, ema_tau_final=ema_tau_final,
            ema_tau_schedule=ema_tau_schedule, **kwargs,
        )
        if loss not in ("smooth_l1", "mse"):
            raise ValueError(f"loss must be 'smooth_l1' or 'mse', got {loss!r}")
        self.encoder = ViTEncoder(encoder, pos_embed_order)
        dim = self.encoder.num_features
        self.masking = resolve_multi_block_config(masking)
        self.predictor = JEPAPredictor(
            dim, sincos_2d(self.encoder.grid_size, predictor_dim, pos_embed_order), predictor_depth, predictor_heads
        )
        self.target_encoder = self.make_target(self.encoder)
        self.views = ImageViews({**IJEPA_VIEW, **(view or {})})
        crop = self.views.config["output_size"]
        if crop is not None and crop != self.encoder.img_size:
            raise ValueError(f"view output_size={crop} differs from the ViT encoder's img_size={self.encoder.img_size}")
        self.init_evaluation(dim)

    # ---- the two places DMT-JEPA changes ------------------------------------------------------------------------
    def context_features(self, context: Tensor) -> Tensor:
        """Context-encoder outputs [B, K_ctx, D] as the predictor reads them (I-JEPA: unchanged)."""
        return context

    def target_features(self, patch_features: Tensor) -> Tensor:
        """Every patch's regression target [B, N, D] from the target encoder's patch features [B, N, D] (no grad):
        LayerNorm without affine over channels (the release's ``F.layer_norm(h, (h.size(-1),))``)."""
        return F.layer_norm(patch_features, patch_features.shape[-1:])

    # ---- SSLMethod ----------------------------------------------------------------------------------------------
    def embedding_encoder(self) -> torch.nn.Module:
        return self.target_encoder  # I-JEPA evaluates (and fine-tunes) the target encoder

    def embed(self, images: Tensor) -> Tensor:
        return self.target_encoder(check_images(images, self.target_encoder, f"{type(self).__name__}.embed")).mean(1)

    # ---- files of earlier versions ------------------------------------------------------------------------------
    @classmethod
    def migrate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A config without ``pos_embed_order`` was written by zoo 0.1, whose tables were the "yx" layout: the
        weights keep the layout they were trained with, so they embed as before."""
        return config if "pos_embed_order" in config else {**config, "pos_embed_order": "yx"}

    @classmethod
    def migrate_state_dict(cls, state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        return migrate_predictor_state(state)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # the model may have been built from another config (a resumed run's YAML): the weights bring their layout
        saved = self.migrate_config(dict(checkpoint.get("hyper_parameters", {})))
        if saved["pos_embed_order"] != self.hparams.pos_embed_order:
            self.set_pos_embed_order(saved["pos_embed_order"])

    def set_pos_embed_order(self, order: PosEmbedOrder) -> None:
        """Rebuild the encoders' and the predictor's fixed position tables in ``order``."""
        self.encoder.set_pos_embed_order(order)
        self.target_encoder.set_pos_embed_order(order)
        self.predictor.set_pos_embed(sincos_2d(self.encoder.grid_size, self.hparams.predictor_dim, order))
        self.hparams.pos_embed_order = order

    # ---- inputs and loss ----------------------------------------------------------------------------------------
    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The crop (stream 0; inside each image's valid ``image_size`` when the batch has one) and this batch's
        multi-block masks (stream 1), drawn on the device."""
        view = self.views(batch[self.input_key], self.view_generator(0), batch.get("image_size"))
        masks = multi_block_masks(view.shape[0], self.encoder.grid_size, self.view_generator(1), self.masking)
        return {"views": [view], "masks": masks}

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        (images,) = batch["views"]
        masks: TokenMasks = batch["masks"]
        with torch.no_grad():
            patch_features = self.target_encoder(images)
            targets = apply_masks(self.target_features(patch_features), masks.targets)
        context = self.context_features(self.encoder(images, keep=masks.context))
        predictions = self.predictor(context, masks.context, masks.targets)
        loss = jepa_loss(predictions, targets, self.hparams.loss)
        logs = {
            "ema_tau": torch.tensor(self.current_tau()),
            "context_patches": torch.tensor(float(masks.context.shape[1])),
            "target_patches": torch.tensor(float(masks.targets.shape[2])),
        }
        # the probe reads what embed() returns: mean-pooled target-encoder features of the (cropped) image
        return SSLOutput(loss=loss, features=patch_features.mean(1), logs=logs)
