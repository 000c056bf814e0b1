"""I-JEPA: Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture" (arXiv 2301.08243). Reference code: facebookresearch/ijepa (src/train.py, src/masks/multiblock.py,
src/models/vision_transformer.py). zoo uses it as the ablation of DMT-JEPA (:mod:`zoo.methods.dmt_jepa`)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from zoo.encoders.vit import ViTEncoder, ViTEncoderConfig, gather_tokens, sincos_pos_embed_2d
from zoo.losses.jepa import JEPALossKind, jepa_loss
from zoo.methods.base import SSLOutput
from zoo.methods.momentum import MomentumMethod
from zoo.nn.block_masking import MultiBlockMaskConfig, MultiBlockMasks, multi_block_masks, resolve_multi_block_config
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


def gather_blocks(tokens: Tensor, blocks: Tensor) -> Tensor:
    """Tokens [B, N, D] at every target block's patches, blocks [T, B, K] → [T, B, K, D]."""
    num_blocks, batch, k = blocks.shape
    flat = blocks.transpose(0, 1).reshape(batch, num_blocks * k)
    return gather_tokens(tokens, flat).view(batch, num_blocks, k, -1).transpose(0, 1)


class JEPAPredictor(nn.Module):
    """I-JEPA predictor (arXiv 2301.08243, §3 "Prediction", Appendix A): a narrow ViT over the context tokens
    (projected to the predictor width, plus their positions) and one learnable mask token per target patch (plus its
    position); each target block is predicted in its own sequence; LayerNorm, then a projection back to the encoder
    width at the mask-token outputs."""

    def __init__(
        self, embed_dim: int, grid_size: tuple[int, int], predictor_dim: int = 384, depth: int = 6, num_heads: int = 12,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if predictor_dim % num_heads:
            raise ValueError(f"JEPA predictor: num_heads={num_heads} must divide predictor_dim={predictor_dim}")
        self.embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # the release's init
        self.register_buffer("pos_embed", sincos_pos_embed_2d(*grid_size, predictor_dim)[None], persistent=False)
        self.blocks = nn.Sequential(*[Block(predictor_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(predictor_dim)
        self.proj = nn.Linear(predictor_dim, embed_dim)

    def forward(self, context: Tensor, context_index: Tensor, target_index: Tensor) -> Tensor:
        """context [B, K_ctx, D] (encoder outputs at ``context_index`` [B, K_ctx]), target_index [T, B, K_tgt]
        → predictions [T, B, K_tgt, D]."""
        num_blocks, batch, k = target_index.shape
        if context.shape[:2] != context_index.shape or target_index.shape[1] != context.shape[0]:
            raise ValueError(
                f"JEPA predictor: context {tuple(context.shape)}, context_index {tuple(context_index.shape)} and "
                f"target_index {tuple(target_index.shape)} disagree (want [B, K, D], [B, K], [T, B, K_tgt])"
            )
        pos = self.pos_embed.expand(batch, -1, -1).to(context.dtype)
        x = self.embed(context) + gather_tokens(pos, context_index).to(self.embed.weight.dtype)
        # one sequence per (target block, image): the blocks do not see each other's mask tokens
        x = x.repeat(num_blocks, 1, 1)
        targets = gather_blocks(pos, target_index).reshape(num_blocks * batch, k, -1)
        x = torch.cat([x, self.mask_token.to(x.dtype) + targets.to(x.dtype)], dim=1)
        x = self.norm(self.blocks(x))
        return self.proj(x[:, -k:]).view(num_blocks, batch, k, -1)


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
            ema_tau_base, ema_tau_final: EMA 0.996 → 1.0, linearly over the run.
            **kwargs: the evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio, ema_tau_base=ema_tau_base, ema_tau_final=ema_tau_final, **kwargs,
        )
        if loss not in ("smooth_l1", "mse"):
            raise ValueError(f"loss must be 'smooth_l1' or 'mse', got {loss!r}")
        self.encoder = ViTEncoder(encoder)
        dim = self.encoder.num_features
        self.masking = resolve_multi_block_config(masking)
        self.predictor = JEPAPredictor(dim, self.encoder.grid_size, predictor_dim, predictor_depth, predictor_heads)
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

    def target_features(self, patch_features: Tensor, target_index: Tensor) -> Tensor:
        """Regression targets [T, B, K_tgt, D] from the target encoder's patch features [B, N, D] (no grad):
        LayerNorm without affine over channels (the release's ``F.layer_norm(h, (h.size(-1),))``), then the target
        blocks."""
        return gather_blocks(F.layer_norm(patch_features, patch_features.shape[-1:]), target_index)

    # ---- SSLMethod ----------------------------------------------------------------------------------------------
    def embedding_encoder(self) -> torch.nn.Module:
        return self.target_encoder  # I-JEPA evaluates (and fine-tunes) the target encoder

    def embed(self, images: Tensor) -> Tensor:
        return self.target_encoder(check_images(images, self.target_encoder, f"{type(self).__name__}.embed")).mean(1)

    def current_tau(self) -> float:
        """τ rises linearly from ``ema_tau_base`` to ``ema_tau_final`` over the run's optimizer steps (I-JEPA's
        ``momentum_scheduler``), instead of BYOL's cosine."""
        if self._trainer is None:
            return self.hparams.ema_tau_base
        total = self.trainer.estimated_stepping_batches
        progress = min(1.0, self.trainer.global_step / max(1, int(total))) if math.isfinite(total) else 0.0
        return self.hparams.ema_tau_base + (self.hparams.ema_tau_final - self.hparams.ema_tau_base) * progress

    def make_views(self, images: Tensor, sizes: Tensor | None = None) -> list[Tensor]:
        return [self.views(images, self.view_generator(0), sizes)]

    def make_masks(self, batch_size: int) -> MultiBlockMasks:
        """This batch's multi-block masks, drawn on the device from the batch's seeded generator."""
        return multi_block_masks(batch_size, self.encoder.grid_size, self.view_generator(1), self.masking)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if isinstance(batch, dict) and "views" in batch and "masks" not in batch:
            batch["masks"] = self.make_masks(batch["views"][0].shape[0])
        return batch

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        (images,) = batch["views"] if "views" in batch else self.make_views(batch["image"], batch.get("image_size"))
        masks: MultiBlockMasks = batch["masks"] if "masks" in batch else self.make_masks(images.shape[0])
        with torch.no_grad():
            patch_features = self.target_encoder(images)
            targets = self.target_features(patch_features, masks.targets)
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
