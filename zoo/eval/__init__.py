"""Evaluation shared by all methods: online linear probe, kNN accuracy, RankMe."""

from zoo.eval.knn import KNNAccuracy, knn_predict
from zoo.eval.probe import OnlineLinearProbe
from zoo.eval.rankme import RankMe, rankme

__all__ = ["KNNAccuracy", "OnlineLinearProbe", "RankMe", "knn_predict", "rankme"]
