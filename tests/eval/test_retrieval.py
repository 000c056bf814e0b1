"""Retrieval R@k / ranks, zero-shot accuracy and the modality gap on embeddings with known answers."""

import pytest
import torch
import torch.nn.functional as F

from zoo.eval.retrieval import modality_gap, retrieval_metrics, retrieval_ranks, zero_shot_accuracy


def test_perfect_and_known_rankings():
    x = torch.eye(12)
    metrics = retrieval_metrics(x, x)
    assert metrics["a2t_R@1"] == metrics["t2a_R@1"] == 1.0 and metrics["a2t_median_rank"] == 1.0
    # text i sits closest to audio (i+1) mod n and second closest to its own audio: every correct key at rank 2
    audio = torch.eye(4)
    text = F.normalize(torch.roll(torch.eye(4), 1, dims=1) * 2 + torch.eye(4), dim=1)
    assert retrieval_ranks(audio, text).tolist() == [2, 2, 2, 2]
    m = retrieval_metrics(audio, text, ks=(1, 2))
    assert m["a2t_R@1"] == 0.0 and m["a2t_R@2"] == 1.0 and m["a2t_mean_rank"] == 2.0


def test_zero_shot_takes_the_best_template():
    audio = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    good, bad = torch.eye(3), torch.roll(torch.eye(3), 1, dims=0)
    out = zero_shot_accuracy(audio, [bad, good], labels)
    assert out["zero_shot_acc"] == 1.0 and out["zero_shot_acc_mean"] == 0.5


def test_modality_gap_of_shared_and_separate_cones():
    g = torch.Generator().manual_seed(0)
    shared = F.normalize(torch.randn(200, 16, generator=g), dim=1)
    same = modality_gap(shared[:100], shared[100:])
    assert same["gap_centroid"] < 0.3 and same["gap_linear_acc"] < 0.75
    offset = torch.zeros(16)
    offset[0] = 5.0
    apart = modality_gap(shared[:100] + offset, shared[100:] - offset)
    assert apart["gap_centroid"] > 1.5 and apart["gap_linear_acc"] == 1.0


def _collector_on_a_shard(rank, world_size, audio, text, labels, classes):
    from zoo.eval.retrieval import RetrievalCollector

    collector = RetrievalCollector()
    shard = slice(rank, None, world_size)  # DistributedSampler's interleaved shard
    for rows in torch.arange(len(audio))[shard].split(3):  # a few evaluation batches
        collector.update(audio[rows], text[rows], labels[rows])
    return collector.compute(classes)


def test_retrieval_under_ddp_ranks_each_query_against_the_whole_evaluation_set(tmp_path):
    from tests.distributed import run_distributed
    from zoo.eval.retrieval import RetrievalCollector

    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    audio = F.normalize(text + 1.0 * torch.randn(16, 8, generator=g), dim=1)
    labels = torch.arange(16) % 4
    classes = [F.normalize(torch.randn(4, 8, generator=g), dim=1)]
    ranks = run_distributed(_collector_on_a_shard, tmp_path, audio, text, labels, classes)
    # one process over the same pairs in the order the ranks' gather produces (rank 0's shard, then rank 1's)
    order = torch.cat([torch.arange(16)[0::2], torch.arange(16)[1::2]])
    single = RetrievalCollector()
    single.update(audio[order], text[order], labels[order])
    expected = single.compute(classes)
    for result in ranks:
        assert result.keys() == expected.keys()
        for name, value in expected.items():
            assert result[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    # a shard alone is a different (easier) retrieval problem: 8 candidates instead of 16
    alone = RetrievalCollector()
    alone.update(audio[0::2], text[0::2], labels[0::2])
    assert alone.compute()["a2t_mean_rank"] < expected["a2t_mean_rank"]


def test_collector_compute_honours_its_argument_every_call():
    from zoo.eval.retrieval import RetrievalCollector

    g = torch.Generator().manual_seed(1)
    text = F.normalize(torch.randn(8, 4, generator=g), dim=1)
    collector = RetrievalCollector()
    collector.update(text, text, torch.arange(8) % 2)
    assert "zero_shot_acc" not in collector.compute()
    assert "zero_shot_acc" in collector.compute([F.normalize(torch.randn(2, 4, generator=g), dim=1)])
