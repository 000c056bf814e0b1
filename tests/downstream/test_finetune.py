"""FineTuner for every modality: linear probe / fine-tune / freeze-then-unfreeze, the method's own head, the
random-init and raw-input baselines, the SGD + step recipe, run_finetune's records, `zoo finetune`, the starter."""

import importlib.util
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY_ENCODER
from tests.method_cases import CASES, SLAP_TINY
from zoo.cli import main
from zoo.data.images import ImageDataModule
from zoo.downstream.finetune import FineTuner, run_finetune
from zoo.methods.simclr import SimCLR
from zoo.schedules import warmup_step_decay

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pretrained") / "simclr-tiny"
    model = SimCLR(encoder=TINY_ENCODER, projector_out_dim=8, num_classes=10)
    # a random encoder whose BN statistics are those of the data (random features, properly scaled): informative
    # enough for a probe to beat chance clearly, without a pre-training run in the test
    images = torch.from_numpy(ImageDataModule(dataset="digits", val_size=0).arrays("train")[0])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        model.train()
        model.embed(images)
    model.save_pretrained(folder)
    return folder


def digits(**kwargs) -> ImageDataModule:
    return ImageDataModule(dataset="digits", **{"batch_size": 32, "val_size": 300, "knn_bank_size": 0, **kwargs})


def fit(model: FineTuner, epochs: int = 1, callbacks=(), data=None) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=4, limit_val_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=list(callbacks))  # fmt: skip
    trainer.fit(model, datamodule=data or digits())
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


class Modes(L.Callback):
    """(encoder in train mode?, any SSL-model module in train mode outside the encoder?) at every training step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        encoder = set(module.encoder.modules())
        others = any(m.training for m in module.backbone.modules() if m not in encoder)
        self.seen.append((all(m.training for m in encoder), any(m.training for m in encoder), others))


def test_linear_probe_learns_with_a_really_frozen_encoder(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="linear", lr=0.05)
    data = digits()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        before_loss = F.cross_entropy(model.eval()(batch["image"]), batch["label"])
    encoder, head, modes = snapshot(model.encoder), snapshot(model.head), Modes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, epochs=2, callbacks=[modes], data=data)
    assert not [w for w in caught if "in eval mode" in str(w.message)]  # frozen by design: no warning about it
    assert not changed(encoder, model.encoder)  # weights and BN running statistics
    assert changed(head, model.head)
    assert modes.seen and all(m == (False, False, False) for m in modes.seen)  # BN/dropout in eval mode throughout
    assert not any(p.requires_grad for p in model.backbone.parameters())
    with torch.no_grad():
        assert F.cross_entropy(model.eval()(batch["image"]), batch["label"]) < before_loss


def test_finetune_trains_the_encoder_at_its_own_lr_but_not_the_ssl_heads(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="finetune", head="mlp", lr=0.01, encoder_lr_scale=0.1)
    encoder, projector, modes = snapshot(model.encoder), snapshot(model.backbone.projector), Modes()
    trainer = fit(model, callbacks=[modes])
    assert changed(encoder, model.encoder)
    assert not changed(projector, model.backbone.projector)
    # from_pretrained hands out the model in eval mode and Lightning keeps modules' modes: the encoder is put in
    # train mode (BN batch statistics, dropout), the unused SSL heads stay in eval mode
    assert modes.seen and all(m == (True, True, False) for m in modes.seen)
    groups = trainer.optimizers[0].param_groups
    head_ids = {id(p) for p in model.head.parameters()}
    lrs = [(id(g["params"][0]) in head_ids, g["initial_lr"]) for g in groups]
    assert lrs == [(True, 0.01), (False, pytest.approx(0.001)), (False, pytest.approx(0.001))]


def test_freeze_then_unfreeze_switches_at_its_epoch(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="freeze_then_unfreeze", unfreeze_epoch=1, lr=0.01)
    initial, modes = snapshot(model.encoder), Modes()
    after_epoch: list[bool] = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            after_epoch.append(changed(initial, module.encoder))

    fit(model, epochs=2, callbacks=[Record(), modes])
    assert after_epoch == [False, True]
    assert [m[0] for m in modes.seen] == [False] * 4 + [True] * 4


def test_layer_decay_gives_deeper_layers_larger_learning_rates(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="finetune", lr=0.1, layer_decay=0.5)
    groups = model._encoder_groups()
    lrs = sorted({round(g["lr"], 8) for g in groups})
    assert len(lrs) >= 3 and max(lrs) == pytest.approx(0.1) and min(lrs) < 0.1 * 0.5**2
    covered = {id(p) for g in groups for p in g["params"]}
    assert covered == {id(p) for p in model.encoder.parameters()}


def test_the_sgd_step_recipe_follows_its_schedule(pretrained):
    """SkeletonMAE's fine-tuning recipe as options: Nesterov SGD, warm-up, lr ÷10 at 90/110 and 100/110 of the run."""
    model = FineTuner(str(pretrained), num_classes=10, mode="finetune", optimizer="sgd", lr=0.1, weight_decay=5e-4,
                      lr_schedule="step", warmup_epochs=2, label_smoothing=0.1)  # fmt: skip
    model.trainer = SimpleNamespace(estimated_stepping_batches=110, train_dataloader=object(), num_training_batches=10,
                                    accumulate_grad_batches=1)  # fmt: skip
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"]
    lrs = []
    for _ in range(110):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1 * warmup_step_decay(s, 20, [90, 100]) for s in range(110)])
    assert lrs[19] == pytest.approx(0.1) and lrs[95] == pytest.approx(0.01) and lrs[105] == pytest.approx(0.001)


def test_bad_settings_are_named(pretrained):
    src = str(pretrained)
    for kwargs, message in [
        ({"mode": "probe"}, "unknown fine-tuning mode 'probe'"),
        ({"num_classes": None}, "num_classes"),
        ({"baseline": "random"}, "unknown baseline 'random'; choose one of random-init, raw-input"),
        ({"baseline": "raw-input", "mode": "finetune"}, "raw-input baseline has no encoder to train"),
        ({"lr_schedule": "poly"}, "unknown lr_schedule 'poly'"),
        ({"head": "method"}, "no fine-tuning head of its own"),
    ]:
        with pytest.raises(ValueError, match=message):
            FineTuner(src, **{"num_classes": 10, **kwargs})
    with pytest.raises(ValueError, match="needs pretrained"):
        FineTuner(num_classes=10)


def test_random_init_baseline_is_the_same_architecture_with_seeded_weights(pretrained):
    pre = FineTuner(str(pretrained), num_classes=10)
    a = FineTuner(str(pretrained), num_classes=10, baseline="random-init", init_seed=1)
    b = FineTuner(str(pretrained), num_classes=10, baseline="random-init", init_seed=1)
    c = FineTuner(str(pretrained), num_classes=10, baseline="random-init", init_seed=2)
    key = "backbone.conv1.weight"
    weights = [m.encoder.state_dict()[key] for m in (pre, a, b, c)]
    assert torch.equal(weights[1], weights[2])
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[3])
    assert a.encoder.state_dict().keys() == pre.encoder.state_dict().keys()


@pytest.mark.parametrize("case_name", ["byol", "ijepa", "tjepa", "skeleton_mae", "slap"])
@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_every_modality_encoder_fine_tunes(case_name, mode, tmp_path):
    """Images (CNN with EMA target, ViT target encoder), tables, skeletons, audio: linear trains only the head,
    finetune trains the encoder that embed() runs and nothing else of the pretrained model."""
    case = CASES[case_name]
    case.build().save_pretrained(tmp_path / case_name)
    model = FineTuner(pretrained=str(tmp_path / case_name), num_classes=3, mode=mode, lr=0.1)
    batch = case.raw_batch(6, 0)
    model.train()
    F.cross_entropy(model(batch[model.input_key]), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    others = [n for n, p in model.backbone.named_parameters() if id(p) not in encoder_ids and p.grad is not None]
    assert all(p.grad is not None for p in model.head.parameters())
    assert others == []  # SSL heads, predictors and targets never train here
    if mode == "linear":
        assert encoder_grads == [] and not model.encoder.training
    else:
        assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads) and model.encoder.training


def test_method_head_is_the_papers_own_strl_head_for_skeleton_mae(tmp_path):
    from zoo.encoders.skeleton import STRLHead

    CASES["skeleton_mae"].build().save_pretrained(tmp_path / "mae")
    model = FineTuner(str(tmp_path / "mae"), num_classes=12, mode="finetune", head="method", head_kwargs={"num_frames": 8})
    assert isinstance(model.head, STRLHead)
    batch = CASES["skeleton_mae"].raw_batch(4, 0)
    model.train()
    logits = model(batch["skeleton"])
    assert logits.shape == (4, 12)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.backbone.decoder_mlp.parameters())  # the MAE decoder never trains
    with pytest.raises(ValueError, match="needs num_frames"):
        FineTuner(str(tmp_path / "mae"), num_classes=12, head="method")


# ---- tiny labelled data of every modality, with a matching tiny zoo model ------------------------------------------
def image_case(tmp_path, pretrained):
    return str(pretrained), digits(batch_size=16, val_size=200)


def table_case(tmp_path, pretrained):
    from zoo.data.tabular import TabularDataModule

    data = TabularDataModule(dataset="breast_cancer", batch_size=64, knn_bank_size=0)
    torch.manual_seed(0)
    tiny = {"dim": 16, "depth": 1, "heads": 2, "ff_dim": 16, "num_reg_tokens": 2}
    CASES["tjepa"].build(feature_schema=data.feature_schema, encoder=tiny).save_pretrained(tmp_path / "tjepa")
    return str(tmp_path / "tjepa"), data


def skeleton_case(tmp_path, pretrained):
    from zoo.data.skeleton import SkeletonDataModule
    from zoo.data.skeleton_generator import write_actions_dataset

    write_actions_dataset(tmp_path / "actions", train=64, test=24, seed=0, max_frames=8, num_persons=1)
    CASES["skeleton_mae"].build().save_pretrained(tmp_path / "mae")
    data = SkeletonDataModule(str(tmp_path / "actions"), data_format="generated", num_frames=8, num_persons=1,
                              batch_size=16, val_size=16, knn_bank_size=0)  # fmt: skip
    return str(tmp_path / "mae"), data


def audio_case(tmp_path, pretrained):
    import soundfile as sf

    from zoo.data.audio_text import AudioTextDataModule

    rows = {"train": [], "test": []}
    for i in range(16):  # low and high tones, the two classes
        label = "low" if i % 2 else "high"
        freq = (220 if label == "low" else 1760) * (1 + 0.05 * (i // 2))
        t = np.arange(4000) / 8000
        sf.write(str(tmp_path / f"c{i}.wav"), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 8000)
        rows["test" if i >= 12 else "train"].append(f"c{i}.wav,a {label} tone,{label}")
    for split, lines in rows.items():
        (tmp_path / f"{split}.csv").write_text("\n".join(["audio_path,caption,label", *lines]) + "\n")
    CASES["slap"].build().save_pretrained(tmp_path / "slap")
    data = AudioTextDataModule(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), sample_rate=8000,
                               clip_seconds=0.5, batch_size=4, knn_bank_size=0)  # fmt: skip
    assert SLAP_TINY["audio_encoder"]["log_mel"]["sample_rate"] == 8000
    return str(tmp_path / "slap"), data


def load_starter():
    spec = importlib.util.spec_from_file_location("finetune_starter", REPO / "examples" / "finetune_starter.py")
    starter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(starter)
    return starter


@pytest.mark.parametrize("mode", ["linear", "finetune"])
@pytest.mark.parametrize("make_case", [image_case, table_case, skeleton_case, audio_case], ids=lambda f: f.__name__)
def test_the_starter_fine_tunes_every_modality(make_case, mode, tmp_path, pretrained):
    """examples/finetune_starter.py's finetune() on tiny data of each modality: the training loss on a fixed batch
    falls and the test accuracy comes back."""
    import zoo

    L.seed_everything(0, verbose=False)
    src, data = make_case(tmp_path, pretrained)
    model = zoo.from_pretrained(src)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    losses = []

    class Loss(L.Callback):
        def on_train_start(self, trainer, module):
            with torch.no_grad():
                losses.append(F.cross_entropy(module.eval()(batch[module.input_key]), batch["label"]).item())

        def on_train_end(self, trainer, module):
            self.on_train_start(trainer, module)

    trainer_args = {"accelerator": "cpu", "limit_train_batches": 4, "limit_val_batches": 0, "callbacks": [Loss()],
                    "enable_progress_bar": False, "enable_model_summary": False}  # fmt: skip
    # 32 steps: enough for the probe's BatchNorm running statistics to settle (momentum 0.1)
    accuracy = load_starter().finetune(model, data, epochs=8, trainer_args=trainer_args, mode=mode, lr=0.05,
                                       encoder_lr_scale=0.1)  # fmt: skip
    assert losses[1] < losses[0] and 0.0 <= accuracy <= 1.0


def test_raw_input_baseline_reads_the_flattened_inputs(tmp_path, pretrained):
    src, data = skeleton_case(tmp_path, pretrained)
    model = FineTuner(src, num_classes=12, baseline="raw-input", lr=0.05)
    assert model.backbone is None and model.head is None  # sized from the data when the fit starts
    fit(model, epochs=1, data=data)
    assert model.hparams.input_shape == [3, 8, 25, 1]
    assert model.head[1].in_features == 3 * 8 * 25 * 1
    x = data.dataset("test").skeletons[:4]
    assert model.eval()(torch.as_tensor(x)).shape == (4, 12)
    with pytest.raises(ValueError, match=r"raw-input baseline: batch\['skeleton'\] has shape \(4, 3, 8, 25, 2\)"):
        model(torch.zeros(4, 3, 8, 25, 2))


def test_run_finetune_returns_one_record_per_model(pretrained):
    import zoo

    model = zoo.from_pretrained(pretrained)
    before = snapshot(model)
    trainer = {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 0, "accelerator": "cpu"}
    results = run_finetune(model, digits(batch_size=16, val_size=200), baselines=["raw-input"], seeds=[0, 1],
                           trainer=trainer, mode="linear", lr=0.05)  # fmt: skip
    assert [r["model"] for r in results] == ["pretrained", "raw-input"]
    for r in results:
        assert r["protocol"] == "finetune" and r["metric"] == "accuracy" and r["dataset"] == "digits"
        assert r["split"] == "test" and r["seeds"] == [0, 1] and 0 <= r["value"] <= 1 and r["std"] > 0
        assert r["settings"]["mode"] == "linear" and r["settings"]["max_epochs"] == 2
    assert results[1]["value"] > 0.5  # a linear classifier on 8×8 digit pixels; chance: 0.1
    json.dumps(results)  # the record is JSON
    assert not changed(before, model)  # every run trained a copy
    with pytest.raises(ValueError, match="unknown baseline 'raw'"):
        run_finetune(model, digits(), baselines=["raw"])


def test_zoo_finetune_command(pretrained, tmp_path, capsys):
    """`zoo finetune --pretrained DIR --data <DataModule> --data.<arg> ...` (here its raw-input baseline) with a
    datamodule whose evaluation loaders start with a kNN bank: the held-out loader's metrics are the ones reported;
    a bad --pretrained is one line."""
    args = ["finetune", "--pretrained", str(pretrained), "--data", "ImageDataModule", "--data.dataset", "digits",
            "--data.batch_size", "64", "--data.val_size", "200", "--data.knn_bank_size", "300",
            "--model.baseline", "raw-input", "--model.lr", "0.05", "--trainer.max_epochs", "2",
            "--trainer.limit_train_batches", "6", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test/acc:")[1].split()[0])
    assert 0.5 < accuracy <= 1.0  # a linear classifier on 8×8 digit pixels; chance: 0.1
    assert main(["finetune", "--pretrained", str(tmp_path / "missing"), "--config",
                 str(REPO / "configs" / "finetune" / "digits.yaml")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "missing" in err and len(err.strip().splitlines()) == 1


def test_no_import_cycle_between_cli_and_downstream():
    import ast

    for path in (REPO / "zoo" / "downstream").glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in modules if m == "zoo.cli" or m.startswith("zoo.cli.")], path
