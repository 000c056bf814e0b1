"""Weighted k-nearest-neighbour classification on embeddings.

Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance Discrimination", arXiv 1805.01978):
cosine similarity to a memory bank of labelled training embeddings, the top-k neighbours vote with weight
exp(sim / T). k = 200, T = 0.1 as in lightly's and solo-learn's benchmarks; ``weighted=False`` gives a plain
majority vote (k = 20 is the usual choice there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from zoo.eval.states import concatenated


@torch.no_grad()
def knn_predict(
    queries: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    weighted: bool = True,
    chunk_size: int = 1024,
) -> Tensor:
    """Predicted class of each query row from its ``k`` most cosine-similar bank rows (fp32, chunked)."""
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"knn_predict: queries {tuple(queries.shape)} and bank {tuple(bank.shape)} must be [*, d]")
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError(f"knn_predict: bank has {bank.shape[0]} rows but {bank_labels.shape[0]} labels")
    k = min(k, bank.shape[0])
    bank = F.normalize(bank.float(), dim=1)
    bank_labels = bank_labels.long()
    predictions = []
    for start in range(0, queries.shape[0], chunk_size):
        q = F.normalize(queries[start : start + chunk_size].float(), dim=1)
        sims, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp() if weighted else torch.ones_like(sims)
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long, device=queries.device)


class KNNAccuracy(Metric):
    """kNN accuracy as a torchmetrics Metric: ``update(f, y, bank=True)`` fills the memory bank, ``update(f, y)``
    adds queries; both are concatenated across ranks before ``compute``."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_classes: int, k: int = 200, temperature: float = 0.1, weighted: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if k < 1 or temperature <= 0 or num_classes < 2:
            raise ValueError(f"KNNAccuracy needs k >= 1, temperature > 0, num_classes >= 2; got {k}, {temperature}, {num_classes}")
        self.num_classes, self.k, self.temperature, self.weighted = num_classes, k, temperature, weighted
        for name in ("bank_features", "bank_labels", "query_features", "query_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, features: Tensor, labels: Tensor, bank: bool = False) -> None:  # type: ignore[override]
        features = F.normalize(features.detach().float(), dim=1)
        if bank:
            self.bank_features.append(features)
            self.bank_labels.append(labels.detach().long())
        else:
            self.query_features.append(features)
            self.query_labels.append(labels.detach().long())

    def compute(self) -> Tensor:
        bank, queries = concatenated(self.bank_features), concatenated(self.query_features)
        if bank is None or queries is None:
            return torch.tensor(float("nan"), device=self.device)
        labels = concatenated(self.query_labels)
        predicted = knn_predict(queries, bank, concatenated(self.bank_labels), self.num_classes, self.k, self.temperature, self.weighted)
        return (predicted == labels).float().mean()
