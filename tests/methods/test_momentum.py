from unittest import mock

import lightning as L
import pytest
import torch
from torch import nn

from tests.method_cases import with_inputs
from zoo.methods.byol import BYOL
from zoo.methods.momentum import ema_update
from zoo.schedules import ema_tau


def test_ema_update_covers_parameters_and_buffers():
    torch.manual_seed(0)
    online, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    online(torch.randn(8, 3) * 4 + 2)  # moves running stats and the batch counter
    with torch.no_grad():
        online.weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, tau=0.9)
    for name in ("weight", "bias", "running_mean", "running_var"):
        expected = 0.9 * before[name] + 0.1 * online.state_dict()[name]
        torch.testing.assert_close(target.state_dict()[name], expected)
    assert target.num_batches_tracked == online.num_batches_tracked == 1  # integer buffer copied


def tiny_byol(tiny_encoder, **kwargs):
    return BYOL(encoder=tiny_encoder, projector_hidden_dim=32, projector_out_dim=16, predictor_hidden_dim=32, **kwargs)


def test_targets_are_frozen_copies_outside_the_optimizer(tiny_encoder):
    model = tiny_byol(tiny_encoder, num_classes=10)
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    for (name, p), (_, q) in zip(model.encoder.named_parameters(), model.target_encoder.named_parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    optimised = {id(p) for g in model.parameter_groups() for p in g["params"]}
    assert not optimised & {id(p) for p in model.target_encoder.parameters()}
    assert not optimised & {id(p) for p in model.target_projector.parameters()}


def test_gradient_reaches_online_networks_only(tiny_encoder):
    model = tiny_byol(tiny_encoder)
    model.ssl_step(with_inputs(model, {"image": torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)})).loss.backward()
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert all(p.grad is not None for n, p in model.encoder.named_parameters())
    assert all(p.grad is None for p in model.target_encoder.parameters())


@pytest.mark.parametrize("accumulate", [1, 2])
def test_one_ema_update_per_optimizer_step(tiny_encoder, accumulate):
    from zoo.data.images import ImageDataModule

    model = tiny_byol(tiny_encoder, optimizer="sgd", lr=0.05, warmup_epochs=0, ema_tau_base=0.9)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=4, limit_val_batches=0, accumulate_grad_batches=accumulate,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    taus = []
    real_update = model.update_targets

    def spy():
        taus.append(model.current_tau())
        real_update()

    with mock.patch.object(model, "update_targets", side_effect=spy):
        trainer.fit(model, ImageDataModule(dataset="digits", batch_size=32, val_size=100, knn_bank_size=0))
    steps = 4 // accumulate
    assert trainer.global_step == steps and len(taus) == steps
    # τ_k for optimizer steps k = 0 … K−1 (BYOL's schedule), not per micro-batch
    assert taus == pytest.approx([ema_tau("cosine", k, steps, 0.9) for k in range(steps)])
    assert not torch.equal(model.encoder.backbone.conv1.weight, model.target_encoder.backbone.conv1.weight)


def test_targets_round_trip_through_the_hub(tiny_encoder, tmp_path):
    import zoo

    model = tiny_byol(tiny_encoder)
    with torch.no_grad():
        for p in model.target_projector.parameters():
            p.add_(1.0)  # make the target differ from the online copy
    model.save_pretrained(tmp_path / "byol")
    loaded = zoo.from_pretrained(tmp_path / "byol")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert len(loaded._ema_pairs) == 2 and loaded._ema_pairs[0][0] is loaded.target_encoder


def test_invalid_tau():
    with pytest.raises(ValueError, match="ema_tau"):
        BYOL(ema_tau_base=1.2)


def test_inference_only_export_leaves_out_the_heads_and_targets_and_rebuilds_them(tiny_encoder, tmp_path):
    import zoo
    from zoo.hub import WEIGHTS_NAME

    model = tiny_byol(tiny_encoder)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.5)  # trained online weights: the target (a copy of the initial weights) now differs
    assert model.hub_omittable_modules() == ["projector", "predictor", "target_encoder", "target_projector"]
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "small", inference_only=True)
    encoder_bytes = sum(p.numel() * 4 for p in model.encoder.state_dict().values())
    assert (tmp_path / "small" / WEIGHTS_NAME).stat().st_size < encoder_bytes + 64 * 1024  # the encoder and little else
    assert "Inference export" in (tmp_path / "small" / "README.md").read_text()

    loaded = zoo.from_pretrained(tmp_path / "small")
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.embed(images), model.eval().embed(images))
    for key, value in model.state_dict().items():
        if not key.startswith(("target_", "projector.", "predictor.")):
            assert torch.equal(loaded.state_dict()[key], value), key
    # the targets restart from the online networks, as BYOL initialises them (the projector freshly initialised)
    for target, online in loaded._ema_pairs:
        for t, o in zip(target.state_dict().values(), online.state_dict().values()):
            assert torch.equal(t, o)


def test_a_file_that_leaves_out_only_the_targets_loads_and_keeps_its_layout_when_rewritten(tiny_encoder, tmp_path):
    """Inference exports written before the heads could be left out omit only the EMA targets."""
    import json

    from safetensors import safe_open

    import zoo
    from zoo.hub import WEIGHTS_NAME, rewrite_record

    model = tiny_byol(tiny_encoder)
    model.write_pretrained(tmp_path / "m", omit=["target_encoder", "target_projector"])
    loaded = zoo.from_pretrained(tmp_path / "m")
    for key, value in model.state_dict().items():
        if not key.startswith("target_"):
            assert torch.equal(loaded.state_dict()[key], value), key
    rewrite_record(tmp_path / "m", notes="rewritten")
    with safe_open(str(tmp_path / "m" / WEIGHTS_NAME), framework="pt") as f:
        assert json.loads(f.metadata()["omitted_modules"]) == ["target_encoder", "target_projector"]


def test_a_file_that_omits_what_the_model_cannot_rebuild_is_refused(tiny_encoder, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    import zoo
    from zoo.hub import WEIGHTS_NAME, PretrainedLoadError

    tiny_byol(tiny_encoder).save_pretrained(tmp_path / "m", inference_only=True)
    path = tmp_path / "m" / WEIGHTS_NAME
    state = {k: v for k, v in load_file(path).items() if not k.startswith("encoder.")}
    save_file(state, path, metadata={"format": "pt", "omitted_modules": json.dumps(["projector", "predictor", "target_encoder", "target_projector", "encoder"])})
    with pytest.raises(PretrainedLoadError, match=r"leaves out \['encoder'\]"):
        zoo.from_pretrained(tmp_path / "m")


def test_under_fsdp_the_ema_runs_on_gathered_full_weights(tiny_encoder, monkeypatch):
    """FSDP keeps a slice of one flat parameter per rank, and an online weight's slice and its target's are not the
    same elements: the update must run inside summon_full_params (FSDP itself needs a GPU, so the wrapper is a
    stand-in here and the context is recorded)."""
    import contextlib
    from types import SimpleNamespace

    from torch.distributed.fsdp import FullyShardedDataParallel

    import zoo.methods.momentum as momentum

    events = []

    @contextlib.contextmanager
    def summon(module, writeback=False, **kwargs):
        events.append(("gather", module, writeback))
        yield
        events.append(("scatter", module))

    real_update = momentum.ema_update
    monkeypatch.setattr(FullyShardedDataParallel, "summon_full_params", staticmethod(summon))
    monkeypatch.setattr(momentum, "ema_update", lambda *a: (events.append(("ema",)), real_update(*a)))
    wrapped = FullyShardedDataParallel.__new__(FullyShardedDataParallel)  # isinstance without a GPU
    model = tiny_byol(tiny_encoder)
    model._trainer = SimpleNamespace(strategy=SimpleNamespace(model=wrapped), estimated_stepping_batches=10, global_step=0)
    model.update_targets()
    assert events == [("gather", wrapped, True), ("ema",), ("ema",), ("scatter", wrapped)]
    model._trainer = SimpleNamespace(strategy=SimpleNamespace(model=model), estimated_stepping_batches=10, global_step=0)
    events.clear()
    model.update_targets()  # DDP / one device: no gathering
    assert events == [("ema",), ("ema",)]


def test_save_and_push_uploads_the_inference_only_folder_as_saved(tiny_encoder, monkeypatch, tmp_path):
    import os

    from safetensors import safe_open

    uploaded = {}

    class RepoUrl(str):
        repo_id = "org/byol-small"

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        with safe_open(os.path.join(folder_path, "model.safetensors"), "pt") as f:
            uploaded["keys"] = set(f.keys())
        return "commit-url"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", lambda self, repo_id, **kw: RepoUrl(repo_id))
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", fake_upload_folder)
    model = tiny_byol(tiny_encoder)
    assert model.save_pretrained(tmp_path / "small", push_to_hub=True, repo_id="org/byol-small", inference_only=True) == "commit-url"
    assert uploaded["keys"] and not any(k.startswith("target_") for k in uploaded["keys"])
