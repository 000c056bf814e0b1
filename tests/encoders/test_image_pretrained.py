"""encoder.pretrained: image encoders start from timm weights (a local file offline, or timm's download)."""

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

import zoo
from zoo.encoders import image as image_module
from zoo.encoders.image import ImageEncoder
from zoo.methods.simclr import SimCLR

SMALL = {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1]}


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """An RGB, 10-class timm ResNet state dict (what a timm checkpoint holds) as safetensors."""
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=10, **SMALL)
    path = tmp_path_factory.mktemp("weights") / "resnet.safetensors"
    save_file(reference.state_dict(), str(path))
    return reference, path


def test_a_local_file_initialises_the_backbone_and_is_not_needed_to_reload(timm_weights, tmp_path):
    reference, path = timm_weights
    config = {"name": "resnet18", "in_chans": 1, "model_kwargs": SMALL, "pretrained": str(path)}
    model = SimCLR(encoder=config, projector_hidden_dim=16, projector_out_dim=8)
    backbone = model.encoder.backbone
    assert torch.equal(backbone.layer4[0].conv2.weight, reference.layer4[0].conv2.weight)
    # grey input: timm folds the RGB first conv into one channel; the 10-class classifier is dropped
    assert torch.allclose(backbone.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    model.save_pretrained(tmp_path / "saved")
    path.rename(path.with_suffix(".moved"))  # the saved folder holds the weights; the init file is not read again
    try:
        images = torch.rand(2, 1, 16, 16)
        with torch.no_grad():
            assert torch.equal(zoo.from_pretrained(tmp_path / "saved").embed(images), model.eval().embed(images))
    finally:
        path.with_suffix(".moved").rename(path)


class _RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_bad_files_fail_with_one_line_and_pickled_code_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"name": "resnet18", "in_chans": 1, "model_kwargs": SMALL}
    with pytest.raises(FileNotFoundError, match="encoder.pretrained: .*missing.pt is not a file"):
        ImageEncoder({**config, "pretrained": str(tmp_path / "missing.pt")})
    torch.save({"conv1.weight": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt does not load into timm's resnet18"):
        ImageEncoder({**config, "pretrained": str(tmp_path / "evil.pt")})
    assert not (tmp_path / "PWNED").exists()
    save_file({"conv1.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors does not load into timm's resnet18"):
        ImageEncoder({**config, "pretrained": str(tmp_path / "other.safetensors")})


def test_pretrained_true_offline_fails_fast_with_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(image_module, "hub_unreachable_reason", lambda timeout=3.0: "the Hub cannot be reached (test)")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(ValueError, match="unreachable and they are not in the local cache") as error:
        ImageEncoder({"name": "resnet18", "in_chans": 1, "model_kwargs": SMALL, "pretrained": True})
    assert time.perf_counter() - start < 5 and "\n" not in str(error.value)
    assert constants.HF_HUB_OFFLINE == before  # the offline switch is only held while timm looks for the weights
