"""`zoo export --format timm`: the image encoder as a timm folder that `timm.create_model("local-dir:...")` loads."""

import json
import shutil
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

import zoo
from tests.conftest import TINY_ENCODER
from tests.method_cases import CASES
from zoo.cli import main as zoo_main
from zoo.export.timm import export_timm

REPO = Path(__file__).resolve().parents[1]
SIMCLR = REPO / "checkpoints" / "simclr-fashion-mnist"


def _standard_stem_copy(folder: Path, tmp_path: Path) -> Path:
    """The shipped folder with the standard ResNet stem: the max-pool has no weights, so the same tensors and training
    record load into it, and timm can express it (the shipped stem without max-pool it cannot)."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config["encoder"]["stem_pool"] = True
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_simclr_checkpoint_through_timm_and_its_own_transform(tmp_path, capsys):
    out = tmp_path / "timm"
    source = _standard_stem_copy(SIMCLR, tmp_path)
    assert zoo_main(["export", "--format", "timm", str(source), str(out)]) == 0
    assert "resnet18" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    assert config["architecture"] == "resnet18" and config["num_classes"] == 0
    assert cfg["input_size"] == [1, 28, 28] and cfg["mean"] == [0.286] and cfg["std"] == [0.353] and "tag" not in cfg
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # no pickle
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    # a user's path: PIL images through timm's own eval transform built from the exported pretrained_cfg
    transform = create_transform(**resolve_data_config({}, model=model))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = torch.stack([transform(Image.fromarray(img[0].numpy(), mode="L")) for img in images])
    with torch.no_grad():
        got, expected = model(batch), zoo.from_pretrained(source).embed(images)
    assert got.shape == expected.shape == (6, 256)
    assert (got - expected).abs().max() <= 1e-5


def test_jepa_vit_maps_onto_timm_vision_transformer(tmp_path):
    source = tmp_path / "ijepa"
    zoo_model = CASES["ijepa"].build().eval()
    zoo_model.save_pretrained(source)
    report = export_timm(source, tmp_path / "timm")
    assert report["parity_max_abs_diff"] <= 1e-5
    model = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    assert type(model).__name__ == "VisionTransformer" and model.cls_token is None and model.pretrained_cfg["input_size"] == (1, 8, 8)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        diff = (model((x - 0.5) / 0.5) - zoo_model.embed(x)).abs().max()
    assert diff <= 1e-5


def test_encoders_timm_cannot_express_fail_with_one_line(tmp_path, capsys):
    source = tmp_path / "simclr"
    CASES["simclr"].build().save_pretrained(source)  # the tiny case uses the small-image stem
    assert zoo_main(["export", "--format", "timm", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "small_image_stem" in err and not (tmp_path / "out").exists()
    no_pool = tmp_path / "no_pool"
    CASES["simclr"].build(encoder={**TINY_ENCODER, "small_image_stem": False, "stem_pool": False}).save_pretrained(no_pool)
    assert zoo_main(["export", "--format", "timm", str(no_pool), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stem_pool: false" in err and not (tmp_path / "out").exists()
    # a tabular model has no image encoder
    tjepa = tmp_path / "tjepa"
    CASES["tjepa"].build().save_pretrained(tjepa)
    assert zoo_main(["export", "--format", "timm", str(tjepa), str(tmp_path / "out")]) == 2
    assert "timm export covers image encoders" in capsys.readouterr().err
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["no_pool", "simclr", "tjepa"])


def test_push_format_timm_pushes_the_checked_model_with_timm(tmp_path, monkeypatch, capsys):
    import timm.models

    source = tmp_path / "ijepa"
    zoo_model = CASES["ijepa"].build().eval()
    zoo_model.save_pretrained(source)
    pushed = {}

    def fake_push(model, repo_id, **kwargs):  # timm's push_to_hf_hub, without the network
        pushed.update(model=model, repo_id=repo_id, **kwargs)
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(timm.models, "push_to_hf_hub", fake_push)
    assert zoo_main(["push", "--format", "timm", str(source), "my-org/ijepa-timm"]) == 0
    assert "my-org/ijepa-timm/commit/0" in capsys.readouterr().out
    assert pushed["repo_id"] == "my-org/ijepa-timm" and pushed["safe_serialization"] is True
    assert tuple(pushed["data_config"]["input_size"]) == (1, 8, 8)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert (pushed["model"].eval()((x - 0.5) / 0.5) - zoo_model.embed(x)).abs().max() <= 1e-5
