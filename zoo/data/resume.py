"""A train-loader order that a run resumed from a mid-epoch checkpoint continues exactly.

A DataLoader with ``shuffle=True`` and one long-lived ``torch.Generator`` cannot be resumed: a new process starts the
generator from its seed again (so epoch e of the resumed run replays epoch 0's order), and Lightning restarts the
interrupted epoch's iterator from its first batch while counting on from batch k. Here the order of epoch e is a
pure function of ``(seed, e)`` and the datamodule records ``(epoch, batches consumed)`` in the checkpoint, so the
resumed run skips exactly the batches the interrupted run had trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Sample indices in a permutation seeded by ``(seed, epoch)``; Lightning calls :meth:`set_epoch` each epoch.

    ``skip`` drops the first ``skip`` indices of the next iteration only (a resumed epoch); later epochs are whole.
    ``epoch`` is the epoch of the next iteration.
    """

    def __init__(self, num_samples: int, seed: int, epoch: int = 0, skip: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = epoch
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[int]:
        # read once: only the resumed epoch is shortened. The epoch advances by itself, so a plain loop over the
        # loader reshuffles each pass too; under Lightning, set_epoch() sets it before every epoch's iterator anyway.
        order = self.permutation(self.epoch)[self.skip :].tolist()
        self.skip = 0
        self.epoch += 1
        return iter(order)

    def __len__(self) -> int:
        # Lightning sizes the epoch from len(loader); the resumed epoch's remaining batches are counted by its loop
        return self.num_samples


def train_position(trainer: Any) -> dict[str, int]:
    """``{"epoch", "batches"}``: where the train loader stands for a checkpoint written now.

    ``batches`` is the number of batches of the current epoch that have been trained on (Lightning's ``processed``
    count: a checkpoint written in ``on_train_batch_end`` includes that batch). A finished epoch rolls over to the
    start of the next one, since a resumed run begins there.
    """
    epoch = trainer.current_epoch
    batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    if batches >= trainer.num_training_batches:
        return {"epoch": epoch + 1, "batches": 0}
    return {"epoch": epoch, "batches": batches}
