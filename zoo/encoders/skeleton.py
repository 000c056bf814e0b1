"""Skeleton encoders (SkeletonMAE, Yan et al., ICCV 2023): per-frame skeleton graphs, GIN message passing with
torch-geometric's ``GINConv`` over the batched graphs, and the STRL-style spatio-temporal classification head used
for fine-tuning.

Input everywhere: ``float [B, C, T, V, M]`` (the NTU layout the datamodule yields). Each (sample, person, frame) is
one graph over the V joints of the layout; only persons present in a sample (any non-zero coordinate) are encoded.
"""

from __future__ import annotations

import warnings
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():
    # torch-geometric's pooling modules call torch.jit.script at import, which torch 2.14 flags as deprecated: two
    # lines of noise on every `zoo` command (and before its one-line errors) that a user can do nothing about
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from torch_geometric.nn import GINConv

from zoo.deprecation import renamed
from zoo.nn.skeleton_layouts import get_layout


class SkeletonEncoderConfig(TypedDict, total=False):
    """JSON-able spec of :class:`SkeletonEncoder` (the ``encoder:`` block of a config)."""

    layout: str  # "ntu25" (3-D) or "coco17" (2-D)
    in_channels: int  # coordinates per joint: 3 for NTU, 2 for COCO
    velocity: bool  # append frame-to-frame differences to the coordinates
    embed_dim: int  # D (SkeletonMAE: 64)
    depth: int  # GIN layers (SkeletonMAE: 3)
    gin_eps: float  # GIN's ε (initial value when train_eps)
    train_eps: bool


DEFAULT_SKELETON_ENCODER: SkeletonEncoderConfig = {
    "layout": "ntu25", "in_channels": 3, "velocity": False, "embed_dim": 64, "depth": 3, "gin_eps": 0.0,
    "train_eps": False,
}  # fmt: skip
#: old config keys → timm's words (old configs keep loading, with a FutureWarning)
RENAMED_KEYS = {"hidden_dim": "embed_dim", "num_layers": "depth"}


def gin_layer(in_dim: int, out_dim: int, eps: float = 0.0, train_eps: bool = False) -> GINConv:
    """GINConv with a two-layer MLP, h' = MLP((1 + ε)·h + Σ_neighbours h) (Xu et al. 2019, eq. 4.1). Inside the
    MLP a ReLU (PReLU, SkeletonMAE's activation, follows each layer; on CPU it costs as much as the matmuls)."""
    mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
    return GINConv(mlp, eps=eps, train_eps=train_eps)


class SkeletonGraph(nn.Module):
    """Runs graph layers on ``[G, V, D]`` node features: the G skeleton graphs become one PyG batch (edge indices
    offset by V per graph), so a whole batch of frames is a single sparse message-passing call."""

    def __init__(self, layout: str) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.register_buffer("edge_index", self.layout.edge_index(), persistent=False)  # derived from the layout

    def batched_edge_index(self, num_graphs: int) -> Tensor:
        v = self.layout.num_joints
        offsets = torch.arange(num_graphs, device=self.edge_index.device) * v
        return (self.edge_index[:, None, :] + offsets[None, :, None]).reshape(2, -1)

    def propagate(self, layers: nn.ModuleList, h: Tensor, norms: nn.ModuleList, acts: nn.ModuleList) -> Tensor:
        g, v, d = h.shape
        edge_index = self.batched_edge_index(g)
        x = h.reshape(g * v, d)
        for conv, norm, act in zip(layers, norms, acts):
            x = act(norm(conv(x, edge_index)))
        return x.reshape(g, v, -1)


class SkeletonEncoder(nn.Module):
    """Joint embedding (a linear map of each joint's coordinates per frame, plus a learned joint-identity vector)
    followed by ``depth`` × [GINConv → BatchNorm → PReLU] on each frame's skeleton graph (SkeletonMAE:
    GIN outperformed GCN and GAT).

    ``forward(x [B, C, T, V, M])`` → ``(features [B, M, T, V, D], present [B, M])``; absent persons' features are 0.
    """

    def __init__(self, config: SkeletonEncoderConfig | None = None) -> None:
        super().__init__()
        config = renamed(config, RENAMED_KEYS, "skeleton encoder")
        unknown = set(config) - set(DEFAULT_SKELETON_ENCODER)
        if unknown:
            raise ValueError(f"unknown skeleton encoder key(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_SKELETON_ENCODER)}")
        cfg = {**DEFAULT_SKELETON_ENCODER, **config}
        self.graph = SkeletonGraph(cfg["layout"])
        self.layout = self.graph.layout
        self.in_channels = int(cfg["in_channels"])
        self.velocity = bool(cfg["velocity"])
        self.num_features = int(cfg["embed_dim"])
        if self.num_features < 1 or int(cfg["depth"]) < 1 or self.in_channels < 1:
            raise ValueError(f"skeleton encoder: embed_dim, depth and in_channels must be >= 1, got {cfg}")
        self.input_dim = self.in_channels * (2 if self.velocity else 1)
        d = self.num_features
        self.joint_embed = nn.Linear(self.input_dim, d)
        # GIN's sum aggregation cannot tell joints apart by position in the graph alone (left and right limbs are
        # isomorphic), so each joint gets an identity vector, added after masking so masked joints keep it
        self.joint_identity = nn.Parameter(torch.randn(self.layout.num_joints, d) * 0.02)
        self.layers = nn.ModuleList(gin_layer(d, d, float(cfg["gin_eps"]), bool(cfg["train_eps"])) for _ in range(int(cfg["depth"])))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for _ in self.layers)
        self.acts = nn.ModuleList(nn.PReLU() for _ in self.layers)

    def check(self, x: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels or x.shape[3] != self.layout.num_joints:
            raise ValueError(
                f"skeleton encoder expects [B, C={self.in_channels}, T, V={self.layout.num_joints}, M] "
                f"({self.layout.name}), got shape {tuple(x.shape)}"
            )

    def input_features(self, x: Tensor) -> Tensor:
        """``[B, C, T, V, M]`` → per-joint inputs ``[B, M, T, V, F]``: coordinates (+ velocities, 0 where a joint is
        missing in either frame). Missing joints (all-zero coordinates) have all-zero features."""
        self.check(x)
        pos = x.float().permute(0, 4, 2, 3, 1)  # [B, M, T, V, C]
        if not self.velocity:
            return pos
        present = (pos != 0).any(-1, keepdim=True)
        vel = torch.zeros_like(pos)
        vel[:, :, 1:] = (pos[:, :, 1:] - pos[:, :, :-1]) * (present[:, :, 1:] & present[:, :, :-1])
        return torch.cat([pos, vel], -1)

    @staticmethod
    def present_persons(x: Tensor) -> Tensor:
        """``bool [B, M]``: persons with any non-zero coordinate; person 0 always counts (an empty sample still
        gets an embedding)."""
        present = x.flatten(1, 3).ne(0).any(1)  # [B, M]
        present[:, 0] = True
        return present

    def tokens(self, features: Tensor) -> Tensor:
        """Linear joint embedding of ``[..., V, F]`` input features (without the joint identity)."""
        return self.joint_embed(features)

    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """GIN layers on ``[P, T, V, D]`` tokens (joint identity added here) → ``[P, T, V, D]``."""
        p, t, v, d = tokens.shape
        h = (tokens + self.joint_identity).reshape(p * t, v, d)
        return self.graph.propagate(self.layers, h, self.norms, self.acts).reshape(p, t, v, -1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.input_features(x)
        present = self.present_persons(x)
        encoded = self.encode_tokens(self.tokens(features[present]))
        out = encoded.new_zeros(*present.shape, *encoded.shape[1:])
        out[present] = encoded
        return out, present


def masked_person_mean(values: Tensor, present: Tensor) -> Tensor:
    """Mean of ``[B, M, ...]`` over the present persons ``bool [B, M]``."""
    weights = present.to(values.dtype).reshape(*present.shape, *([1] * (values.ndim - 2)))
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def temporal_pyramid(h: Tensor, scales: tuple[int, ...]) -> Tensor:
    """Multi-scale temporal average pooling of ``[N, T, D]`` → ``[N, D · Σ scales]`` (order-aware summary)."""
    x = h.transpose(1, 2)  # [N, D, T]
    return torch.cat([F.adaptive_avg_pool1d(x, s).flatten(1) for s in scales], dim=1)


class STRLHead(nn.Module):
    """STRL-style spatio-temporal classifier on encoder features ``[B, M, T, V, D]`` (SkeletonMAE's fine-tuning
    module).

    H⁰ = encoder features + a learnable temporal position embedding; per person, each of ``num_layers`` layers is
    H^{l+1} = ReLU(BN(SM(H^l) W^l)) + H^l W_res^l with SM(H) = Repeat_V(SumPool_V(H)) ⊕ H (each joint sees the
    whole skeleton of its frame) and W_res a 1×1 projection (identity when widths match). Then mean over joints,
    multi-scale temporal pooling (1, 2, 4 segments), mean over present persons, and an MLP classifier.

    ⚠ The paper's description leaves the temporal modelling inside a layer open; ``temporal_kernel`` > 1 adds a
    temporal convolution (kernel × 1 over frames, ST-GCN style) after each W^l. Default 1: as described.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        num_frames: int,
        hidden_dim: int = 128,
        num_layers: int = 3,
        temporal_kernel: int = 1,
        scales: tuple[int, ...] = (1, 2, 4),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {temporal_kernel}")
        self.time_embedding = nn.Parameter(torch.zeros(num_frames, in_dim))
        nn.init.trunc_normal_(self.time_embedding, std=0.02)
        self.mix = nn.ModuleList()
        self.temporal = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.residual = nn.ModuleList()
        dim = in_dim
        for _ in range(num_layers):
            self.mix.append(nn.Linear(2 * dim, hidden_dim))
            self.temporal.append(
                nn.Conv2d(hidden_dim, hidden_dim, (temporal_kernel, 1), padding=(temporal_kernel // 2, 0))
                if temporal_kernel > 1 else nn.Identity()
            )  # fmt: skip
            self.norms.append(nn.BatchNorm2d(hidden_dim))
            self.residual.append(nn.Identity() if dim == hidden_dim else nn.Linear(dim, hidden_dim))
            dim = hidden_dim
        self.scales = tuple(scales)
        pooled = hidden_dim * sum(self.scales)
        self.classifier = nn.Sequential(nn.Linear(pooled, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes))

    def forward(self, features: Tensor, present: Tensor) -> Tensor:
        b, m, t, v, _ = features.shape
        if t != self.time_embedding.shape[0]:
            raise ValueError(f"STRL head built for {self.time_embedding.shape[0]} frames, got {t}")
        h = features[present] + self.time_embedding[:, None, :]  # [P, T, V, D]
        for mix, temporal, norm, residual in zip(self.mix, self.temporal, self.norms, self.residual):
            sm = torch.cat([h.sum(2, keepdim=True).expand_as(h), h], dim=-1)  # Repeat(SumPool(H)) ⊕ H
            z = temporal(mix(sm).permute(0, 3, 1, 2))  # [P, H, T, V]
            h = F.relu(norm(z)).permute(0, 2, 3, 1) + residual(h)
        pooled = temporal_pyramid(h.mean(2), self.scales)  # [P, H · Σ scales]
        per_person = pooled.new_zeros(b, m, pooled.shape[1])
        per_person[present] = pooled
        return self.classifier(masked_person_mean(per_person, present))
