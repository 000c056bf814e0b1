"""A train-loader order that a run resumed from a mid-epoch checkpoint continues exactly.

A DataLoader with ``shuffle=True`` and one long-lived ``torch.Generator`` cannot be resumed: a new process starts the
generator from its seed again (so epoch e of the resumed run replays epoch 0's order), and Lightning restarts the
interrupted epoch's iterator from its first batch while counting on from batch k. Here the order of epoch e is a
pure function of ``(seed, e)`` and the datamodule records ``(epoch, batches consumed)`` in the checkpoint, so the
resumed run skips exactly the batches the interrupted run had trained on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DistributedSampler


class EpochShuffleSampler(DistributedSampler):
    """Sample indices in a permutation seeded by ``(seed, epoch)``; Lightning calls :meth:`set_epoch` each epoch.

    ``skip`` drops the first ``skip`` indices of the next iteration only (a resumed epoch); later epochs are whole.
    ``epoch`` is the epoch of the next iteration. With ``num_replicas`` W > 1, rank r takes every W-th index of the
    epoch's permutation (padded by wrapping around to a multiple of W), and ``skip`` counts this rank's indices.

    It shards itself, and is a ``DistributedSampler`` so that Lightning leaves it so: Lightning would otherwise wrap it
    in a sampler that reshuffles its indices with a permutation of the sampler's length, which a resumed (shortened)
    epoch changes, so the resumed ranks would train on other samples (or index past its end).
    """

    def __init__(self, num_samples: int, seed: int, epoch: int = 0, skip: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        # not DistributedSampler.__init__: it wants a dataset and a process group, and this sampler needs neither
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.dataset_size, self.seed, self.epoch, self.skip = num_samples, seed, epoch, skip
        self.num_replicas, self.rank, self.shuffle, self.drop_last = num_replicas, rank, True, False

    @property
    def num_samples(self) -> int:  # per rank, as DistributedSampler's
        return math.ceil(self.dataset_size / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)

    def __iter__(self) -> Iterator[int]:
        # read once: only the resumed epoch is shortened. The epoch advances by itself, so a plain loop over the
        # loader reshuffles each pass too; under Lightning, set_epoch() sets it before every epoch's iterator anyway.
        order = self.permutation(self.epoch)
        if self.num_replicas > 1:
            order = np.resize(order, self.num_samples * self.num_replicas)[self.rank :: self.num_replicas]
        order = order[self.skip :].tolist()
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
