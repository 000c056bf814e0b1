"""hubconf.py: torch.hub entries for the shipped checkpoints and any zoo folder."""

import importlib.util
from pathlib import Path

import torch

import zoo

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_checkpoint_has_an_entry():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # what torch.hub.list shows (it has no source="local")
    entries = {f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")}
    shipped = {p.parent.name.replace("-", "_") for p in (REPO / "checkpoints").glob("*/config.json")}
    assert len(shipped) >= 10 and entries == shipped | {"zoo_model"}
    assert "checkpoints/simclr-fashion-mnist" in hubconf.simclr_fashion_mnist.__doc__
    assert {"torch", "timm", "lightning", "safetensors"} <= set(hubconf.dependencies)


def test_simclr_through_torch_hub_embeds_as_from_pretrained(tmp_path):
    hub_model = torch.hub.load(str(REPO), "simclr_fashion_mnist", source="local")
    direct = zoo.from_pretrained(REPO / "checkpoints" / "simclr-fashion-mnist")
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(hub_model.embed(images), direct.embed(images))
    # the generic entry takes any zoo folder
    direct.save_pretrained(tmp_path / "copy")
    copy = torch.hub.load(str(REPO), "zoo_model", str(tmp_path / "copy"), source="local")
    with torch.no_grad():
        assert torch.equal(copy.embed(images), direct.embed(images))
