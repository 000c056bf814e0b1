import json

import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.test_cli import REPO, tiny_overrides
from zoo.cli import main
from zoo.losses.jepa import jepa_loss
from zoo.methods.ijepa import IJEPA
from zoo.nn.tokens import apply_masks, sincos_2d

# 8×8 digits with patch 1: an 8×8 grid of pixel tokens, a few thousand parameters
TINY_VIT = {"img_size": 8, "patch_size": 1, "in_chans": 1, "embed_dim": 16, "depth": 1, "num_heads": 2}
TINY_PREDICTOR = {"predictor_dim": 16, "predictor_depth": 1, "predictor_heads": 2}


def test_make_inputs_draws_the_crop_and_masks_from_the_batch_streams_and_ssl_step_only_reads_them():
    torch.manual_seed(0)
    model = IJEPA(encoder=TINY_VIT, masking={"min_keep": 4}, **TINY_PREDICTOR)
    raw = {"image": torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)}
    inputs = model.make_inputs(raw)
    again = model.make_inputs(raw)  # same (seed, rank, batches seen): the same inputs
    assert torch.equal(inputs["views"][0], again["views"][0]) and torch.equal(inputs["masks"].targets, again["masks"].targets)
    assert inputs["views"][0].shape == (5, 1, 8, 8) and inputs["masks"].context.shape[0] == 5
    # ssl_step reads the batch's inputs: the raw image is not looked at
    batch = {**raw, **inputs}
    loss = model.ssl_step(batch).loss
    torch.testing.assert_close(model.ssl_step({**batch, "image": torch.zeros_like(raw["image"])}).loss, loss)


def test_encoder_and_predictor_positions_are_the_release_layout():
    model = IJEPA(encoder=TINY_VIT, **TINY_PREDICTOR)
    assert model.hparams.pos_embed_order == "xy"  # recorded in every new config
    assert torch.equal(model.encoder.pos_embed[0], sincos_2d((8, 8), 16, "xy"))
    assert torch.equal(model.predictor.predictor_pos_embed[0], sincos_2d((8, 8), 16, "xy"))
    assert IJEPA.migrate_config({"lr": 1.0}) == {"lr": 1.0, "pos_embed_order": "yx"}  # a config of zoo 0.1
    assert IJEPA.migrate_config({"pos_embed_order": "xy"}) == {"pos_embed_order": "xy"}


def test_ssl_step_is_smooth_l1_between_predictions_and_layer_normed_target_blocks():
    torch.manual_seed(0)
    model = IJEPA(encoder=TINY_VIT, masking={"min_keep": 4}, **TINY_PREDICTOR)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    batch = {"image": images, **model.make_inputs({"image": images})}
    (view,), masks = batch["views"], batch["masks"]
    out = model.ssl_step(batch)
    full = model.target_encoder(view)
    targets = apply_masks(F.layer_norm(full, (16,)), masks.targets)
    predictions = model.predictor(model.encoder(view, keep=masks.context), masks.context, masks.targets)
    torch.testing.assert_close(out.loss, jepa_loss(predictions, targets, "smooth_l1"))
    torch.testing.assert_close(out.features, model.embed(view))  # the probe trains on what embed returns
    # the context encoder really saw only the context patches: changing a target-only pixel changes nothing
    patch = int(masks.targets[0, 0, 0])
    changed = view.clone()
    changed[0, 0, patch // 8, patch % 8] += 0.5
    torch.testing.assert_close(model.encoder(changed, keep=masks.context), model.encoder(view, keep=masks.context))
    out.loss.backward()
    assert model.encoder.backbone.patch_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_ema_tau_rises_linearly_without_a_trainer_it_is_the_base():
    model = IJEPA(encoder=TINY_VIT, **TINY_PREDICTOR)
    assert model.current_tau() == 0.996
    assert model.hparams.optimizer == "adamw" and model.hparams.lr == 1e-3


@pytest.mark.parametrize("method", ["ijepa", "dmt_jepa"])
def test_tiny_fit_through_the_cli_then_export_and_reload(method, tmp_path):
    config = str(REPO / "configs" / method / "digits.yaml")
    args = tiny_overrides(tmp_path, TINY_VIT, config) + [
        "--model.init_args.predictor_dim", "16", "--model.init_args.predictor_depth", "1",
        "--model.init_args.predictor_heads", "2", "--model.init_args.masking", json.dumps({"min_keep": 4}),
    ]
    assert main(["fit", *args]) == 0
    metrics = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert {"train/loss", "val/knn_acc", "val/rankme"} <= set(header)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo_method"] == method
    state = checkpoint["state_dict"]
    key = "encoder.backbone.patch_embed.proj.weight"
    assert not torch.equal(state[key], state[f"target_{key}"])  # the target moved by EMA, not by copying
    assert main(["export", str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    loaded = zoo.from_pretrained(tmp_path / "hub")
    reference = type(loaded).load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True).eval()
    assert loaded.method_name == method
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), reference.embed(images))
    # embed is the target encoder's mean-pooled patch features
    assert torch.equal(reference.embed(images), reference.target_encoder(images).mean(1))


def test_hub_round_trip_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    model = IJEPA(encoder=TINY_VIT, **TINY_PREDICTOR).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["method"] == "ijepa" and config["encoder"]["patch_size"] == 1
    loaded = zoo.from_pretrained(tmp_path)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), model.embed(images))


def test_bad_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="loss"):
        IJEPA(encoder=TINY_VIT, loss="l1", **TINY_PREDICTOR)  # type: ignore[arg-type]


def test_a_lightning_checkpoint_of_zoo_0_1_loads_with_its_layout_and_embeds_as_the_hub_folder(tmp_path):
    from safetensors.torch import load_file

    from zoo.hub import load_checkpoint_model

    folder = REPO / "tests" / "fixtures" / "legacy_checkpoints" / "ijepa-fashion-mnist"  # the checkpoint zoo 0.1 shipped
    config = json.loads((folder / "config.json").read_text())
    old = {  # what `zoo fit` of zoo 0.1 wrote: no pos_embed_order, the predictor under its old names
        "state_dict": load_file(folder / "model.safetensors"), "zoo_method": "ijepa", "pytorch-lightning_version": "2.5.0",
        "hyper_parameters": {k: v for k, v in config.items() if k not in ("method", "zoo_version")},
    }  # fmt: skip
    assert "predictor.embed.weight" in old["state_dict"]
    torch.save(old, tmp_path / "old.ckpt")
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = zoo.from_pretrained(folder).embed(images)
        lightning = IJEPA.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu", weights_only=True).eval()
        assert lightning.hparams.pos_embed_order == "yx" and torch.equal(lightning.embed(images), expected)
        model, _ = load_checkpoint_model(tmp_path / "old.ckpt")
        assert torch.equal(model.embed(images), expected)
