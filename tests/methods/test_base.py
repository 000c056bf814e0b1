import math

import lightning as L
import pytest
import torch

from zoo.methods.simclr import SimCLR
from zoo.schedules import warmup_cosine


def test_parameter_groups_exclude_norm_and_bias_from_weight_decay(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder, num_classes=5, weight_decay=1e-4, probe_lr=0.05)
    groups = {g["name"]: g for g in model.parameter_groups()}
    names = {id(p): n for n, p in model.named_parameters()}
    decay = [names[id(p)] for p in groups["decay"]["params"]]
    no_decay = [names[id(p)] for p in groups["no_decay"]["params"]]
    probe = [names[id(p)] for p in groups["probe"]["params"]]
    assert all(n.endswith("weight") and "bn" not in n for n in decay)
    assert any("bn" in n for n in no_decay) and any(n.endswith("bias") for n in no_decay)
    assert sorted(probe) == ["probe.classifier.bias", "probe.classifier.weight"]
    assert groups["decay"]["weight_decay"] == 1e-4 and groups["no_decay"]["weight_decay"] == 0.0
    assert groups["probe"]["lr"] == 0.05 and groups["probe"]["weight_decay"] == 0.0
    # the frozen BN shift of the projector is in no group; everything else is in exactly one
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(decay + no_decay + probe) == sorted(trainable)
    assert "projector.4.bias" not in trainable


def test_online_probe_sends_no_gradient_into_the_encoder(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder, num_classes=3)
    features = model.embed(torch.rand(4, 1, 8, 8))
    loss, _ = model.probe.loss(features, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model.probe.classifier.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())


@pytest.mark.parametrize(
    "kwargs,match",
    [({"optimizer": "adamw_typo"}, "optimizer"), ({"lr": 0.0}, "lr"), ({"num_classes": 1}, "num_classes")],
)
def test_invalid_settings_fail_at_construction(tiny_encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimCLR(encoder=tiny_encoder, **kwargs)


def test_embed_batch_names_the_missing_key(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder)
    with pytest.raises(KeyError, match="'image'.*'pixels'"):
        model.embed_batch({"pixels": torch.rand(2, 1, 8, 8)})


def test_hparams_hold_subclass_and_base_args(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder, temperature=0.2, lr=0.05, optimizer="sgd")
    hp = dict(model.hparams)
    assert hp["temperature"] == 0.2 and hp["lr"] == 0.05 and hp["optimizer"] == "sgd"
    assert hp["encoder"] == tiny_encoder
    assert math.isclose(hp["warmup_epochs"], 10.0)


class _Recorder(L.Callback):
    def __init__(self):
        self.lrs, self.view_seeds = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.view_seeds.append(pl_module.view_generator(0).initial_seed())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])


@pytest.mark.parametrize("limits", [{"max_epochs": 3}, {"max_steps": 8}])
def test_schedule_warmup_in_epochs_then_cosine(tiny_encoder, limits):
    """Through a real Trainer: warm-up lasts warmup_epochs × steps-per-epoch whether the run is bounded by epochs or
    steps; the probe group keeps its own lr; views get fresh randomness every step."""
    from zoo.data.images import ImageDataModule

    model = SimCLR(encoder=tiny_encoder, optimizer="lars", lr=0.4, probe_lr=0.05, warmup_epochs=1, num_classes=10)
    recorder = _Recorder()
    trainer = L.Trainer(
        accelerator="cpu", limit_train_batches=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder], **limits,
    )
    trainer.fit(model, ImageDataModule(dataset="digits", batch_size=32, val_size=100, knn_bank_size=0))
    total = 12 if "max_epochs" in limits else 8
    # the lr in use at step s (recorded after the step, i.e. before the scheduler moved on) is factor(s)
    expected = [0.4 * warmup_cosine(s, 4, total) for s in range(total)]
    used = [0.4 * warmup_cosine(0, 4, total)] + [lrs[0] for lrs in recorder.lrs[:-1]]
    assert used == pytest.approx(expected)
    assert expected[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert all(lrs[-1] == pytest.approx(0.05 * warmup_cosine(s + 1, 4, total)) for s, lrs in enumerate(recorder.lrs))
    assert len(set(recorder.view_seeds)) == total
