"""Training faults: a NaN/inf loss stops `zoo fit` naming the step; a collapsed representation is warned about."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from tests.faults import CollapsedSimCLR
from tests.test_cli import tiny_overrides
from zoo.cli import main
from zoo.data.images import ImageDataModule
from zoo.eval.collapse import CollapseWarning, EmbeddingStd
from zoo.methods.simclr import SimCLR


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_loss_stops_fit_naming_the_step(tmp_path, tiny_encoder, capsys, value):
    args = ["fit", *tiny_overrides(tmp_path, tiny_encoder), "--model.class_path", "tests.faults.NonFiniteLossSimCLR",
            "--model.init_args.bad_step", "2", "--model.init_args.value", value]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zoo fit: error: NonFiniteLossSimCLR: loss is ")
    assert f"is {value} at global step 2 (epoch 0, batch 2)" in err[-1]
    # stopped before the bad step's update: no checkpoint past step 2 was written
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_embedding_std_reads_one_when_spread_and_zero_when_collapsed():
    metric = EmbeddingStd()
    metric.update(torch.randn(4000, 32))
    assert metric.compute().item() == pytest.approx(1.0, abs=0.05)
    metric.reset()
    metric.update(torch.ones(50, 32) + 1e-9 * torch.randn(50, 32))
    assert metric.compute().item() < 1e-6


def _validate(model: SimCLR) -> None:
    data = ImageDataModule(dataset="digits", batch_size=64, val_size=200, knn_bank_size=200)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0,
                        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, data)


def test_collapsed_embeddings_warn_naming_the_epoch(tiny_encoder):
    model = CollapsedSimCLR(encoder=tiny_encoder, num_classes=10, optimizer="sgd", lr=0.01, warmup_epochs=0)
    with pytest.warns(CollapseWarning, match=r"collapse at epoch 0: RankMe 1 < collapse_min_rankme=1.5, embedding std 0 < collapse_min_std=0.05"):
        _validate(model)


def test_healthy_embeddings_do_not_warn_and_thresholds_can_be_turned_off(tiny_encoder):
    torch.manual_seed(0)
    healthy = SimCLR(encoder=tiny_encoder, num_classes=10, optimizer="sgd", lr=0.01, warmup_epochs=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _validate(healthy)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    off = CollapsedSimCLR(encoder=tiny_encoder, num_classes=10, optimizer="sgd", lr=0.01, warmup_epochs=0,
                          collapse_min_rankme=None, collapse_min_std=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _validate(off)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
