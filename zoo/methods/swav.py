"""SwAV: Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments"
(arXiv 2006.09882). Reference code: facebookresearch/swav (main_swav.py, src/resnet50.py, src/multicropdataset.py)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from zoo.encoders.image import ImageEncoder, ImageEncoderConfig
from zoo.losses.swav import SwAVLoss, swav_loss
from zoo.methods.base import SSLMethod, SSLOutput
from zoo.nn.distributed import is_distributed, rank, world_size
from zoo.nn.heads import MLPHead, Prototypes
from zoo.nn.views import ImageViewConfig, ImageViews
from zoo.registry import register_method
from zoo.validation import check_images

log = logging.getLogger(__name__)

#: SwAV's multi-crop colour distortion (src/multicropdataset.py): jitter (0.8, 0.8, 0.8, 0.2) with p 0.8,
#: grayscale 0.2, Gaussian blur p 0.5; crop scales are set per resolution by the method.
SWAV_VIEWS: ImageViewConfig = {
    "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2, "blur_prob": 0.5,
}

_QUEUE_KEY = "zoo_swav_queue"


@register_method("swav")
class SwAV(SSLMethod):
    """SwAV (Caron et al. 2020, arXiv 2006.09882): the code of one view, obtained by an equipartitioned
    (Sinkhorn-Knopp) assignment of the batch to K prototypes, is predicted from every other view.

    Algorithm: x → multi-crop (2 large + N small, on the device) → f (each resolution in one pass) → projector →
    z = normalise(·) → scores S = z·Cᵀ with C normalised before every step → codes q = Sinkhorn(S of the 2 large crops
    [+ queue]) over the global batch → L = swapped prediction with log_softmax(S/τ). The prototypes get no update for
    the first ``freeze_prototypes_steps`` optimizer steps. Evaluation uses f's output.
    """

    pretraining_heads = ("projector", "prototypes")

    min_batch_size = 2  # Sinkhorn-Knopp spreads the batch over the prototypes

    def __init__(
        self,
        encoder: ImageEncoderConfig | None = None,
        views: ImageViewConfig | None = None,
        num_large_crops: int = 2,
        num_small_crops: int = 6,
        large_crop_size: int | None = None,
        small_crop_size: int = 96,
        large_crop_scale: tuple[float, float] = (0.14, 1.0),
        small_crop_scale: tuple[float, float] = (0.05, 0.14),
        projector_hidden_dim: int = 2048,
        projector_out_dim: int = 128,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_steps: int = 313,
        queue_length: int = 0,
        queue_start_epoch: int = 15,
        gather_distributed: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            encoder: image encoder spec (timm name, in_chans, small_image_stem, mean/std); default ResNet-18.
            views: colour/blur/flip settings shared by all crops, merged over SwAV's; crop size/scale come from the
                arguments below.
            num_large_crops: crops that produce codes (2 in SwAV).
            num_small_crops: low-resolution crops that only predict (6 in "2×224 + 6×96"; 0 disables multi-crop).
            large_crop_size: side of the large crops; None = the input size (224 on ImageNet).
            small_crop_size: side of the small crops (96 on ImageNet).
            large_crop_scale, small_crop_scale: area ranges, (0.14, 1) and (0.05, 0.14) in SwAV.
            projector_hidden_dim, projector_out_dim: Linear(d→2048) → BN → ReLU → Linear(2048→128).
            num_prototypes: K (3000 on ImageNet; a few hundred for small data).
            temperature: τ of the swapped-prediction softmax (0.1).
            sinkhorn_epsilon, sinkhorn_iterations: ε = 0.05, 3 iterations.
            freeze_prototypes_steps: optimizer steps without prototype updates (≈ one epoch: 313 at batch 4096).
            queue_length: codes also equipartition this many earlier embeddings, over all ranks (3840 at batch
                256); 0 = no queue.
            queue_start_epoch: epoch at which the queue starts filling (15 in SwAV's batch-256 recipe).
            gather_distributed: Sinkhorn over the samples of all ranks.
            **kwargs: optimisation and evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        super().__init__(**kwargs)
        if num_large_crops < 1 or num_small_crops < 0 or num_large_crops + num_small_crops < 2:
            raise ValueError(f"SwAV needs >= 1 large crop and >= 2 crops, got {num_large_crops} + {num_small_crops}")
        if queue_length < 0 or freeze_prototypes_steps < 0:
            raise ValueError(f"queue_length and freeze_prototypes_steps must be >= 0, got {queue_length}, {freeze_prototypes_steps}")
        self.encoder = ImageEncoder(encoder)
        feature_dim = self.encoder.num_features
        self.projector = MLPHead(feature_dim, projector_hidden_dim, projector_out_dim, num_layers=2)
        self.prototypes = Prototypes(projector_out_dim, num_prototypes)
        shared = {**SWAV_VIEWS, **(views or {})}
        self.large_views = ImageViews({**shared, "output_size": large_crop_size, "crop_scale": tuple(large_crop_scale)})
        self.small_views = ImageViews({**shared, "output_size": small_crop_size, "crop_scale": tuple(small_crop_scale)})
        self.num_large_crops = num_large_crops
        self.num_small_crops = num_small_crops
        self.criterion = SwAVLoss(temperature, sinkhorn_epsilon, sinkhorn_iterations, gather_distributed)
        # Training state, not weights: each rank's queue of earlier embeddings [large crops, L/W, D]. Kept out of
        # the module buffers (DDP would broadcast rank 0's queue over the others' every step) and saved per rank
        # in the Lightning checkpoint by on_save_checkpoint.
        self.queue: Tensor | None = None
        self.queue_filled = 0
        self.init_evaluation(feature_dim)

    def embed(self, images: Tensor) -> Tensor:
        return self.encoder(check_images(images, self.encoder, f"{type(self).__name__}.embed"))

    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        # multi-crop: every crop of a sample comes from the same decoded image, inside its valid area
        crops = [self.large_views] * self.num_large_crops + [self.small_views] * self.num_small_crops
        return {"views": self.image_views(batch, crops)}

    # ---- queue --------------------------------------------------------------------------------------------------
    def _queue_rows_per_rank(self) -> int:
        return self.hparams.queue_length // world_size()

    def _maybe_start_queue(self, dim: int) -> None:
        if self.queue is not None:
            self.queue = self.queue.to(self.device)  # restored from a checkpoint on the CPU
            return
        if self.hparams.queue_length == 0 or self._trainer is None:
            return
        if self.current_epoch >= self.hparams.queue_start_epoch:
            rows = self._queue_rows_per_rank()
            if rows == 0:
                raise ValueError(f"queue_length {self.hparams.queue_length} is smaller than the {world_size()} ranks")
            self.queue = torch.zeros(self.num_large_crops, rows, dim, device=self.device)
            self.queue_filled = 0

    def _queue_full(self) -> bool:
        return self.queue is not None and self.queue_filled >= self.queue.shape[1]

    @torch.no_grad()
    def _codes(self, scores: list[Tensor], z: list[Tensor]) -> list[Tensor]:
        """Sinkhorn codes of the large crops, with the queue's embeddings (scored by the current prototypes) in the
        equipartition once the queue is full; then this batch's embeddings enter the queue."""
        use_queue = self._queue_full()
        codes = []
        for s in range(self.num_large_crops):
            queue_scores = self.prototypes(self.queue[s].to(z[s].dtype)) if use_queue else None
            codes.append(self.criterion.codes(scores[s].detach(), queue_scores))
        if self.queue is not None:
            n = min(z[0].shape[0], self.queue.shape[1])
            self.queue = self._shifted_queue(z, n)
            self.queue_filled = min(self.queue.shape[1], self.queue_filled + n)
        return codes

    def _shifted_queue(self, z: list[Tensor], n: int) -> Tensor:
        """Newest embeddings first, the oldest ``n`` rows drop out."""
        newest = torch.stack([z_s[:n].detach().float() for z_s in z[: self.num_large_crops]])
        return torch.cat([newest, self.queue[:, : self.queue.shape[1] - n]], dim=1)

    # ---- training -----------------------------------------------------------------------------------------------
    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        crops = batch["views"]
        n = crops[0].shape[0]
        self.prototypes.normalize()
        # one backbone pass per resolution, then the projector on all crops together (as the reference)
        large = self.encoder(torch.cat(crops[: self.num_large_crops]))
        features = [large]
        if self.num_small_crops:
            features.append(self.encoder(torch.cat(crops[self.num_large_crops :])))
        z = F.normalize(self.projector(torch.cat(features)), dim=1)
        scores = list(self.prototypes(z).split(n))
        z_crops = list(z.split(n))
        self._maybe_start_queue(z.shape[1])
        # read before this batch enters the queue: the codes use the queue exactly when it was full already
        queue_in_use = self._queue_full()
        codes = self._codes(scores, z_crops)
        loss = swav_loss(scores, codes, self.hparams.temperature)
        logs = {"queue_in_use": torch.tensor(float(queue_in_use))}
        return SSLOutput(loss=loss, features=large[:n], logs=logs)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # back onto the sphere after every update, on whole rows (under FSDP the in-forward projection in ssl_step
        # acts on a gathered copy that is discarded afterwards)
        with self.full_weights():
            self.prototypes.normalize()

    def on_after_backward(self) -> None:
        # SwAV freezes the prototypes during the first iterations: their gradient is dropped, so the optimizer
        # (momentum, weight decay) leaves them untouched
        if self._trainer is not None and self.trainer.global_step < self.hparams.freeze_prototypes_steps:
            self.prototypes.layer.weight.grad = None

    # ---- checkpoint ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.queue is None:
            return
        # every rank's queue (Lightning calls this hook on all ranks, then rank 0 writes the file)
        queues = [self.queue]
        if is_distributed():
            queues = [torch.empty_like(self.queue) for _ in range(world_size())]
            dist.all_gather(queues, self.queue.contiguous())
        checkpoint[_QUEUE_KEY] = {"queues": torch.stack(queues).cpu(), "filled": self.queue_filled}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(_QUEUE_KEY)
        if state is None:
            return
        queues = state["queues"]
        if queues.shape[0] != world_size():
            log.warning(
                "SwAV queue saved by %d ranks, resuming on %d: the queue starts empty again", queues.shape[0], world_size()
            )
            return
        self.queue = queues[rank()].to(self.device)
        self.queue_filled = int(state["filled"])
