"""Base class of the zoo datamodules."""

from __future__ import annotations

import lightning as L


class DataError(ValueError):
    """Bad or missing data (file, split, shape, column): reported by the CLI as one line, before training."""


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
    """

    @property
    def num_classes(self) -> int | None:
        """Number of label classes; ``None`` when the data carries no labels. Subclasses override."""
        return None
