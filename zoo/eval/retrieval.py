"""Audio–text evaluation (SLAP, arXiv 2506.17815, §4.3): cross-modal retrieval R@k and median/mean rank, zero-shot
classification with prompt templates, and the modality gap (Liang et al. 2022, arXiv 2203.02053): distance between
the audio and text centroids of normalised embeddings, and how well a linear classifier tells the modalities apart.

Retrieval is one-to-one: clip i and caption i are a pair (the datamodule hands out each evaluation clip's first
caption). Embeddings are expected L2-normalised; similarity is the dot product. ``zoo evaluate SRC --protocol
retrieval`` runs these on a checkpoint's test split (:mod:`zoo.downstream.protocols`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from zoo.eval.states import concatenated

#: SLAP's zero-shot templates (paper §4.3); the best template's accuracy is reported, as in the paper
ZERO_SHOT_PROMPTS = ["{}", "{} music", "this sounds like {}", "A {} track"]
KS = (1, 5, 10)


def retrieval_ranks(queries: Tensor, keys: Tensor) -> Tensor:
    """1-based rank of key i among all keys for query i (ties count against the query: pessimistic)."""
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(f"retrieval needs paired [n, d] queries and keys, got {tuple(queries.shape)} and {tuple(keys.shape)}")
    sim = queries.float() @ keys.float().T
    correct = sim.diagonal().unsqueeze(1)
    others = sim >= correct
    return others.sum(1)  # counts the correct key itself, so the best rank is 1


def retrieval_metrics(audio: Tensor, text: Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``a2t_R@k``, ``t2a_R@k`` (fractions), ``*_median_rank`` and ``*_mean_rank`` for paired embeddings."""
    out: dict[str, float] = {}
    for name, (q, k) in {"a2t": (audio, text), "t2a": (text, audio)}.items():
        ranks = retrieval_ranks(q, k).float()
        for kk in ks:
            out[f"{name}_R@{kk}"] = float((ranks <= kk).float().mean())
        out[f"{name}_median_rank"] = float(ranks.median())
        out[f"{name}_mean_rank"] = float(ranks.mean())
    return out


def zero_shot_accuracy(audio: Tensor, class_embeddings: list[Tensor], labels: Tensor) -> dict[str, float]:
    """Accuracy of argmax_c ⟨audio, class_c⟩ for each prompt template's class embeddings [C, d]; ``zero_shot_acc``
    is the best template (the paper's protocol), ``zero_shot_acc_mean`` the mean over templates."""
    accs = [float(((audio.float() @ c.float().T).argmax(1) == labels).float().mean()) for c in class_embeddings]
    return {"zero_shot_acc": max(accs), "zero_shot_acc_mean": float(np.mean(accs))}


def modality_gap(audio: Tensor, text: Tensor, seed: int = 0) -> dict[str, float]:
    """``gap_centroid``: ‖mean(â) − mean(t̂)‖₂; ``gap_linear_acc``: test accuracy (seeded 80/20 split) of a logistic
    regression predicting the modality of an embedding (0.5 = indistinguishable, 1.0 = separate cones)."""
    from sklearn.linear_model import LogisticRegression

    a = torch.nn.functional.normalize(audio.float(), dim=1)
    t = torch.nn.functional.normalize(text.float(), dim=1)
    centroid = float((a.mean(0) - t.mean(0)).norm())
    x = torch.cat([a, t]).cpu().numpy()
    y = np.r_[np.zeros(len(a)), np.ones(len(t))]
    perm = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    clf = LogisticRegression(max_iter=1000).fit(x[perm[:cut]], y[perm[:cut]])
    return {"gap_centroid": centroid, "gap_linear_acc": float(clf.score(x[perm[cut:]], y[perm[cut:]]))}


class RetrievalCollector(Metric):
    """Accumulates shared-space audio/text embeddings (and labels) over an evaluation epoch. A torchmetrics
    ``Metric`` with concatenated states: under DDP ``compute`` gathers every rank's pairs first, so retrieval ranks
    each query against the whole evaluation set, not against a rank's shard of it."""

    full_state_update = False

    def __init__(self) -> None:
        # compute() takes the class embeddings as an argument: no cached result. The states stay on the device
        # (compute_on_cpu would move them to the CPU, where NCCL cannot gather them); compute() runs on the CPU.
        super().__init__(compute_with_cache=False)
        for name in ("audio", "text", "labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, audio: Tensor, text: Tensor, labels: Tensor | None = None) -> None:  # type: ignore[override]
        if audio.shape[0] != text.shape[0]:
            raise ValueError(f"retrieval pairs: {audio.shape[0]} audio rows vs {text.shape[0]} text rows")
        self.audio.append(audio.detach().float())  # type: ignore[union-attr]
        self.text.append(text.detach().float())  # type: ignore[union-attr]
        if labels is not None:
            self.labels.append(labels.detach())  # type: ignore[union-attr]

    def compute(self, class_embeddings: list[Tensor] | None = None) -> dict[str, float]:  # type: ignore[override]
        audio, text, labels = (concatenated(state) for state in (self.audio, self.text, self.labels))  # type: ignore[arg-type]
        if audio is None or text is None:
            raise ValueError("RetrievalCollector.compute: no pairs were added since the last reset")
        audio, text = audio.cpu(), text.cpu()
        out = {**retrieval_metrics(audio, text), **modality_gap(audio, text)}
        labels = labels.cpu() if labels is not None else None
        if class_embeddings is not None and labels is not None and len(labels) == len(audio):
            out.update(zero_shot_accuracy(audio, [c.detach().float().cpu() for c in class_embeddings], labels))
        return out
