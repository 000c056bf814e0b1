"""Every datamodule's train order is a function of (seed, epoch), and a checkpoint's train position makes the next
train loader continue that order mid-epoch (exact resume; the end-to-end image case is in tests/test_resume.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from zoo.data.audio_text import AudioTextDataModule
from zoo.data.images import ImageDataModule
from zoo.data.music_captions import build
from zoo.data.skeleton import SkeletonDataModule
from zoo.data.skeleton_generator import write_actions_dataset
from zoo.data.tabular import TabularDataModule


def _tabular(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": np.arange(120, dtype=float), "b": rng.normal(size=120), "y": rng.integers(0, 2, size=120)})
    return TabularDataModule(frame=frame, target="y", seed=5, batch_size=8), "features"


def _skeleton(tmp_path):
    write_actions_dataset(tmp_path, train=60, test=12, seed=0, max_frames=8, num_persons=1)
    return SkeletonDataModule(str(tmp_path), num_frames=8, num_persons=1, batch_size=8, val_size=8, knn_bank_size=0, seed=5), "skeleton"


def _audio(tmp_path):
    build(tmp_path, num_clips=40, seconds=0.5, sample_rate=8000, captions_per_clip=1, test_fraction=0.2, renderer="numpy")
    dm = AudioTextDataModule(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), sample_rate=8000, batch_size=4, val_size=4, seed=5)
    return dm, "audio"


def _gsimclr(tmp_path):
    settings = {"autoencoder_epochs": 1, "cache_dir": str(tmp_path / "pseudo-labels")}
    return ImageDataModule(dataset="digits", batch_size=32, val_size=300, knn_bank_size=0, seed=5, pseudo_label_batches=settings), "image"


def _epoch(dm, key: str, epoch: int) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    _set_sampler_epoch(loader, epoch)  # as Lightning does before each epoch
    return [batch[key] for batch in loader]


@pytest.mark.parametrize("make", [_tabular, _skeleton, _audio, _gsimclr], ids=["tabular", "skeleton", "audio_text", "gsimclr"])
def test_train_order_is_seeded_per_epoch_and_resumes_mid_epoch(make, tmp_path):
    dm, key = make(tmp_path)
    dm.setup("fit")
    epoch1 = _epoch(dm, key, 1)
    assert len(epoch1) >= 4
    again, _ = make(tmp_path / "again")
    again.setup("fit")
    assert all(torch.equal(a, b) for a, b in zip(_epoch(again, key, 1), epoch1))  # same seed, same order
    assert not torch.equal(_epoch(dm, key, 0)[0], epoch1[0])  # reshuffled per epoch

    resumed, _ = make(tmp_path / "resumed")
    resumed.setup("fit")
    resumed.load_state_dict({"train_position": {"epoch": 1, "batches": 2}})  # what a mid-epoch checkpoint holds
    loader = resumed.train_dataloader()
    _set_sampler_epoch(loader, 1)  # Lightning sets the checkpoint's epoch
    rest = [batch[key] for batch in loader]
    assert len(rest) == len(epoch1) - 2 and all(torch.equal(a, b) for a, b in zip(rest, epoch1[2:]))


def test_under_ddp_each_rank_takes_its_share_of_the_epoch_order_and_resumes_its_own_position():
    from torch.utils.data import DistributedSampler

    from zoo.data.resume import EpochShuffleSampler

    shards = [EpochShuffleSampler(21, seed=3, epoch=1, num_replicas=2, rank=r) for r in range(2)]
    # a DistributedSampler: Lightning uses it as it is instead of wrapping (and reshuffling) it
    assert all(isinstance(s, DistributedSampler) and len(s) == 11 for s in shards)
    order = EpochShuffleSampler(21, seed=3).permutation(1).tolist()
    epoch = [list(s) for s in shards]
    assert epoch[0] == order[0::2] and epoch[1] == order[1::2] + order[:1]  # padded by wrapping, as DistributedSampler
    resumed = [list(EpochShuffleSampler(21, seed=3, epoch=1, skip=4, num_replicas=2, rank=r)) for r in range(2)]
    assert resumed == [epoch[0][4:], epoch[1][4:]]
