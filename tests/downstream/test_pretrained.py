"""Pretrained.load: zoo folders and timm sources, the one datamodule rebuild (and moving its data), deterministic
random-init baselines, and the export → reload check of report.py."""

from __future__ import annotations

import pytest
import torch

from tests.downstream import save_tiny_simclr
from zoo.data.base import DataError
from zoo.downstream.pretrained import (
    Pretrained,
    SourceError,
    build_datamodule,
    relocate_data,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_simclr(tmp_path_factory.mktemp("hub") / "simclr")


def _weights_digest(model: torch.nn.Module) -> list[float]:
    return [float(v.double().sum()) for v in model.state_dict().values() if v.is_floating_point()]


def test_load_a_folder_and_rebuild_its_training_data(folder):
    p = Pretrained.load(folder)
    assert p.name == "pretrained" and p.modality == "image" and p.record["data"]["dataset"] == "digits"
    dm = p.datamodule()
    assert type(dm).__name__ == "ImageDataModule" and dm is p.datamodule()  # built once, shared by the protocols
    assert dm.hparams.val_size == 100
    emb, labels = p.embed_all("test", limit=10)
    assert emb.shape == (10, p.model.feature_dim) and labels.dtype == torch.long
    assert p.embed_all("test", limit=10)[0] is emb
    assert Pretrained.load(folder).datamodule(val_size=50).hparams.val_size == 50


def test_relocate_keeps_file_names_and_refuses_a_missing_folder(tmp_path):
    assert relocate_data("ImageDataModule", {"dataset": "fashion-mnist", "data_dir": "/machine/that/trained/it"}, tmp_path)["data_dir"] == str(tmp_path)
    old = {"manifest": "/old/box/captions/train.csv", "test_manifest": "/old/box/captions/test.csv"}
    assert relocate_data("AudioTextDataModule", old, tmp_path) == {"manifest": str(tmp_path / "train.csv"), "test_manifest": str(tmp_path / "test.csv")}
    assert relocate_data("SkeletonDataModule", {"path": "/old/runs/skeleton-actions"}, tmp_path)["path"] == str(tmp_path)
    assert relocate_data("SkeletonDataModule", {"path": "/old/ntu/xsub.npz"}, tmp_path)["path"] == str(tmp_path / "xsub.npz")
    assert relocate_data("TabularDataModule", {"dataset": "adult", "data_dir": None}, tmp_path)["data_dir"] == str(tmp_path)
    with pytest.raises(DataError, match="no-such: no such folder"):
        relocate_data("ImageDataModule", {}, tmp_path / "no-such")
    with pytest.raises(DataError, match="no training record naming the data"):
        build_datamodule({})
    with pytest.raises(DataError, match="--data nope: not a YAML file, a class path or a zoo dataset"):
        build_datamodule(None, "nope")


def test_random_init_is_isolated_from_the_global_rng_and_repeatable(folder):
    p = Pretrained.load(folder)
    state = torch.random.get_rng_state()
    a = p.random_init(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # it consumed nothing of the caller's stream
    torch.rand(1000)  # draws before it do not change it either
    b = p.random_init(0)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert _weights_digest(p.random_init(1).model) != _weights_digest(a.model)
    assert _weights_digest(a.model) != _weights_digest(p.model)
    assert a.name == "random-init" and a.datamodule() is p.datamodule()


def test_random_init_does_not_depend_on_the_thread_count(folder):
    p = Pretrained.load(folder)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _weights_digest(p.random_init(0).model)
    finally:
        torch.set_num_threads(threads)
    assert _weights_digest(p.random_init(0).model) == one


def test_timm_sources_run_through_the_same_protocols(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from zoo.downstream.protocols import run

    p = Pretrained.load("timm:test_resnet", data="digits", val_size=100, knn_bank_size=100)
    assert p.name == "timm:test_resnet" and p.model.in_chans == 1 and p.modality == "image"
    (entry,) = run(p, "knn", k=20, limit_train=200, limit_test=50)
    assert entry["model"] == "timm:test_resnet" and entry["dataset"] == "digits" and 0 <= entry["value"] <= 1
    # a weights file: loaded strictly into the architecture (the first conv adapted from RGB like timm does)
    source = timm.create_model("test_resnet", num_classes=0)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = Pretrained.load(f"timm:test_resnet:{tmp_path / 'w.safetensors'}", data="digits", val_size=100, knn_bank_size=100)
    conv = next(k for k in source.state_dict() if k.endswith("weight") and source.state_dict()[k].ndim == 4)
    assert torch.allclose(loaded.model.backbone.state_dict()[conv], source.state_dict()[conv].sum(1, keepdim=True))
    # a timm folder (config.json + model.safetensors, as save_for_hf writes it)
    from timm.models import save_for_hf

    save_for_hf(source, str(tmp_path / "folder"), safe_serialization=True)
    from_folder = Pretrained.load(tmp_path / "folder", data="digits", val_size=100, knn_bank_size=100)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(from_folder.model.embed(x), loaded.model.embed(x))
    with pytest.raises(SourceError, match="has no training record; pass --data"):
        Pretrained.load("timm:test_resnet")
    with pytest.raises(SourceError, match="timm:no_such_net: not a timm model name"):
        Pretrained.load("timm:no_such_net", data="digits", val_size=100, knn_bank_size=100)
    with pytest.raises(SourceError, match="is not a file"):
        Pretrained.load(f"timm:test_resnet:{tmp_path / 'missing.safetensors'}", data="digits", val_size=100, knn_bank_size=100)


def test_export_checks_the_reload_bit_for_bit(folder, tmp_path, monkeypatch):
    import zoo
    from zoo.downstream.report import ExportMismatch, export_with_results

    p = Pretrained.load(folder)
    results = [{"protocol": "knn", "metric": "accuracy", "value": 0.5, "std": None, "seeds": None, "model": "pretrained",
                "dataset": "digits", "split": "test", "settings": {"k": 20}}]  # fmt: skip
    out = tmp_path / "export"
    out.mkdir()
    export_with_results(p, results, out)
    assert zoo.from_pretrained(out).training_record()["results"] == results
    real = zoo.from_pretrained

    def drifted(directory, **kwargs):
        model = real(directory, **kwargs)
        with torch.no_grad():
            next(model.parameters()).add_(1e-6)
        return model

    monkeypatch.setattr(zoo, "from_pretrained", drifted)
    with pytest.raises(ExportMismatch, match="differ from the evaluated model's"):
        export_with_results(p, results, tmp_path / "export2")


def test_data_names_take_either_spelling_and_an_unknown_one_is_one_line():
    from zoo.downstream.pretrained import data_spec
    from zoo.errors import DataError

    assert data_spec("fashion_mnist") == data_spec("fashion-mnist") == ("ImageDataModule", {"dataset": "fashion-mnist"})
    assert data_spec("breast-cancer") == ("TabularDataModule", {"dataset": "breast_cancer"})
    with pytest.raises(DataError, match="--data fashion: not a YAML file, a class path or a zoo dataset; datasets: "):
        data_spec("fashion")
