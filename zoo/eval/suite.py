"""The evaluation every method logs each validation/test epoch: kNN accuracy, online-probe accuracy, RankMe and the
normalised embedding std (the last two flag collapse)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.eval.collapse import EmbeddingStd
from zoo.eval.knn import KNNAccuracy
from zoo.eval.rankme import RankMe


class EvaluationSuite(nn.Module):
    """Accumulates embeddings over an epoch; ``compute()`` returns ``{"knn_acc", "probe_acc", "rankme", "embedding_std"}``.

    kNN and probe accuracy need labels (and ``num_classes``); RankMe and embedding std need none.
    """

    def __init__(self, num_classes: int | None, knn_k: int = 200, knn_temperature: float = 0.1) -> None:
        super().__init__()
        self.rankme = RankMe()
        self.embedding_std = EmbeddingStd()
        self.knn = KNNAccuracy(num_classes, knn_k, knn_temperature) if num_classes else None
        self.probe_accuracy = MulticlassAccuracy(num_classes, average="micro") if num_classes else None

    def update_bank(self, features: Tensor, labels: Tensor | None) -> None:
        if self.knn is not None and labels is not None:
            self.knn.update(features, labels, bank=True)

    def update(self, features: Tensor, labels: Tensor | None, probe_logits: Tensor | None) -> None:
        self.rankme.update(features)
        self.embedding_std.update(features)
        if labels is None:
            return
        if self.knn is not None:
            self.knn.update(features, labels)
        if self.probe_accuracy is not None and probe_logits is not None:
            self.probe_accuracy.update(probe_logits, labels)

    def compute(self) -> dict[str, Tensor]:
        results: dict[str, Tensor] = {}
        if self.rankme.update_called:
            results["rankme"] = self.rankme.compute()
            results["embedding_std"] = self.embedding_std.compute()
        if self.knn is not None and self.knn.update_called:
            value = self.knn.compute()
            if not torch.isnan(value):
                results["knn_acc"] = value
        if self.probe_accuracy is not None and self.probe_accuracy.update_called:
            results["probe_acc"] = self.probe_accuracy.compute()
        return results

    def reset(self) -> None:
        for metric in (self.rankme, self.embedding_std, self.knn, self.probe_accuracy):
            if metric is not None:
                metric.reset()
