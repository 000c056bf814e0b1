"""Base class of the zoo datamodules."""

from __future__ import annotations

from typing import Any

import lightning as L

from zoo.data.resume import EpochShuffleSampler, train_position
from zoo.errors import DataError  # noqa: F401  (re-exported: the datamodules' error type)


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
    """

    #: whether the train order comes from :meth:`train_sampler` (and is saved in checkpoints)
    resumable_train_order: bool = True

    def __init__(self) -> None:
        super().__init__()
        self._resume_position: dict[str, int] | None = None  # from a checkpoint, used by the next train loader

    def train_sampler(self, num_samples: int, seed: int, batch_size: int) -> EpochShuffleSampler:
        """The train loader's sampler: epoch e's order is a function of (seed, e), continued from a checkpoint."""
        position, self._resume_position = self._resume_position or {"epoch": 0, "batches": 0}, None
        # under DDP each rank takes every W-th index of this global order and has consumed batches × batch_size
        rank = self.trainer.global_rank if self.trainer is not None else 0
        skip = position["batches"] * batch_size
        return EpochShuffleSampler(num_samples, seed, position["epoch"], skip=skip, num_replicas=self._world_size(), rank=rank)

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def state_dict(self) -> dict[str, Any]:
        """The train loader's position, saved in every checkpoint written while fitting (see :mod:`zoo.data.resume`)."""
        if self.trainer is None or self.trainer.state.fn != "fit" or not self.resumable_train_order:
            return {}
        return {"train_position": train_position(self.trainer)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")

    @property
    def num_classes(self) -> int | None:
        """Number of label classes; ``None`` when the data carries no labels. Subclasses override."""
        return None
