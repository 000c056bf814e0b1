"""BYOL: Grill et al. 2020, "Bootstrap Your Own Latent" (arXiv 2006.07733). Reference code:
google-deepmind/deepmind-research byol/ (byol_experiment.py, configs/byol.py, utils/augmentations.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.encoders.image import ImageEncoder, ImageEncoderConfig
from zoo.losses.byol import symmetric_byol_loss
from zoo.methods.base import SSLOutput
from zoo.methods.momentum import MomentumMethod
from zoo.nn.heads import MLPHead
from zoo.nn.views import ImageViewConfig, ImageViews
from zoo.registry import register_method
from zoo.validation import check_images

#: BYOL's asymmetric augmentations (Appendix B, Table 6): colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale
#: p 0.2, Gaussian blur p 1.0 / 0.1, solarisation p 0.0 / 0.2 for the two views.
BYOL_VIEW1: ImageViewConfig = {
    "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "blur_prob": 1.0, "solarize_prob": 0.0,
}
BYOL_VIEW2: ImageViewConfig = {
    "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "blur_prob": 0.1, "solarize_prob": 0.2,
}


@register_method("byol")
class BYOL(MomentumMethod):
    """BYOL (Grill et al. 2020, arXiv 2006.07733): an online network (encoder, projector, predictor) regresses the
    projection that an EMA target network (encoder, projector) gives for another view; no negatives.

    Algorithm: x → (t(x), t'(x)) on the device → online f, g, q and target f', g' on both views →
    ℓ(q(g(f(v₁))), sg(g'(f'(v₂)))) + ℓ(q(g(f(v₂))), sg(g'(f'(v₁)))) with ℓ = 2 − 2cos; then ξ ← τξ + (1 − τ)θ.
    Evaluation uses the online encoder f.
    """

    pretraining_heads = ("projector", "predictor")

    min_batch_size = 2  # batch-norm statistics of its projector and predictor

    def __init__(
        self,
        encoder: ImageEncoderConfig | None = None,
        view1: ImageViewConfig | None = None,
        view2: ImageViewConfig | None = None,
        projector_hidden_dim: int = 4096,
        projector_out_dim: int = 256,
        predictor_hidden_dim: int = 4096,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            encoder: image encoder spec (timm name, in_chans, small_image_stem, mean/std); default ResNet-18.
            view1, view2: augmentation specs of the two views, merged over BYOL's asymmetric defaults.
            projector_hidden_dim, projector_out_dim: g = Linear(d→4096) → BN → ReLU → Linear(4096→256).
            predictor_hidden_dim: q = the same MLP shape, 256 → 4096 → 256.
            **kwargs: EMA args of :class:`~zoo.methods.momentum.MomentumMethod` and the optimisation/evaluation
                args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(**kwargs)
        self.encoder = ImageEncoder(encoder)
        feature_dim = self.encoder.num_features
        self.projector = MLPHead(feature_dim, projector_hidden_dim, projector_out_dim, num_layers=2)
        self.predictor = MLPHead(projector_out_dim, predictor_hidden_dim, projector_out_dim, num_layers=2)
        self.target_encoder = self.make_target(self.encoder)
        self.target_projector = self.make_target(self.projector)
        self.views = torch.nn.ModuleList(
            [ImageViews({**BYOL_VIEW1, **(view1 or {})}), ImageViews({**BYOL_VIEW2, **(view2 or {})})]
        )
        self.init_evaluation(feature_dim)

    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(check_images(images, self.encoder, f"{type(self).__name__}.embed"))

    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"views": self.image_views(batch, self.views)}

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        view1, view2 = batch["views"]
        n = view1.shape[0]
        both = torch.cat([view1, view2])
        features = self.encoder(both)
        p1, p2 = self.predictor(self.projector(features)).split(n)
        with torch.no_grad():  # target network: stop-gradient, BN in train mode as in the reference
            z1_target, z2_target = self.target_projector(self.target_encoder(both)).split(n)
        loss = symmetric_byol_loss(p1, p2, z1_target, z2_target)
        tau = torch.tensor(self.current_tau())
        return SSLOutput(loss=loss, features=features[:n], logs={"ema_tau": tau})
