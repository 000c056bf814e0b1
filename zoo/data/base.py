"""Base class of the zoo datamodules: the loader contract, implemented once."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from zoo.data.resume import EpochShuffleSampler, train_position
from zoo.errors import DataError

__all__ = ["DataError", "TensorDictDataset", "ZooDataModule", "collate_batch"]


def collate_batch(batch: Any) -> Any:
    """Pass a batch already collated by ``__getitems__`` through; fall back to ``default_collate`` for a list."""
    if isinstance(batch, Mapping):
        return batch
    return default_collate(batch)


class TensorDictDataset(Dataset):
    """Tensors held in memory that share their first dimension (one row per sample); a sample is the dict of their
    rows, and ``__getitems__`` returns a whole batch with one fancy index per tensor (use :func:`collate_batch`).

    Rows are returned contiguous whatever the stored strides (e.g. CIFAR's channels-last arrays).
    """

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        lengths = {key: int(t.shape[0]) for key, t in tensors.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"the tensors of a dataset must have one row per sample, got lengths {lengths}")
        self.tensors = dict(tensors)
        self._length = next(iter(lengths.values()), 0)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: t[index].contiguous() for key, t in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {key: t[idx].contiguous() for key, t in self.tensors.items()}

    def head(self, n: int) -> TensorDictDataset:
        """The first ``n`` samples as a dataset of the same type (views of these tensors: no copy), e.g. the kNN bank."""
        part = copy.copy(self)
        part.tensors = {key: t[:n] for key, t in self.tensors.items()}
        part._length = min(n, self._length)
        return part


class ZooDataModule(L.LightningDataModule):
    """Base for all zoo datamodules.

    Datamodules hand out *raw* samples (decoding / indexing only, on the CPU); augmentation and float conversion
    happen on the device, in the LightningModule's ``on_after_batch_transfer``. Batches are dicts, e.g.
    ``{"image": uint8 [B, C, H, W], "label": int64 [B]}``; labels are carried for evaluation only (online linear
    probe, kNN).

    Validation / test loader contract: ``val_dataloader()`` and ``test_dataloader()`` return a list of loaders.

    * Two loaders: ``[knn_bank_loader, eval_loader]``. Index 0 (``dataloader_idx == 0``) iterates labelled
      training samples that fill the kNN memory bank (no shuffle, no augmentation); index 1 is the held-out
      validation (resp. test) split whose samples are the kNN queries and the linear probe's evaluation set.
    * One loader: ``[eval_loader]`` only (no kNN bank), so ``dataloader_idx == 0`` is the evaluation split.
    * Empty list: no validation split.

    ``predict_dataloader()`` returns the test loader alone.

    Train order: :meth:`train_sampler` shuffles with a permutation per ``(seed, epoch)``, and the position in it is
    saved in every checkpoint (``state_dict``), so a run resumed mid-epoch trains on exactly the batches the
    interrupted run had not reached (:mod:`zoo.data.resume`).

    A datamodule provides its data only, and this class builds every loader from it: its ``setup`` fills
    ``self._datasets`` (``"train"``, ``"val"``, ``"test"``, ``"knn_bank"`` → dataset; in-memory tensors go in a
    :class:`TensorDictDataset`) or it overrides :meth:`split_dataset`; :meth:`has_split` says which optional
    splits exist; the attributes ``batch_size``, ``num_workers``, ``seed``, ``drop_last`` (and ``pin_memory``) set
    the loaders; :attr:`collate_fn` replaces :func:`collate_batch` when samples are not dicts of equal-shape tensors.
    """

    #: the loaders' ``collate_fn``
    collate_fn: Callable[[Any], Any] = staticmethod(collate_batch)
    batch_size: int
    num_workers: int
    seed: int
    drop_last: bool
    pin_memory: bool = False

    def __init__(self) -> None:
        super().__init__()
        self._resume_position: dict[str, int] | None = None  # from a checkpoint, used by the next train loader
        self._datasets: dict[str, Dataset] | None = None  # split -> dataset, for datamodules that hold them in memory

    def train_sampler(self, num_samples: int, seed: int, batch_size: int) -> EpochShuffleSampler:
        """The train loader's sampler: epoch e's order is a function of (seed, e), continued from a checkpoint."""
        position = self.take_resume_position()
        # under DDP each rank takes every W-th index of this global order and has consumed batches × batch_size
        skip = position["batches"] * batch_size
        return EpochShuffleSampler(num_samples, seed, position["epoch"], skip=skip, num_replicas=self._world_size(), rank=self._rank())

    def take_resume_position(self) -> dict[str, int]:
        """``{"epoch", "batches"}`` of the checkpoint being resumed (once; then the start of training)."""
        position, self._resume_position = self._resume_position or {"epoch": 0, "batches": 0}, None
        return position

    def __str__(self) -> str:
        # LightningDataModule's __str__ builds every dataloader to describe them, and jsonargparse's argument links
        # call it while the CLI instantiates its classes, before the trainer knows its world size: that would load
        # the data there, and cluster G-SimCLR's pseudo-labels for one process. The class and its settings suffice.
        settings = ", ".join(f"{k}={v!r}" for k, v in dict(getattr(self, "hparams", {}) or {}).items())
        return f"{type(self).__name__}({settings})"

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def state_dict(self) -> dict[str, Any]:
        """The train loader's position, saved in every checkpoint written while fitting (see :mod:`zoo.data.resume`)."""
        if self.trainer is None or self.trainer.state.fn != "fit":
            return {}
        return {"train_position": train_position(self.trainer)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")

    @property
    def num_classes(self) -> int | None:
        """Number of label classes; ``None`` when the data carries no labels. Subclasses override."""
        return None

    # ---- what a datamodule provides -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the data and fill ``self._datasets`` (once); called by Lightning, and on first use of a split."""

    def split_dataset(self, split: str, train: bool) -> Dataset:
        """The dataset of ``split``; ``train=False`` for evaluation samples (no train-time cropping in the workers).

        By default the one that :meth:`setup` stored under ``split`` in ``self._datasets`` (in-memory datamodules);
        datamodules that build datasets on demand override this."""
        if self._datasets is None:
            self.setup()
        if self._datasets is None:
            raise NotImplementedError(f"{type(self).__name__}: setup() must fill self._datasets, or override split_dataset")
        if split not in self._datasets:
            raise DataError(f"unknown split {split!r}; valid splits: {', '.join(self._datasets)}")
        return self._datasets[split]

    def has_split(self, split: str) -> bool:
        """Whether ``split`` exists (``"val"``, ``"test"`` and ``"knn_bank"`` may not); by default, whether
        :meth:`setup` stored it."""
        if self._datasets is None:
            self.setup()
        return self._datasets is not None and split in self._datasets

    def predict_split(self) -> str:
        return "test"

    def _error_prefix(self) -> str:
        """What an error message names the data by (e.g. its file), followed by ": "; empty by default."""
        return ""

    # ---- the loaders ----------------------------------------------------------------------------------------------
    def make_loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        settings: dict[str, Any] = {
            "batch_size": self.batch_size, "num_workers": self.num_workers, "collate_fn": self.collate_fn,
            "pin_memory": self.pin_memory, "persistent_workers": self.num_workers > 0,
        }  # fmt: skip
        if "batch_sampler" in kwargs:  # it sets the batch size itself
            del settings["batch_size"]
        return DataLoader(dataset, **{**settings, **kwargs})

    def train_dataloader(self) -> DataLoader:
        """Shuffled by ``(seed, epoch)``, resumable mid-epoch; drops the last incomplete batch unless ``drop_last=False``."""
        ds = self.split_dataset("train", train=True)
        self.check_train_size(len(ds))
        return self.make_loader(ds, sampler=self.train_sampler(len(ds), self.seed, self.batch_size), drop_last=self.drop_last)

    def check_train_size(self, num_samples: int) -> None:
        if self.drop_last and num_samples < self.batch_size:
            raise DataError(
                f"{self._error_prefix()}the train split has {num_samples} samples, fewer than batch_size={self.batch_size}: "
                "with drop_last=True the train loader would yield no batch; lower batch_size (or the held-out split "
                "sizes), or pass drop_last=False"
            )

    def eval_loaders(self, split: str) -> list[DataLoader]:
        """``[knn_bank_loader, split_loader]``, ``[split_loader]`` without a kNN bank, ``[]`` without the split."""
        if not self.has_split(split):
            return []
        loaders = [self.make_loader(self.split_dataset(split, train=False), shuffle=False, drop_last=False)]
        if self.has_split("knn_bank"):
            loaders.insert(0, self.make_loader(self.split_dataset("knn_bank", train=False), shuffle=False, drop_last=False))
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self.eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self.eval_loaders("test")

    def predict_dataloader(self) -> DataLoader:
        return self.make_loader(self.split_dataset(self.predict_split(), train=False), shuffle=False, drop_last=False)
