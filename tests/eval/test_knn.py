import pytest
import torch
import torch.nn.functional as F

from zoo.eval.knn import KNNAccuracy, knn_predict


def brute_force_knn(queries, bank, labels, num_classes, k, temperature, weighted):
    predictions = []
    for q in queries:
        sims = torch.tensor([float(F.cosine_similarity(q, b, dim=0)) for b in bank])
        order = sorted(range(len(bank)), key=lambda j: -sims[j])[:k]
        votes = [0.0] * num_classes
        for j in order:
            votes[int(labels[j])] += float(torch.exp(sims[j] / temperature)) if weighted else 1.0
        predictions.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(predictions)


@pytest.mark.parametrize("weighted,k", [(True, 7), (False, 5), (True, 1000)])
def test_knn_predict_matches_brute_force(weighted, k):
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(60, 6, generator=g), torch.randn(25, 6, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    got = knn_predict(queries, bank, labels, 4, k=k, temperature=0.3, weighted=weighted, chunk_size=8)
    assert torch.equal(got, brute_force_knn(queries, bank, labels, 4, min(k, 60), 0.3, weighted))


def test_knn_accuracy_metric_separable_and_random():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 16, generator=g) * 5
    bank_labels = torch.arange(3).repeat(20)
    query_labels = torch.arange(3).repeat(10)
    metric = KNNAccuracy(num_classes=3, k=10)
    metric.update(centres[bank_labels] + torch.randn(60, 16, generator=g), bank_labels, bank=True)
    metric.update(centres[query_labels] + torch.randn(30, 16, generator=g), query_labels)
    assert metric.compute() == 1.0
    metric.reset()
    metric.update(torch.randn(60, 16, generator=g), bank_labels, bank=True)
    metric.update(torch.randn(300, 16, generator=g), torch.randint(0, 3, (300,), generator=g))
    assert 0.2 < metric.compute() < 0.5  # chance is 1/3


def test_knn_accuracy_without_bank_is_nan():
    metric = KNNAccuracy(num_classes=3)
    metric.update(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    assert torch.isnan(metric.compute())


def test_knn_shape_errors():
    with pytest.raises(ValueError, match="must be"):
        knn_predict(torch.randn(3, 4), torch.randn(5, 3), torch.zeros(5), 2)
    with pytest.raises(ValueError, match="labels"):
        knn_predict(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(4), 2)
    with pytest.raises(ValueError):
        KNNAccuracy(num_classes=3, k=0)
