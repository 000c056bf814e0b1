"""Evaluation shared by all methods: online linear probe, kNN accuracy, RankMe."""

from zoo.eval.embeddings import EmbeddingWriter
from zoo.eval.knn import KNNAccuracy, knn_predict
from zoo.eval.linear import linear_probe_accuracy
from zoo.eval.probe import OnlineLinearProbe
from zoo.eval.rankme import RankMe, rankme

__all__ = ["EmbeddingWriter", "KNNAccuracy", "OnlineLinearProbe", "RankMe", "knn_predict", "linear_probe_accuracy", "rankme"]
