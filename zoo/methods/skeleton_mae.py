"""SkeletonMAE: Yan et al., ICCV 2023, "SkeletonMAE: Graph-based Masked Autoencoder for Skeleton Sequence
Pre-training" (arXiv 2307.08476). The official repository has no code; the loss and re-masking follow GraphMAE
(Hou et al., KDD 2022, arXiv 2205.10803), which SkeletonMAE builds on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.deprecation import renamed
from zoo.encoders.skeleton import RENAMED_KEYS as SKELETON_RENAMED_KEYS
from zoo.encoders.skeleton import SkeletonEncoder, SkeletonEncoderConfig, STRLHead, gin_layer, masked_person_mean
from zoo.losses.sce import scaled_cosine_error
from zoo.methods.base import SSLMethod, SSLOutput
from zoo.nn.distributed import mean_over_ranks
from zoo.nn.masking import SKELETON_MASK_STRATEGIES, skeleton_mask
from zoo.registry import register_method
from zoo.validation import check_tensor

TARGETS = ("input", "embedding")


@register_method("skeleton_mae")
class SkeletonMAE(SSLMethod):
    """SkeletonMAE (Yan et al., ICCV 2023): body parts of every frame's skeleton graph are replaced by a learnable
    [MASK] token, a GIN encoder embeds the graph, and a GIN + MLP decoder reconstructs the masked joints under the
    scaled cosine error.

    Algorithm: x [B, C, T, V, M] → per-joint tokens E(x) → masked joints (same body parts in all frames and persons
    of a sample) ← [MASK] → G_E (GIN × L) → re-mask (masked nodes ← 0, GraphMAE) → G_D (GIN + MLP) →
    mean over masked joints of (1 − cos(ŷ, y))^β, y = the joint's input coordinates (or its detached embedding).
    Evaluation: mean over joints of G_E's unmasked features, pooled over ``embed_segments`` temporal segments and
    over present persons.
    """

    input_key = "skeleton"

    def __init__(
        self,
        encoder: SkeletonEncoderConfig | None = None,
        mask_strategy: str = "parts",
        mask_parts: Sequence[str] = ("right_arm", "right_leg"),
        num_mask_parts: int = 2,
        mask_ratio: float = 0.5,
        remask: bool = True,
        decoder_hidden_dim: int | None = None,
        target: str = "input",
        sce_beta: float = 2.0,
        embed_segments: int = 4,
        optimizer: str = "adam",
        lr: float = 1.5e-4,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            encoder: skeleton encoder spec (layout, in_channels, velocity, embed_dim, depth, gin_eps);
                default NTU-25, D = 64, 3 GIN layers.
            mask_strategy: ``"parts"`` (the fixed ``mask_parts``), ``"random_parts"`` (``num_mask_parts`` per sample)
                or ``"random_joints"`` (``mask_ratio`` of the joints per sample).
            mask_parts: body parts masked by ``"parts"``; the paper's best is right arm + right leg (91.8 FineGym).
            num_mask_parts, mask_ratio: see ``mask_strategy`` (paper ablation: random joints 30–90% → 89.7–90.3).
            remask: zero the encoder output at masked joints before decoding (GraphMAE; the decoder must infer them
                from the visible neighbours).
            decoder_hidden_dim: width of the decoder GIN layer and MLP; None = the encoder's D.
            target: ``"input"`` reconstructs the joint's input features (coordinates [+ velocities]); ``"embedding"``
                its detached joint embedding (the paper leaves this open; "input" cannot collapse).
            sce_beta: β of the scaled cosine error (paper: 2).
            embed_segments: temporal segments of the pooled embedding (D · segments features; 1 = plain mean).
            optimizer, lr, weight_decay, warmup_epochs: the paper pre-trains with Adam, lr 1.5e-4.
            **kwargs: the remaining optimisation/evaluation args of :class:`~zoo.methods.base.SSLMethod`.
        """
        if encoder:  # the hparams (hence checkpoints and config.json) keep the new names
            encoder = renamed(encoder, SKELETON_RENAMED_KEYS, "SkeletonMAE encoder")
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        if mask_strategy not in SKELETON_MASK_STRATEGIES:
            raise ValueError(f"unknown mask_strategy {mask_strategy!r}; valid: {', '.join(SKELETON_MASK_STRATEGIES)}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
        if embed_segments < 1:
            raise ValueError(f"embed_segments must be >= 1, got {embed_segments}")
        self.encoder = SkeletonEncoder(encoder)
        d = self.encoder.num_features
        self.mask_token = nn.Parameter(torch.zeros(d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.mask_strategy, self.mask_parts = mask_strategy, tuple(mask_parts)
        self.num_mask_parts, self.mask_ratio = int(num_mask_parts), float(mask_ratio)
        # fail at construction, not at the first step, on a bad mask spec (a local generator: the global RNG, which
        # seeds the weights initialised below, is left alone)
        self._mask(1, torch.device("cpu"), torch.Generator())
        self.remask, self.target, self.sce_beta = bool(remask), target, float(sce_beta)
        self.embed_segments = int(embed_segments)
        hidden = decoder_hidden_dim or d
        out_dim = self.encoder.input_dim if target == "input" else d
        self.decoder_gin = nn.ModuleList([gin_layer(d, hidden)])
        self.decoder_norm = nn.ModuleList([nn.BatchNorm1d(hidden)])
        self.decoder_act = nn.ModuleList([nn.PReLU()])
        self.decoder_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.PReLU(), nn.Linear(hidden, out_dim))
        self.init_evaluation(d * self.embed_segments)

    # ---- masking / reconstruction -------------------------------------------------------------------------------
    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``"masks"``: the masked joints ``bool [B, V]`` of each sample, drawn from ``view_generator(0)``."""
        x = batch[self.input_key]
        return {"masks": self._mask(x.shape[0], x.device, self.view_generator(0))}

    def _mask(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Tensor:
        return skeleton_mask(
            self.encoder.layout, batch_size, self.mask_strategy, self.mask_parts, self.num_mask_parts,
            self.mask_ratio, generator, device,
        )  # fmt: skip

    def mask_tokens(self, tokens: Tensor, node_mask: Tensor) -> Tensor:
        """Replace the tokens ``[P, T, V, D]`` of masked joints (``bool [P, V]``) with the [MASK] vector."""
        return torch.where(node_mask[:, None, :, None], self.mask_token.to(tokens.dtype), tokens)

    def decode(self, encoded: Tensor, node_mask: Tensor) -> Tensor:
        """G_D on ``[P, T, V, D]`` → reconstructions ``[P, T, V, out]`` (masked nodes zeroed first if ``remask``)."""
        if self.remask:
            encoded = encoded.masked_fill(node_mask[:, None, :, None], 0.0)
        p, t, v, d = encoded.shape
        h = self.encoder.graph.propagate(self.decoder_gin, encoded.reshape(p * t, v, d), self.decoder_norm, self.decoder_act)
        return self.decoder_mlp(h).reshape(p, t, v, -1)

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        x = batch["skeleton"]
        features = self.encoder.input_features(x)  # [B, M, T, V, F]
        present = self.encoder.present_persons(x)  # [B, M]
        node_mask = batch["masks"][:, None, :].expand(-1, x.shape[4], -1)[present]  # [B, V] → [P, V]
        person_features = features[present]  # [P, T, V, F]
        tokens = self.encoder.tokens(person_features)
        encoded = self.encoder.encode_tokens(self.mask_tokens(tokens, node_mask))
        reconstruction = self.decode(encoded, node_mask)
        target = person_features if self.target == "input" else tokens.detach()
        # score masked joints the data has (missing joints are all-zero: nothing to reconstruct)
        scored = node_mask[:, None, :] & person_features.ne(0).any(-1)  # [P, T, V]
        # the mean over the global batch's scored joints: their count varies per rank, so a per-rank mean averaged
        # by DDP would weight the ranks' joints unequally
        error_sum = scaled_cosine_error(reconstruction[scored], target[scored], self.sce_beta, reduction="sum")
        loss = error_sum / mean_over_ranks(scored.sum()).clamp_min(1.0)
        # the online probe reads the masked view's pooled features (the base class detaches them)
        per_person = encoded.new_zeros(*present.shape, *encoded.shape[1:])
        per_person[present] = encoded
        return SSLOutput(loss=loss, features=self.pool(per_person, present), logs={"masked_fraction": scored.float().mean()})

    # ---- representation -----------------------------------------------------------------------------------------
    def pool(self, encoded: Tensor, present: Tensor) -> Tensor:
        """``[B, M, T, V, D]`` → ``[B, D · segments]``: mean over joints, mean within temporal segments, mean over
        present persons."""
        b, m, t, v, d = encoded.shape
        per_frame = encoded.mean(3).reshape(b * m, t, d).transpose(1, 2)  # [B·M, D, T]
        segments = F.adaptive_avg_pool1d(per_frame, self.embed_segments).transpose(1, 2).reshape(b, m, -1)
        return masked_person_mean(segments, present)

    def task_features(self, skeletons: Tensor) -> tuple[Tensor, Tensor]:
        """Per-joint encoder features ``[B, M, T, V, D]`` and the present-person mask ``[B, M]``: the STRL head's input."""
        return self.encoder(skeletons)

    def task_head(self, num_classes: int, **kwargs: Any) -> nn.Module:
        """SkeletonMAE's fine-tuning head (STRL, :class:`~zoo.encoders.skeleton.STRLHead`); ``num_frames`` (the
        datamodule's) is required, ``hidden_dim``, ``num_layers``, ``temporal_kernel`` optional (paper: 3 layers)."""
        if "num_frames" not in kwargs:
            raise ValueError("the STRL head needs num_frames (the datamodule's), e.g. head_kwargs={'num_frames': 64}")
        return STRLHead(self.encoder.num_features, num_classes, **kwargs)

    def embed(self, skeletons: Tensor) -> Tensor:
        check_tensor(skeletons, f"{type(self).__name__}.embed", "skeletons [B, C, T, V, M]", ndim=5)
        encoded, present = self.encoder(skeletons)
        return self.pool(encoded, present)
