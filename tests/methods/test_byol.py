import torch

import zoo
from tests.test_cli import REPO, tiny_overrides
from zoo.cli import main
from zoo.losses.byol import symmetric_byol_loss
from zoo.methods.byol import BYOL


def test_ssl_step_is_the_symmetric_loss_of_online_predictions_and_target_projections(tiny_encoder):
    torch.manual_seed(0)
    model = BYOL(encoder=tiny_encoder, projector_hidden_dim=32, projector_out_dim=16, predictor_hidden_dim=32)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    view1, view2 = model.make_inputs({"image": images})["views"]
    out = model.ssl_step({"image": images, "views": [view1, view2]})
    p1 = model.predictor(model.projector(model.encoder(torch.cat([view1, view2]))))
    z = model.target_projector(model.target_encoder(torch.cat([view1, view2])))
    torch.testing.assert_close(out.loss, symmetric_byol_loss(p1[:6], p1[6:], z[:6], z[6:]))


def test_views_are_asymmetric_by_default(tiny_encoder):
    model = BYOL(encoder=tiny_encoder)
    assert model.views[0].config["blur_prob"] == 1.0 and model.views[0].config["solarize_prob"] == 0.0
    assert model.views[1].config["blur_prob"] == 0.1 and model.views[1].config["solarize_prob"] == 0.2


def test_fit_through_the_cli_then_export_and_reload(tiny_encoder, tmp_path):
    config = str(REPO / "configs" / "byol" / "digits.yaml")
    args = tiny_overrides(tmp_path, tiny_encoder, config) + [
        "--model.init_args.projector_hidden_dim", "32", "--model.init_args.predictor_hidden_dim", "32",
    ]
    assert main(["fit", *args]) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo_method"] == "byol"
    online = checkpoint["state_dict"]["encoder.backbone.conv1.weight"]
    target = checkpoint["state_dict"]["target_encoder.backbone.conv1.weight"]
    assert not torch.equal(online, target)  # the target moved by EMA, not by copying
    assert main(["export", str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    loaded = zoo.from_pretrained(tmp_path / "hub")
    assert isinstance(loaded, BYOL)
    reference = BYOL.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True).eval()
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), reference.embed(images))
