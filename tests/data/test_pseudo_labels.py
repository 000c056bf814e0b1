import json

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler

from tests.test_cli import tiny_overrides
from zoo.cli import main
from zoo.data.base import DataError
from zoo.data.images import ImageDataModule
from zoo.data.pseudo_labels import (
    DenoisingAutoencoder,
    PseudoClassBatchSampler,
    autoencoder_embeddings,
    balanced_kmeans,
    train_denoising_autoencoder,
)


@pytest.mark.parametrize("size", [8, 28, 32])
def test_autoencoder_reconstructs_any_size_and_embeds_128_d(size):
    model = DenoisingAutoencoder(in_chans=1)
    x = torch.rand(3, 1, size, size)
    out = model(x)
    assert out.shape == x.shape and (out >= 0).all() and (out <= 1).all()
    assert model.embed(x).shape == (3, 128)


def test_autoencoder_training_lowers_the_reconstruction_error():
    images = ImageDataModule(dataset="digits", val_size=0).arrays("train")[0][:512]
    images = torch.from_numpy(images)
    x = images.float() / 255
    untrained = DenoisingAutoencoder(1)
    trained = train_denoising_autoencoder(images, epochs=3, batch_size=64, lr=3e-3, seed=0)
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(untrained.eval()(x), x).item()
        after = torch.nn.functional.mse_loss(trained(x), x).item()
    assert after < 0.5 * before
    assert autoencoder_embeddings(trained, images).shape == (512, 128)


def test_balanced_kmeans_recovers_equal_blobs_and_balances_unequal_ones():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 5)) * 20
    blobs = np.concatenate([c + rng.normal(size=(25, 5)) for c in centres])
    labels = balanced_kmeans(blobs, 4, seed=0)
    truth = np.repeat(np.arange(4), 25)
    # same partition up to renaming
    assert all(len(set(labels[truth == t])) == 1 for t in range(4)) and len(set(labels)) == 4
    unequal = np.concatenate([centres[0] + rng.normal(size=(70, 5)), centres[1] + rng.normal(size=(33, 5))])
    sizes = np.bincount(balanced_kmeans(unequal, 10, seed=0), minlength=10)
    assert sizes.sum() == 103 and set(sizes) <= {10, 11}
    with pytest.raises(DataError, match="fewer"):
        balanced_kmeans(unequal[:5], 10)


def all_batches(sampler: PseudoClassBatchSampler) -> list[list[int]]:
    return [list(b) for b in sampler]


@pytest.mark.parametrize("balanced", [True, False])
def test_no_batch_repeats_a_pseudo_class(balanced):
    rng = np.random.default_rng(1)
    labels = np.arange(1000) % 16 if balanced else rng.choice(16, size=1000, p=np.r_[0.3, np.full(15, 0.7 / 15)])
    sampler = PseudoClassBatchSampler(None, 16, pseudo_labels=labels, seed=3)
    batches = all_batches(sampler)
    assert len(batches) == len(sampler) and all(len(b) == 16 for b in batches)
    for batch in batches:
        assert len(set(labels[batch])) == 16
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no image twice in an epoch
    if balanced:
        assert len(flat) == 1000 - 1000 % 16  # only the incomplete last batch is dropped


def test_order_is_seeded_and_changes_every_epoch():
    labels = np.arange(640) % 32
    a, b = (PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0) for _ in range(2))
    assert all_batches(a) == all_batches(b)
    first = all_batches(a)
    a.sampler.set_epoch(1)
    assert all_batches(a) != first
    assert all_batches(PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=1)) != first


def test_ranks_get_disjoint_slices_of_each_global_batch():
    labels = np.arange(512) % 64
    ranks = [all_batches(PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 8
    for part0, part1 in zip(*ranks):
        global_batch = part0 + part1
        assert len(set(labels[global_batch])) == 64  # the constraint holds over the global batch
    with pytest.raises(ValueError, match="drop_last"):
        PseudoClassBatchSampler(None, 32, False, pseudo_labels=labels, num_replicas=2, rank=0)


def test_lightning_reinstantiates_it_around_its_distributed_sampler_and_ranks_take_their_slices():
    """Under DDP Lightning re-creates a BatchSampler subclass with the DistributedSampler it injects; the rank and
    world size come from that sampler, the order stays the common (seed, epoch) one."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader, DistributedSampler

    labels = np.arange(512) % 64
    dataset = list(range(512))
    with _replace_dunder_methods(BatchSampler):  # what Lightning does around a datamodule's train_dataloader()
        loader = DataLoader(dataset, batch_sampler=PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0, skip_batches=1))
    for rank in range(2):
        injected = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        batch_sampler = _update_dataloader(loader, injected).batch_sampler
        assert isinstance(batch_sampler, PseudoClassBatchSampler) and (batch_sampler.num_replicas, batch_sampler.rank) == (2, rank)
        explicit = PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0, num_replicas=2, rank=rank)
        assert all_batches(batch_sampler) == all_batches(explicit)[1:]  # the resumed epoch skips its first batch
        assert all_batches(batch_sampler) == all_batches(explicit)  # later epochs are whole


def test_a_resumed_epoch_continues_with_the_batches_not_trained_on():
    labels = np.arange(640) % 32
    whole = PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0)
    whole.sampler.set_epoch(3)
    resumed = PseudoClassBatchSampler(None, 32, pseudo_labels=labels, seed=0, skip_batches=5)
    resumed.sampler.set_epoch(3)
    assert len(resumed) == len(whole) == 20
    assert all_batches(resumed) == all_batches(whole)[5:]


def test_datamodule_batches_pseudo_classes_caches_them_and_lightning_sets_the_epoch(tmp_path, monkeypatch, tiny_encoder):
    settings = {"autoencoder_epochs": 1, "cache_dir": str(tmp_path / "cache")}
    datamodule = ImageDataModule(dataset="digits", batch_size=32, val_size=300, knn_bank_size=0, pseudo_label_batches=settings)
    # describing the datamodule (jsonargparse does, before the trainer knows its world size) builds no loader
    assert str(datamodule).startswith("ImageDataModule(dataset='digits', ") and not list((tmp_path / "cache").glob("*"))
    loader = datamodule.train_dataloader()
    labels = datamodule.pseudo_labels()
    assert len(set(labels)) == 32  # k = the batch size
    for batch in loader:
        assert batch["image"].shape[0] == 32
    batch_indices = list(loader.batch_sampler)
    assert all(len(set(labels[b])) == 32 for b in batch_indices)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    # asked for before the trainer knows its world size (one process), then under 2-process DDP: k follows the global
    # batch, so that each global batch can hold one image per pseudo-class
    assert len(set(datamodule.pseudo_labels(2))) == 64 and len(set(datamodule.pseudo_labels(1))) == 32

    # a second run reads the cache instead of training the autoencoder again
    import zoo.data.pseudo_labels as pseudo_labels

    monkeypatch.setattr(pseudo_labels, "compute_pseudo_labels", lambda *a: pytest.fail("recomputed"))
    again = ImageDataModule(dataset="digits", batch_size=32, val_size=300, knn_bank_size=0, pseudo_label_batches=settings)
    np.testing.assert_array_equal(again.pseudo_labels(), labels)

    from zoo.methods.simclr import SimCLR

    model = SimCLR(encoder=tiny_encoder, projector_out_dim=8, optimizer="sgd", lr=0.01, warmup_epochs=0)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=again)
    assert trainer.train_dataloader.batch_sampler.sampler.epoch == 1


def test_unknown_setting_is_named():
    with pytest.raises(DataError, match="autoencoder_epoch"):
        ImageDataModule(dataset="digits", pseudo_label_batches={"autoencoder_epoch": 1})


def test_gsimclr_fit_through_the_cli(tmp_path, tiny_encoder):
    settings = json.dumps({"autoencoder_epochs": 1, "cache_dir": str(tmp_path / "cache")})
    args = tiny_overrides(tmp_path, tiny_encoder) + ["--data.init_args.pseudo_label_batches", settings]
    assert main(["fit", *args]) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    # the batching mode is part of the recorded recipe
    assert checkpoint["zoo_training_record"]["data"]["pseudo_label_batches"]["autoencoder_epochs"] == 1
