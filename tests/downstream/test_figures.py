"""The card's two pictures: the training curve read from a run's CSV logs (resumed runs too) and the t-SNE map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.downstream.figures import embedding_map, epoch_curves, training_curve, tsne_2d
from zoo.errors import DataError

HEADER = "epoch,step,train/loss,val/knn_acc,val/probe_acc,lr-SGD\n"
PNG = b"\x89PNG\r\n\x1a\n"


def write_log(run: Path, version: int, rows: list[str]) -> None:
    path = run / "logs" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows))


def test_epoch_curves_mean_loss_per_epoch_and_a_resumed_run_overrides_its_restarted_epoch(tmp_path):
    write_log(tmp_path, 0, ["0,9,4.0,,,", "0,19,2.0,,,", ",19,,,,0.1", "0,19,,0.50,0.40,", "1,29,1.5,,,"])
    # the resumed session (version_1) restarts epoch 1 from its mid-epoch checkpoint and logs it again
    write_log(tmp_path, 1, ["1,29,1.0,,,", "1,39,0.5,,,", "1,39,,0.70,0.60,", "2,49,0.25,,,", "2,49,,0.80,0.75,"])
    curves = epoch_curves(tmp_path)
    assert curves["train/loss"] == {0: 3.0, 1: 0.75, 2: 0.25}
    assert curves["val/knn_acc"] == {0: 0.5, 1: 0.7, 2: 0.8}
    assert curves["val/probe_acc"] == {0: 0.4, 1: 0.6, 2: 0.75}
    out = training_curve(tmp_path, tmp_path / "curve.png", title="t")
    assert out.read_bytes()[:8] == PNG


def test_training_curve_without_a_log_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="no metrics.csv"):
        training_curve(tmp_path, tmp_path / "curve.png")
    write_log(tmp_path, 0, [",9,,,,0.1"])
    with pytest.raises(DataError, match="logs no train/loss"):
        training_curve(tmp_path, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_tsne_keeps_clusters_apart_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 5
    x = (centres.repeat_interleave(40, 0) + 0.1 * torch.randn(120, 16, generator=g)).numpy()
    a, b = tsne_2d(x, seed=0), tsne_2d(x, seed=0)
    assert a.shape == (120, 2) and (a == b).all()
    # every point's nearest neighbour in the map is from its own cluster
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    d[range(120), range(120)] = float("inf")
    labels = torch.arange(3).repeat_interleave(40).numpy()
    assert (labels[d.argmin(1)] == labels).all()


class FakePretrained:
    source = "fake"

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def embed_all(self, split, limit):
        g = torch.Generator().manual_seed(0)
        return torch.randn(len(self.labels), 8, generator=g)[:limit], self.labels[:limit]

    def datamodule(self):
        return type("DM", (), {"class_names": ["zero", "one", "two"]})()


@pytest.mark.parametrize(
    "labels", [torch.arange(3).repeat(20), torch.arange(21).repeat(3), torch.linspace(0, 1, 60)], ids=["classes", "21-classes", "regression"]
)
def test_embedding_map_draws_classes_or_a_colour_scale(tmp_path, labels):
    out = embedding_map(FakePretrained(labels), tmp_path / "map.png", limit=50)
    assert out.read_bytes()[:8] == PNG


def test_embedding_map_of_too_few_rows_is_refused(tmp_path):
    with pytest.raises(DataError, match="test split has 3 rows"):
        embedding_map(FakePretrained(torch.arange(3)), tmp_path / "map.png")
