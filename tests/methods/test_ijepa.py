import json

import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.test_cli import REPO, tiny_overrides
from zoo.cli import main
from zoo.encoders.vit import gather_tokens
from zoo.losses.jepa import jepa_loss
from zoo.methods.ijepa import IJEPA, JEPAPredictor, gather_blocks
from zoo.nn.block_masking import multi_block_masks

# 8×8 digits with patch 1: an 8×8 grid of pixel tokens, a few thousand parameters
TINY_VIT = {"img_size": 8, "patch_size": 1, "in_chans": 1, "embed_dim": 16, "depth": 1, "num_heads": 2}
TINY_PREDICTOR = {"predictor_dim": 16, "predictor_depth": 1, "predictor_heads": 2}


def test_gather_blocks_indexes_each_image_and_block():
    tokens = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)
    blocks = torch.tensor([[[0, 1], [3, 4]], [[2, 2], [0, 4]]])  # [T=2, B=2, K=2]
    out = gather_blocks(tokens, blocks)[..., 0]
    assert out.tolist() == [[[0, 1], [8, 9]], [[2, 2], [5, 9]]]


def test_predictor_shapes_and_that_target_blocks_do_not_see_each_other():
    torch.manual_seed(0)
    predictor = JEPAPredictor(16, (8, 8), predictor_dim=8, depth=1, num_heads=2).eval()
    masks = multi_block_masks(3, (8, 8), torch.Generator().manual_seed(0), {"min_keep": 4})
    context = torch.randn(3, masks.context.shape[1], 16)
    out = predictor(context, masks.context, masks.targets)
    assert out.shape == (*masks.targets.shape, 16)
    # block 0 alone gives the same prediction: one sequence per (block, image)
    alone = predictor(context, masks.context, masks.targets[:1])
    torch.testing.assert_close(alone[0], out[0])
    with pytest.raises(ValueError, match="disagree"):
        predictor(context[:2], masks.context, masks.targets)


def test_ssl_step_is_smooth_l1_between_predictions_and_layer_normed_target_blocks():
    torch.manual_seed(0)
    model = IJEPA(encoder=TINY_VIT, masking={"min_keep": 4}, **TINY_PREDICTOR)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    (view,) = model.make_views(images)
    masks = model.make_masks(5)
    out = model.ssl_step({"image": images, "views": [view], "masks": masks})
    full = model.target_encoder(view)
    targets = gather_blocks(F.layer_norm(full, (16,)), masks.targets)
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


def test_gather_tokens_rejects_a_mismatched_index():
    with pytest.raises(ValueError, match="index"):
        gather_tokens(torch.zeros(2, 5, 3), torch.zeros(3, 2, dtype=torch.long))
