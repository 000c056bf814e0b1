"""SimCLR: Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations"
(arXiv 2002.05709). Reference code: google-research/simclr (tf2/model.py, tf2/objective.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.encoders.image import ImageEncoder, ImageEncoderConfig
from zoo.losses.nt_xent import nt_xent_loss
from zoo.methods.base import SSLMethod, SSLOutput
from zoo.nn.heads import MLPHead
from zoo.nn.views import ImageViewConfig, ImageViews
from zoo.registry import register_method
from zoo.validation import check_images


@register_method("simclr")
class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020, arXiv 2002.05709): two augmented views of each image, a ResNet encoder, an MLP
    projector and the NT-Xent contrastive loss over the global batch.

    Algorithm: x → (t(x), t'(x)) on the device → f (encoder, both views in one pass) → g (projector) →
    NT-Xent(z₁, z₂; τ) with every other view in the (all-gathered) batch as a negative. Evaluation uses f's output.
    """

    pretraining_heads = ("projector",)

    min_batch_size = 2  # NT-Xent on a batch of 1 has no negatives: its loss is 0

    def __init__(
        self,
        encoder: ImageEncoderConfig | None = None,
        views: ImageViewConfig | None = None,
        projector_hidden_dim: int | None = None,
        projector_out_dim: int = 128,
        projector_layers: int = 2,
        temperature: float = 0.5,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            encoder: image encoder spec (timm name, in_chans, small_image_stem, mean/std); default ResNet-18.
            views: augmentation spec for both views (SimCLR appendix A defaults).
            projector_hidden_dim: hidden width of the projector; None = the encoder's feature dim (SimCLR v1).
            projector_out_dim: 128 in the paper.
            projector_layers: 2 (v1) or 3 (v2).
            temperature: τ of NT-Xent; 0.1 for ImageNet-size batches, 0.5 for CIFAR-size data.
            gather_distributed: negatives from all ranks (gathered with gradient).
            **kwargs: optimisation and evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(**kwargs)
        self.encoder = ImageEncoder(encoder)
        feature_dim = self.encoder.num_features
        self.projector = MLPHead(
            feature_dim, projector_hidden_dim or feature_dim, projector_out_dim, projector_layers, last_batch_norm=True
        )
        self.views = ImageViews(views)
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.init_evaluation(feature_dim)

    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(check_images(images, self.encoder, f"{type(self).__name__}.embed"))

    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"views": self.image_views(batch, [self.views, self.views])}

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        view1, view2 = batch["views"]
        n = view1.shape[0]
        features = self.encoder(torch.cat([view1, view2]))
        z1, z2 = self.projector(features).split(n)
        loss = nt_xent_loss(z1, z2, self.temperature, self.gather_distributed)
        return SSLOutput(loss=loss, features=features[:n])
