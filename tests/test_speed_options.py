"""The speed options users can turn on: channels_last and torch.compile (method init args, applied in place by the
base class), fused optimizers (dispatched by device), activation checkpointing of ViT and timm encoders."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import TINY_ENCODER
from tests.method_cases import CASES, TINY_VIT, take
from zoo.encoders.image import ImageEncoder
from zoo.encoders.vit import ViTEncoder


def _loss(model, batch) -> torch.Tensor:
    torch.manual_seed(1)
    return model.ssl_step(batch).loss


def test_channels_last_converts_conv_weights_and_inputs_and_keeps_the_loss():
    case = CASES["simclr"]
    rgb = {**TINY_ENCODER, "in_chans": 3}  # with one channel both memory formats are the same
    eager, fast = case.build(encoder=rgb), case.build(encoder=rgb, channels_last=True)
    fast.apply_speed_options()
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not eager.encoder.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    formats = []
    fast.encoder.backbone.conv1.register_forward_pre_hook(
        lambda m, args: formats.append(args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous())
    )
    g = torch.Generator().manual_seed(0)
    batch = {"views": [torch.rand(8, 3, 8, 8, generator=g) for _ in range(2)]}
    assert _loss(fast, batch).item() == pytest.approx(_loss(eager, batch).item(), rel=1e-5)
    assert formats == [True]  # the encoder's input really was channels-last
    assert list(fast.state_dict()) == list(eager.state_dict())


def test_compile_wraps_each_network_in_place_and_gives_the_same_loss_and_gradients():
    # backend "eager": dynamo captures the graphs and guards as for inductor, without code generation (inductor's
    # C++ build takes ~30 s on 2 cores; benchmarks/gpu_check.py times inductor on a GPU). ~4 s on a quiet machine.
    byol = CASES["byol"].build(num_classes=3)
    assert {"encoder", "projector", "predictor", "target_encoder", "target_projector"} <= set(byol.compiled_modules())
    assert "probe" not in byol.compiled_modules()
    case = CASES["simclr"]
    eager, compiled = case.build(), case.build(compile={"backend": "eager"})
    compiled.apply_speed_options()
    names = compiled.compiled_modules()
    assert names == ["encoder", "projector"]
    assert all(getattr(compiled, n)._compiled_call_impl is not None for n in names)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert eager.encoder._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    batch = case.batch(eager, 8, 0)
    losses = [_loss(m, batch) for m in (eager, compiled)]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > frames  # dynamo really captured graphs
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-4)
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def _fit_one_step(model) -> torch.optim.Optimizer:
    case = CASES["simclr"]
    data = case.raw_batch(8, 0)
    loader = DataLoader(range(8), batch_size=8, collate_fn=lambda idx: take(data, torch.tensor(idx)))
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, loader)
    return trainer.optimizers[0]


def test_fused_optimizer_dispatches_by_device_and_lightning_applies_the_options():
    case = CASES["simclr"]
    # default (None): fused on CUDA only, so a CPU run keeps the standard kernels; channels_last through configure_model
    model = case.build(optimizer="adamw", channels_last=True)
    optimizer = _fit_one_step(model)
    assert isinstance(optimizer, torch.optim.AdamW) and not optimizer.defaults["fused"]
    assert model.encoder.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    # explicit True: fused wherever torch has the kernels (torch >= 2.4 has them on CPU for SGD/Adam/AdamW)
    assert case.build(optimizer="sgd", fused_optimizer=True)._fused_optimizer_kwargs("sgd") == {"fused": True}
    assert case.build(optimizer="adamw", fused_optimizer=False)._fused_optimizer_kwargs("adamw") == {}
    # an optimizer without fused kernels: a warning, the standard optimizer, no error
    lars = case.build(optimizer="lars", fused_optimizer=True)
    with pytest.warns(UserWarning, match="no fused kernels"):
        assert lars._fused_optimizer_kwargs("lars") == {}
    fused = case.build(optimizer="sgd", lr=0.1, fused_optimizer=True)
    assert _fit_one_step(fused).defaults["fused"] is True


def test_vit_activation_checkpointing_recomputes_blocks_and_keeps_outputs_and_gradients():
    config = {**TINY_VIT, "depth": 2}
    torch.manual_seed(0)
    plain = ViTEncoder(config)
    torch.manual_seed(0)
    checkpointed = ViTEncoder({**config, "grad_checkpointing": True})
    calls = []
    for block in checkpointed.backbone.blocks:  # counted in forward itself: hooks do not fire in the recomputation
        block.forward = (lambda f: lambda *a, **k: (calls.append(1), f(*a, **k))[1])(block.forward)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    keep = torch.tensor([[0, 3, 5]] * 4)
    out_plain = plain(images, keep)
    out_plain.square().mean().backward()
    out_ckpt = checkpointed(images, keep)
    out_ckpt.square().mean().backward()
    assert len(calls) == 4  # two blocks, each run again in backward
    torch.testing.assert_close(out_ckpt, out_plain)
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad)
    with torch.no_grad():  # no backward to come (the JEPA targets): no checkpointing, blocks run once
        calls.clear()
        checkpointed(images)
        assert len(calls) == 2


def test_image_encoder_grad_checkpointing_reaches_timm():
    tiny = {"name": "vit_tiny_patch16_224", "model_kwargs": {"img_size": 16, "depth": 1}, "grad_checkpointing": True}
    assert ImageEncoder(tiny).backbone.grad_checkpointing is True
    assert ImageEncoder({**tiny, "grad_checkpointing": False}).backbone.grad_checkpointing is False


# ---- every method under channels_last and compile ----------------------------------------------------------------


@pytest.mark.parametrize("case_name", ["byol", "ijepa", "skeleton_mae", "slap"])
def test_every_method_gives_the_same_loss_with_channels_last(case_name):
    # simclr: the test above (RGB, where the layout really differs); here every other network family with 4-D
    # weights (BYOL's two-network CNN, as SwAV's; the ViT's patch embedding, as DMT-JEPA's; the skeleton head's
    # temporal convolution; the audio CNN; T-JEPA has none): weights and image inputs converted, the loss unchanged
    case = CASES[case_name]
    eager, fast = case.build(), case.build(channels_last=True)
    fast.apply_speed_options()
    batch = case.batch(eager, 8, 0)
    assert _loss(fast, batch).item() == pytest.approx(_loss(eager, batch).item(), rel=1e-5, abs=1e-6)
    assert list(fast.state_dict()) == list(eager.state_dict())


@pytest.mark.parametrize("case_name", ["ijepa", "tjepa", "skeleton_mae", "slap"])
def test_compile_runs_each_method_family_with_the_same_loss(case_name):
    # one case per network family besides the CNNs of simclr and byol (above): ViT with masks, tabular transformer,
    # graph network, audio CNN + text transformer; backend "eager": dynamo's capture without code generation
    case = CASES[case_name]
    eager, compiled = case.build(), case.build(compile={"backend": "eager"})
    compiled.apply_speed_options()
    assert compiled.compiled_modules() and all(getattr(compiled, n)._compiled_call_impl is not None for n in compiled.compiled_modules())
    batch = case.batch(eager, 8, 0)
    loss = _loss(compiled, batch)
    assert loss.item() == pytest.approx(_loss(eager, batch).item(), rel=1e-4, abs=1e-6)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in compiled.parameters())


# ---- the cpu_bf16 preset's automatic precision (zoo.speed.CPUPrecision) -----------------------------------------


def test_cpu_precision_auto_follows_the_cpus_bf16_support(monkeypatch):
    import zoo.speed

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not zoo.speed.cpu_has_native_bf16()
    plain = zoo.speed.CPUPrecision()  # emulated bf16 is slower than fp32: never chosen
    assert plain.precision == "32-true" and not plain.channels_last
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    auto = zoo.speed.CPUPrecision()
    assert auto.precision == "bf16-mixed" and auto.channels_last
    assert zoo.speed.CPUPrecision("32-true").precision == "32-true"
    assert not zoo.speed.CPUPrecision(channels_last=False).channels_last
    with pytest.raises(ValueError, match="precision must be one of auto, bf16-mixed, 32-true, got '16-mixed'"):
        zoo.speed.CPUPrecision("16-mixed")


class _Dtypes(L.Callback):
    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        for module in pl_module.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.register_forward_hook(lambda m, args, out: self.dtypes.add(out.dtype))


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_cpu_precision_plugin_trains_under_its_choice(precision):
    from zoo.speed import CPUPrecision

    case = CASES["simclr"]
    model = case.build()
    data = case.raw_batch(8, 0)
    loader = DataLoader(range(8), batch_size=8, collate_fn=lambda idx: take(data, torch.tensor(idx)))
    dtypes = _Dtypes()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False, callbacks=[dtypes],
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, plugins=[CPUPrecision(precision)],
    )  # fmt: skip
    trainer.fit(model, loader)
    assert trainer.precision == precision  # what the training record stores
    bf16 = precision == "bf16-mixed"
    assert (torch.bfloat16 in dtypes.dtypes) == bf16 and torch.isfinite(trainer.callback_metrics["train/loss"])
    conv = model.encoder.backbone.layer1[0].conv1.weight  # 1-channel stem weights are the same in both layouts
    assert conv.is_contiguous(memory_format=torch.channels_last) == bf16 and conv.is_contiguous() != bf16
    assert model.encoder.channels_last == bf16


def test_cpu_bf16_preset_builds_the_automatic_precision(monkeypatch, tmp_path):
    import zoo.speed
    from tests.test_cli import DIGITS
    from tests.test_trainer_presets import PRESETS
    from zoo.cli import ZooCLI

    def trainer(name: str, *extra: str) -> L.Trainer:  # each run in its own directory (a run dir is locked)
        args = ["--config", DIGITS, "--config", str(PRESETS / "cpu_bf16.yaml"), "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path / name), *extra]  # fmt: skip
        return ZooCLI(args=args, run=False).trainer

    # (the fallback to fp32 without native bf16: test_cpu_precision_auto_follows_the_cpus_bf16_support)
    monkeypatch.setattr(zoo.speed, "cpu_has_native_bf16", lambda: True)
    native = trainer("native")
    assert native.precision == "bf16-mixed" and isinstance(native.strategy.precision_plugin, zoo.speed.CPUPrecision)
    assert trainer("forced", "--trainer.plugins.init_args.precision", "32-true").precision == "32-true"
