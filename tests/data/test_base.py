"""The loader contract of ZooDataModule, on a datamodule that provides nothing but its split tensors."""

from __future__ import annotations

import pytest
import torch

from zoo.data.base import DataError, TensorDictDataset, ZooDataModule


class _Arrays(ZooDataModule):
    """16 train rows (value = row id), 4 val rows (100 + id), 6 test rows (200 + id): setup() is all it implements."""

    def __init__(self, batch_size: int = 4, val: bool = True, knn_bank_size: int = 5, seed: int = 0, drop_last: bool = True) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed, self.drop_last = batch_size, 0, seed, drop_last
        self.val, self.knn_bank_size = val, knn_bank_size

    def setup(self, stage: str | None = None) -> None:
        if self._datasets is not None:
            return

        def rows(start: int, n: int) -> TensorDictDataset:
            ids = torch.arange(start, start + n)
            return TensorDictDataset({"x": ids.float()[:, None], "label": ids % 3})

        self._datasets = {"train": rows(0, 16), "test": rows(200, 6)}
        if self.val:
            self._datasets["val"] = rows(100, 4)
        if self.knn_bank_size > 0:
            self._datasets["knn_bank"] = self._datasets["train"].head(self.knn_bank_size)


def _ids(loader) -> list[int]:
    return [int(v) for batch in loader for v in batch["x"][:, 0]]


def test_eval_loaders_follow_the_contract():
    dm = _Arrays()
    bank, val = dm.val_dataloader()
    assert _ids(bank) == [0, 1, 2, 3, 4] and _ids(val) == [100, 101, 102, 103]
    assert next(iter(val))["label"].tolist() == [100 % 3, 101 % 3, 102 % 3, 103 % 3]
    assert [_ids(loader) for loader in dm.test_dataloader()] == [[0, 1, 2, 3, 4], list(range(200, 206))]
    assert _ids(dm.predict_dataloader()) == list(range(200, 206))  # no drop_last outside training
    assert [_ids(loader) for loader in _Arrays(knn_bank_size=0).val_dataloader()] == [[100, 101, 102, 103]]
    assert _Arrays(val=False).val_dataloader() == []


def test_train_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    dm = _Arrays()
    loader = dm.train_dataloader()
    epoch0, epoch1 = _ids(loader), _ids(loader)
    assert sorted(epoch0) == sorted(epoch1) == list(range(16)) and epoch0 != epoch1
    assert _ids(_Arrays().train_dataloader()) == epoch0  # a new process draws the same order
    assert _ids(_Arrays(seed=1).train_dataloader()) != epoch0
    resumed = _Arrays()
    resumed.load_state_dict({"train_position": {"epoch": 1, "batches": 3}})
    assert _ids(resumed.train_dataloader()) == epoch1[12:]  # the batches the interrupted epoch had not reached


def test_bad_requests_fail_in_one_line():
    with pytest.raises(DataError, match=r"unknown split 'tset'; valid splits: train, test, val, knn_bank"):
        _Arrays().split_dataset("tset", train=False)
    with pytest.raises(DataError, match="the train split has 16 samples, fewer than batch_size=32"):
        _Arrays(batch_size=32).train_dataloader()
    assert len(_Arrays(batch_size=32, drop_last=False).train_dataloader()) == 1
    with pytest.raises(DataError, match="one row per sample"):
        TensorDictDataset({"x": torch.zeros(3), "y": torch.zeros(4)})


def test_a_datamodule_with_its_own_train_loader_has_no_evaluation_loaders():
    class TrainOnly(ZooDataModule):
        def train_dataloader(self):
            return [{"x": torch.zeros(2, 1)}]

    assert TrainOnly().val_dataloader() == [] and TrainOnly().test_dataloader() == []
