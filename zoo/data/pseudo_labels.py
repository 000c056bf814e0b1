"""G-SimCLR batching (Chakraborty et al. 2020, "G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection
via Pseudo Labelling", arXiv 2009.12007): batches in which no two images share a pseudo-class, so that SimCLR's
negatives are less often images of the same class.

1. A denoising autoencoder (Gaussian noise σ = 0.01 on [0, 1] pixels; 3 × [Conv3×3 32/64/128 + BN + ReLU + MaxPool],
   mirrored decoder, sigmoid, MSE) is trained on the training images; its latent, global-average-pooled, is a
   128-d embedding.
2. k-means with k = the (global) batch size clusters the embeddings into pseudo-classes.
3. :class:`PseudoClassBatchSampler` builds batches with at most one image per pseudo-class.

With k = B every full batch must hold exactly one image of *every* cluster, which k-means' unequal cluster sizes
make impossible for most of the data. The clusters are therefore balanced: each image goes to its nearest centroid
that still has room (capacity ⌈N/k⌉, images placed in order of their distance to their nearest centroid). The
original orders images by rank within their cluster without shuffling (and, with unequal clusters, lets batches
that straddle two rounds repeat a cluster); here the order is a seeded permutation that changes every epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DistributedSampler, Sampler

from zoo.data.base import DataError


def _progress(message: str) -> None:
    # minutes of CPU work before the first training step: say what is happening (rank 0 only, through Lightning's
    # logger, which the zoo command shows)
    rank_zero_info(f"G-SimCLR pseudo-labels: {message}")


def _elapsed(start: float) -> str:
    seconds = round(time.monotonic() - start)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PseudoLabelConfig(TypedDict, total=False):
    """JSON-able settings of G-SimCLR batching; every key is optional."""

    num_clusters: int | None  # k; None = the global batch size (G-SimCLR)
    autoencoder_epochs: int  # denoising-autoencoder training epochs
    autoencoder_batch_size: int
    autoencoder_lr: float  # Adam
    noise_std: float  # σ of the Gaussian input noise on [0, 1] pixels (0.01)
    seed: int
    cache_dir: str | None  # where the pseudo-labels are cached; None = $XDG_CACHE_HOME/zoo/pseudo-labels


DEFAULT_PSEUDO_LABEL_CONFIG: PseudoLabelConfig = {
    "num_clusters": None,
    "autoencoder_epochs": 5,
    "autoencoder_batch_size": 256,
    "autoencoder_lr": 1e-3,
    "noise_std": 0.01,
    "seed": 0,
    "cache_dir": None,
}


def resolve_pseudo_label_config(config: PseudoLabelConfig | None) -> dict[str, Any]:
    config = dict(config or {})
    unknown = set(config) - set(DEFAULT_PSEUDO_LABEL_CONFIG)
    if unknown:
        raise DataError(f"unknown pseudo_label_batches key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_PSEUDO_LABEL_CONFIG)}")
    resolved = {**DEFAULT_PSEUDO_LABEL_CONFIG, **config}
    if resolved["num_clusters"] is not None and resolved["num_clusters"] < 2:
        raise DataError(f"pseudo_label_batches.num_clusters must be >= 2, got {resolved['num_clusters']}")
    if resolved["autoencoder_epochs"] < 1 or resolved["noise_std"] < 0:
        raise DataError(f"need autoencoder_epochs >= 1 and noise_std >= 0, got {resolved}")
    return resolved


# ---- 1. denoising autoencoder ----------------------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DenoisingAutoencoder(nn.Module):
    """G-SimCLR's denoising autoencoder: 3 × [Conv3×3 + BN + ReLU + MaxPool2] (32, 64, 128 channels), a mirrored
    decoder (Upsample ×2 + Conv3×3 + BN + ReLU) and a sigmoid output. Inputs are padded to a multiple of 8 and the
    reconstruction cropped back, so any image size works (28 × 28 → 32 × 32 → 4 × 4 latent)."""

    def __init__(self, in_chans: int = 1, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        encoder: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            encoder += [_conv_block(channels, width), nn.MaxPool2d(2)]
            channels = width
        decoder: list[nn.Module] = []
        for width in reversed((in_chans, *widths[:-1])):
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), _conv_block(channels, max(width, widths[0]))]
            channels = max(width, widths[0])
        decoder += [nn.Conv2d(channels, in_chans, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.multiple = 2 ** len(widths)
        self.embedding_dim = widths[-1]

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` (float in [0, 1], [B, C, H, W])."""
        h, w = x.shape[-2:]
        return self.decoder(self.encoder(self._pad(x)))[..., :h, :w]

    def embed(self, x: Tensor) -> Tensor:
        """Global-average-pooled latent, [B, 128]."""
        return self.encoder(self._pad(x)).mean(dim=(2, 3))


def train_denoising_autoencoder(
    images: Tensor, epochs: int = 5, batch_size: int = 256, lr: float = 1e-3, noise_std: float = 0.01, seed: int = 0,
    progress: bool = False,
) -> DenoisingAutoencoder:
    """Fit :class:`DenoisingAutoencoder` on uint8 images [N, C, H, W]: MSE between the reconstruction of
    ``clamp(x + σ·ε, 0, 1)`` and ``x``, Adam, seeded. ``progress``: a line per epoch (rank 0)."""
    start = time.monotonic()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(images.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total, batches = 0.0, 0
        for first in range(0, len(images), batch_size):
            clean = images[order[first : first + batch_size]].float() / 255.0
            noisy = (clean + noise_std * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
            loss = F.mse_loss(model(noisy), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        if progress:
            _progress(f"autoencoder epoch {epoch + 1}/{epochs}: reconstruction MSE {total / max(batches, 1):.5f} ({_elapsed(start)})")
    return model.eval()


@torch.no_grad()
def autoencoder_embeddings(model: DenoisingAutoencoder, images: Tensor, batch_size: int = 1024) -> Tensor:
    return torch.cat([model.embed(images[i : i + batch_size].float() / 255.0) for i in range(0, len(images), batch_size)])


# ---- 2. balanced k-means --------------------------------------------------------------------------------------------


def balanced_kmeans(embeddings: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """Pseudo-labels [N] in 0..k-1: scikit-learn k-means centroids, then each point assigned to its nearest centroid
    with room left (capacity ⌈N/k⌉; points with the closest nearest centroid placed first), so every cluster holds
    ⌊N/k⌋ or ⌈N/k⌉ points."""
    from sklearn.cluster import KMeans

    n = len(embeddings)
    if n < num_clusters:
        raise DataError(f"G-SimCLR batching: {n} training images are fewer than the {num_clusters} pseudo-classes")
    centroids = KMeans(n_clusters=num_clusters, n_init=1, random_state=seed).fit(embeddings).cluster_centers_
    distances = ((embeddings[:, None, :] - centroids[None]) ** 2).sum(-1) if n * num_clusters < 2**22 else _chunked_distances(embeddings, centroids)
    preference = np.argsort(distances, axis=1, kind="stable")
    order = np.argsort(distances[np.arange(n), preference[:, 0]], kind="stable")
    # capacities ⌈N/k⌉ for the first N mod k clusters and ⌊N/k⌋ for the rest: total exactly N
    capacity = np.full(num_clusters, n // num_clusters)
    capacity[: n % num_clusters] += 1
    labels = np.empty(n, dtype=np.int64)
    for point in order:
        for cluster in preference[point]:
            if capacity[cluster]:
                capacity[cluster] -= 1
                labels[point] = cluster
                break
    return labels


def _chunked_distances(x: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    xt, ct = torch.from_numpy(x).float(), torch.from_numpy(centroids).float()
    return torch.cat([torch.cdist(xt[i : i + chunk], ct) ** 2 for i in range(0, len(xt), chunk)]).numpy()


def compute_pseudo_labels(images: Tensor, num_clusters: int, config: dict[str, Any], progress: bool = False) -> np.ndarray:
    """Steps 1-2: autoencoder embeddings of uint8 ``images`` → balanced k-means pseudo-labels. ``progress``: a line
    per step (rank 0)."""
    start = time.monotonic()
    model = train_denoising_autoencoder(
        images, config["autoencoder_epochs"], config["autoencoder_batch_size"], config["autoencoder_lr"],
        config["noise_std"], config["seed"], progress=progress,
    )
    embeddings = autoencoder_embeddings(model, images).numpy()
    if progress:
        _progress(f"k-means of {len(images)} embeddings into {num_clusters} balanced clusters ({_elapsed(start)})")
    labels = balanced_kmeans(embeddings, num_clusters, config["seed"])
    if progress:
        _progress(f"done in {_elapsed(start)}")
    return labels


def cached_pseudo_labels(images: Tensor, num_clusters: int, config: dict[str, Any]) -> np.ndarray:
    """:func:`compute_pseudo_labels`, cached on disk under a key of the images' bytes and the settings (written
    atomically, so an interrupted run never leaves a half-written file)."""
    key_settings = {k: v for k, v in config.items() if k != "cache_dir"} | {"num_clusters": num_clusters}
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(json.dumps(key_settings, sort_keys=True).encode())
    cache_dir = Path(config["cache_dir"] or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zoo" / "pseudo-labels")
    path = cache_dir / f"{digest.hexdigest()[:32]}.npy"
    if path.is_file():
        labels = np.load(path, allow_pickle=False)
        if labels.shape == (len(images),):
            return labels
    _progress(
        f"computing them for {len(images)} images (once; cached in {cache_dir}): a denoising autoencoder for "
        f"{config['autoencoder_epochs']} epochs, then k-means with k={num_clusters}; minutes on a CPU"
    )
    labels = compute_pseudo_labels(images, num_clusters, config, progress=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npy.tmp", delete=False) as f:
        np.save(f, labels, allow_pickle=False)
    os.replace(f.name, path)
    return labels


# ---- 3. batches without repeated pseudo-classes ---------------------------------------------------------------------


class PseudoClassOrder(Sampler[int]):
    """Epoch order of the training images in which every consecutive block of ``batch_size`` indices holds at most
    one image per pseudo-class. Seeded by (seed, epoch); Lightning calls :meth:`set_epoch` every epoch.

    Each epoch: shuffle every cluster's members, deal them out round by round (every cluster's 1st image, then every
    cluster's 2nd, …, clusters in a fresh random order each round), fill blocks greedily from that stream (an image
    whose cluster is already in the block waits for the next one), then shuffle the order of the full blocks.
    Images that cannot complete a block (at most one incomplete block) come last.
    """

    def __init__(self, pseudo_labels: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.pseudo_labels = np.asarray(pseudo_labels, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._blocks: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pseudo_labels)

    def blocks(self) -> list[list[int]]:
        """This epoch's blocks: the full ones in random order, then at most one incomplete block (memoised)."""
        if self._blocks is None or self._blocks[0] != self.epoch:
            self._blocks = (self.epoch, self._build_blocks())
        return self._blocks[1]

    def _build_blocks(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        members = [rng.permutation(np.flatnonzero(self.pseudo_labels == c)) for c in np.unique(self.pseudo_labels)]
        stream: deque[int] = deque()
        for round_index in range(max(len(m) for m in members)):
            alive = [m[round_index] for m in members if len(m) > round_index]
            stream.extend(int(i) for i in rng.permutation(alive))
        full: list[list[int]] = []
        rest: list[int] = []
        while stream:
            block: list[int] = []
            used: set[int] = set()
            waiting: list[int] = []
            while stream and len(block) < self.batch_size:
                index = stream.popleft()
                cluster = int(self.pseudo_labels[index])
                (waiting if cluster in used else block).append(index)
                used.add(cluster)
            stream.extendleft(reversed(waiting))
            if len(block) < self.batch_size:  # the stream ran dry: what is left cannot make a full block
                rest = block + list(stream)
                break
            full.append(block)
        blocks = [full[i] for i in rng.permutation(len(full))]
        return blocks + [rest] if rest else blocks

    def num_full_blocks(self) -> int:
        return sum(len(b) == self.batch_size for b in self.blocks())

    def __iter__(self) -> Iterator[int]:
        for block in self.blocks():
            yield from block


class PseudoClassBatchSampler(BatchSampler):
    """Batches of :class:`PseudoClassOrder`: each global batch (``batch_size × num_replicas`` images) has at most
    one image per pseudo-class, and rank r gets its ``batch_size`` slice. ``drop_last`` drops the leftovers that
    cannot fill a batch (fewer than one batch when the pseudo-classes are balanced).

    Under DDP, Lightning re-creates this sampler around the ``DistributedSampler`` it injects (the ``sampler``
    argument). Only that sampler's ``num_replicas`` and ``rank`` are read: its order, a different permutation per
    rank, would break the constraint over the global batch, so every rank deals the same (seed, epoch) order and
    takes its slice. Without a distributed sampler (one process, or ``use_distributed_sampler=False``) the
    ``num_replicas`` and ``rank`` arguments say it. ``skip_batches`` drops the first batches of the first epoch
    iterated only: a run resumed from a mid-epoch checkpoint continues where the interrupted one stopped.
    """

    def __init__(
        self, sampler: Sampler | None, batch_size: int, drop_last: bool = True, *,
        pseudo_labels: np.ndarray, seed: int = 0, num_replicas: int = 1, rank: int = 0, skip_batches: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(range(len(pseudo_labels)), batch_size, drop_last)
        if isinstance(sampler, DistributedSampler):
            num_replicas, rank = sampler.num_replicas, sampler.rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        if num_replicas > 1 and not drop_last:
            raise ValueError("with several replicas use drop_last=True: every rank needs the same number of full batches")
        # the sampler Lightning calls set_epoch on (it looks at batch_sampler.sampler)
        self.sampler = PseudoClassOrder(pseudo_labels, batch_size * num_replicas, seed)  # type: ignore[assignment]
        self.num_replicas, self.rank, self.skip_batches = num_replicas, rank, skip_batches

    def __len__(self) -> int:
        if self.drop_last:
            return self.sampler.num_full_blocks()  # type: ignore[attr-defined]
        return len(self.sampler.blocks())  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[list[int]]:
        # a full block has no pseudo-class twice; an incomplete one (the leftovers) only comes with drop_last=False.
        # The skip is read once: only the resumed epoch is shortened (its remaining batches are counted by the loop).
        skip, self.skip_batches = self.skip_batches, 0
        for block in self.sampler.blocks()[skip : len(self)]:  # type: ignore[attr-defined]
            yield block[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
