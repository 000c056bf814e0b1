import lightning as L
import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.method_cases import with_inputs
from tests.test_cli import REPO, tiny_overrides
from zoo.cli import main
from zoo.data.images import ImageDataModule
from zoo.losses.swav import sinkhorn_knopp, swav_loss
from zoo.methods.swav import SwAV

SWAV_DIGITS = str(REPO / "configs" / "swav" / "digits.yaml")
TINY_HEADS = {"projector_hidden_dim": 32, "projector_out_dim": 16, "num_prototypes": 20}


def tiny_swav(tiny_encoder, **kwargs) -> SwAV:
    args = {
        "encoder": tiny_encoder, "num_small_crops": 2, "large_crop_size": 8, "small_crop_size": 6, **TINY_HEADS,
        "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 0, **kwargs,
    }
    return SwAV(**args)


def test_multicrop_views_have_the_configured_sizes(tiny_encoder):
    model = tiny_swav(tiny_encoder, num_small_crops=3)
    crops = model.make_inputs({"image": torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)})["views"]
    assert [tuple(c.shape) for c in crops] == [(5, 1, 8, 8)] * 2 + [(5, 1, 6, 6)] * 3
    assert model.large_views.config["crop_scale"] == (0.14, 1.0)
    assert model.small_views.config["crop_scale"] == (0.05, 0.14)


def test_ssl_step_is_the_swapped_prediction_of_sinkhorn_codes(tiny_encoder):
    torch.manual_seed(0)
    model = tiny_swav(tiny_encoder)
    with torch.no_grad():
        model.prototypes.layer.weight.mul_(3.0)  # off the sphere: the step must normalise them first
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    crops = model.make_inputs({"image": images})["views"]
    out = model.ssl_step({"image": images, "views": crops})
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(20))
    # the same algorithm written out: backbone per resolution, projector over all crops, normalise, score
    features = torch.cat([model.encoder(torch.cat(crops[:2])), model.encoder(torch.cat(crops[2:]))])
    z = F.normalize(model.projector(features), dim=1)
    scores = list((z @ model.prototypes.weight.T).split(6))
    codes = [sinkhorn_knopp(s.detach(), 0.05, 3) for s in scores[:2]]
    torch.testing.assert_close(out.loss, swav_loss(scores, codes, 0.1))
    assert out.features.shape == (6, model.encoder.num_features)


def test_fewer_crops_than_two_is_refused(tiny_encoder):
    with pytest.raises(ValueError, match="crops"):
        tiny_swav(tiny_encoder, num_large_crops=1, num_small_crops=0)


def digits(batch_size: int = 32) -> ImageDataModule:
    return ImageDataModule(dataset="digits", batch_size=batch_size, val_size=300, knn_bank_size=200)


def fit(model: SwAV, tmp_path, max_epochs: int = 1, batches: int = 3, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=max_epochs, limit_train_batches=batches, limit_val_batches=0, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **trainer_kwargs,
    )
    trainer.fit(model, datamodule=digits())
    return trainer


def test_prototypes_are_frozen_for_the_first_steps(tiny_encoder, tmp_path):
    torch.manual_seed(0)
    frozen = tiny_swav(tiny_encoder, freeze_prototypes_steps=3)
    initial = frozen.prototypes.weight.detach().clone()
    fit(frozen, tmp_path / "a", batches=3, enable_checkpointing=False)
    torch.testing.assert_close(frozen.prototypes.weight, initial, rtol=0, atol=1e-6)  # 3 steps, all frozen
    torch.manual_seed(0)
    moving = tiny_swav(tiny_encoder, freeze_prototypes_steps=1)
    fit(moving, tmp_path / "b", batches=3, enable_checkpointing=False)
    assert (moving.prototypes.weight - initial).abs().max() > 1e-4
    # the rest of the network trains from the first step either way
    assert not torch.equal(frozen.encoder.backbone.conv1.weight, tiny_swav(tiny_encoder).encoder.backbone.conv1.weight)


def test_queue_starts_at_its_epoch_fills_joins_sinkhorn_and_lives_in_the_checkpoint(tiny_encoder, tmp_path):
    torch.manual_seed(0)
    model = tiny_swav(tiny_encoder, queue_length=64, queue_start_epoch=1)
    trainer = fit(model, tmp_path, max_epochs=2, batches=3)
    # epoch 0: no queue; epoch 1: three batches of 32 fill the 64 rows (newest first)
    assert model.queue is not None and model.queue.shape == (2, 64, 16) and model.queue_filled == 64
    torch.testing.assert_close(model.queue.norm(dim=2), torch.ones(2, 64))
    checkpoint_path = tmp_path / "swav.ckpt"
    trainer.save_checkpoint(checkpoint_path)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    state = checkpoint["zoo_swav_queue"]
    assert state["queues"].shape == (1, 2, 64, 16) and state["filled"] == 64
    assert not any("queue" in key for key in checkpoint["state_dict"])  # training state, not weights
    restored = SwAV.load_from_checkpoint(checkpoint_path, weights_only=True)
    torch.testing.assert_close(restored.queue, model.queue)
    assert restored.queue_filled == 64

    # a full queue takes part in the equipartition: the codes are those of [queue; batch], batch rows kept
    scores = torch.randn(32, 20)
    z = [F.normalize(torch.randn(32, 16), dim=1) for _ in range(2)]
    queue_before = model.queue.clone()
    codes = model._codes([scores, scores.flip(0)], z)
    queue_scores = queue_before[0] @ model.prototypes.weight.T
    expected = sinkhorn_knopp(torch.cat([queue_scores, scores]), 0.05, 3)[-32:]
    torch.testing.assert_close(codes[0], expected)
    torch.testing.assert_close(model.queue[0, :32], z[0])  # newest first
    torch.testing.assert_close(model.queue[0, 32:], queue_before[0, :32])  # the oldest rows dropped


def test_queue_in_use_is_logged_on_the_steps_whose_codes_use_the_queue(tiny_encoder, monkeypatch):
    """A queue of one batch: step 1 computes its codes without it (and fills it), step 2 with it."""
    model = tiny_swav(tiny_encoder)
    model.queue, model.queue_filled = torch.zeros(2, 8, 16), 0  # as _maybe_start_queue makes it at queue_start_epoch
    used = []
    codes = model.criterion.codes
    monkeypatch.setattr(model.criterion, "codes", lambda scores, queue=None: used.append(queue is not None) or codes(scores, queue))
    logged = []
    for seed in range(2):
        images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
        logged.append(model.ssl_step(with_inputs(model, {"image": images})).logs["queue_in_use"].item())
    assert used == [False, False, True, True]  # two large crops per step
    assert logged == [0.0, 1.0]


def test_bf16_autocast_step_is_finite_and_close_to_fp32(tiny_encoder):
    torch.manual_seed(0)
    model = tiny_swav(tiny_encoder)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    crops = model.make_inputs({"image": images})["views"]
    fp32 = model.ssl_step({"image": images, "views": crops}).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.ssl_step({"image": images, "views": crops}).loss
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05)


def test_fit_through_the_cli_then_export_and_reload(tiny_encoder, tmp_path):
    args = tiny_overrides(tmp_path, tiny_encoder, SWAV_DIGITS) + [
        "--model.init_args.projector_hidden_dim", "32", "--model.init_args.projector_out_dim", "16",
        "--model.init_args.num_prototypes", "20", "--model.init_args.queue_length", "64",
        "--model.init_args.queue_start_epoch", "1",
    ]
    assert main(["fit", *args]) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo_method"] == "swav" and checkpoint["zoo_swav_queue"]["filled"] == 64
    assert main(["export", str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    loaded = zoo.from_pretrained(tmp_path / "hub")
    assert isinstance(loaded, SwAV)
    reference = SwAV.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True).eval()
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), reference.embed(images))
    torch.testing.assert_close(loaded.prototypes.weight, reference.prototypes.weight)


def _swav_step_gradients(rank: int, world_size: int, state: dict, crops: list[torch.Tensor]):
    from tests.conftest import TINY_ENCODER

    model = tiny_swav(TINY_ENCODER)
    model.load_state_dict(state)
    # BN in eval mode: batch statistics would couple the samples of a rank (SyncBN needs a GPU); what is left
    # across samples is the Sinkhorn equipartition, which must run over the global batch
    model.eval()
    n = crops[0].shape[0] // world_size
    local = [c[rank * n : (rank + 1) * n] for c in crops]
    loss = model.ssl_step({"image": local[0], "views": local}).loss
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_two_process_step_equals_one_process_on_the_global_batch(tiny_encoder, tmp_path):
    from tests.distributed import run_distributed

    torch.manual_seed(0)
    model = tiny_swav(tiny_encoder)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    crops = model.make_inputs({"image": images})["views"]
    state = model.state_dict()
    results = run_distributed(_swav_step_gradients, tmp_path, state, crops)
    full_loss, full_grads = _swav_step_gradients(0, 1, state, crops)
    # DDP averages gradients (and the logged loss) over ranks
    assert torch.stack([r[0] for r in results]).mean().item() == pytest.approx(full_loss.item(), rel=1e-5)
    for name, grad in full_grads.items():
        averaged = (results[0][1][name] + results[1][1][name]) / 2
        torch.testing.assert_close(averaged, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_prototypes_are_back_on_the_sphere_after_every_optimizer_step(tiny_encoder):
    """The projection runs after the update on whole rows (under FSDP the in-forward one acts on a discarded
    gathered copy), so the stored prototypes are unit vectors between steps and in checkpoints."""
    import lightning as L
    from torch.utils.data import DataLoader

    model = tiny_swav(tiny_encoder, freeze_prototypes_steps=0, lr=0.5)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    norms = []

    class AfterStep(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            norms.append(pl_module.prototypes.weight.norm(dim=1).detach().clone())

    loader = DataLoader(range(16), batch_size=8, collate_fn=lambda idx: {"image": images[idx]})
    L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[AfterStep()]).fit(model, loader)
    assert len(norms) == 2
    for n in norms:
        torch.testing.assert_close(n, torch.ones(20))
