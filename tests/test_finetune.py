"""The fine-tune starter: linear probe / fine-tune / freeze-then-unfreeze on a pretrained encoder."""

from pathlib import Path

import lightning as L
import pytest
import torch

from zoo.cli import main
from zoo.data.images import ImageDataModule
from zoo.finetune import FineTuner
from zoo.methods.simclr import SimCLR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    from tests.conftest import TINY_ENCODER

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


def fit(model: FineTuner, epochs: int = 1, callbacks=()) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=4, limit_val_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=list(callbacks))
    trainer.fit(model, datamodule=ImageDataModule(dataset="digits", batch_size=32, val_size=300, knn_bank_size=0))
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


def test_linear_probe_trains_only_the_head_and_keeps_bn_statistics(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="linear", lr=0.05)
    encoder, head = snapshot(model.encoder), snapshot(model.head)
    fit(model)
    assert not changed(encoder, model.encoder)  # weights and BN running statistics
    assert changed(head, model.head)


def test_finetune_trains_the_encoder_but_not_the_ssl_heads(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="finetune", head="mlp", lr=0.01)
    encoder, projector = snapshot(model.encoder), snapshot(model.backbone.projector)
    modes = []

    class Modes(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append((pl_module.encoder.training, pl_module.backbone.projector.training))

    fit(model, callbacks=[Modes()])
    assert changed(encoder, model.encoder)
    assert not changed(projector, model.backbone.projector)
    # from_pretrained hands out the model in eval mode and Lightning keeps modules' modes: the encoder must be put in
    # train mode (BN batch statistics, dropout), the unused SSL heads stay in eval mode
    assert modes and all(m == (True, False) for m in modes)
    bn = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.equal(bn.running_mean, encoder[next(k for k in encoder if k.endswith("running_mean"))])


def test_freeze_then_unfreeze_switches_at_its_epoch(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="freeze_then_unfreeze", unfreeze_epoch=1, lr=0.01)
    initial = snapshot(model.encoder)
    after_epoch: list[bool] = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            after_epoch.append(changed(initial, module.encoder))

    fit(model, epochs=2, callbacks=[Record()])
    assert after_epoch == [False, True]


def test_layer_decay_gives_deeper_layers_larger_learning_rates(pretrained):
    model = FineTuner(str(pretrained), num_classes=10, mode="finetune", lr=0.1, layer_decay=0.5)
    model.trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False)  # for the schedule length
    model.trainer.fit_loop.setup_data = lambda: None
    groups = model._encoder_groups()
    lrs = sorted({round(g["lr"], 8) for g in groups})
    assert len(lrs) >= 3 and max(lrs) == pytest.approx(0.1) and min(lrs) < 0.1 * 0.5**2
    covered = {id(p) for g in groups for p in g["params"]}
    assert covered == {id(p) for p in model.encoder.parameters()}


def test_bad_settings_are_named(pretrained):
    with pytest.raises(ValueError, match="unknown fine-tuning mode 'probe'"):
        FineTuner(str(pretrained), num_classes=10, mode="probe")
    with pytest.raises(ValueError, match="num_classes"):
        FineTuner(str(pretrained), num_classes=None)


def test_zoo_finetune_command(pretrained, tmp_path, capsys):
    args = ["finetune", "--pretrained", str(pretrained), "--config", str(REPO / "configs" / "finetune" / "digits.yaml"),
            "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--model.mode", "finetune",
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks.init_args.dirpath", str(tmp_path / "ckpt")]
    assert main(args) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test/acc:")[1].split()[0])
    assert 0.5 < accuracy <= 1.0  # fine-tuning on digits gets far above chance (0.1) within 2 epochs
    assert main(["finetune", "--pretrained", str(tmp_path / "missing"), "--config",
                 str(REPO / "configs" / "finetune" / "digits.yaml")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("case_name", ["byol", "ijepa", "dmt_jepa", "swav", "tjepa", "skeleton_mae", "slap"])
@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_every_modality_encoder_fine_tunes(case_name, mode, tmp_path):
    """The starter works for every method's encoder: images, tables, skeletons, audio; linear trains only the head,
    finetune trains the encoder that embed() runs and nothing else of the pretrained model."""
    import torch.nn.functional as F

    from tests.method_cases import CASES

    case = CASES[case_name]
    case.build().save_pretrained(tmp_path / case_name)
    model = FineTuner(pretrained=str(tmp_path / case_name), num_classes=3, mode=mode, lr=0.1)
    batch = case.raw_batch(6, 0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    model.train()
    loss = F.cross_entropy(model(batch[model.input_key]), labels)
    loss.backward()
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    others = [n for n, p in model.backbone.named_parameters() if id(p) not in encoder_ids and p.grad is not None]
    assert all(p.grad is not None for p in model.head.parameters())
    assert others == []  # SSL heads, predictors and targets never train here
    if mode == "linear":
        assert encoder_grads == []
    else:
        assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads)


def test_the_example_starter_fine_tunes_on_the_data_of_the_training_record(tmp_path):
    import importlib.util

    from tests.conftest import TINY_ENCODER

    spec = importlib.util.spec_from_file_location("finetune_starter", REPO / "examples" / "finetune_starter.py")
    starter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(starter)
    torch.manual_seed(0)
    model = SimCLR(encoder=TINY_ENCODER, projector_out_dim=8)
    model._training_record = {"data": {"class": "ImageDataModule", "dataset": "digits", "val_size": 200, "knn_bank_size": 300}}
    model.save_pretrained(tmp_path / "pretrained")
    args = ["--mode", "finetune", "--epochs", "4", "--labels", "1000", "--lr", "0.05"]
    accuracy = starter.main(["--pretrained", str(tmp_path / "pretrained"), *args])
    assert accuracy > 0.6  # 10 classes: chance is 0.1 (measured 0.88)


def test_zoo_finetune_with_data_on_the_command_line_and_a_knn_bank_loader(pretrained, tmp_path, capsys):
    """`zoo finetune --pretrained DIR --data <DataModule> --data.<arg> ...`, the issue's form, with a datamodule whose
    evaluation loaders start with a kNN bank: the held-out loader's metrics are the ones reported."""
    args = ["finetune", "--pretrained", str(pretrained), "--data", "ImageDataModule", "--data.dataset", "digits",
            "--data.batch_size", "64", "--data.val_size", "200", "--data.knn_bank_size", "300",
            "--model.mode", "finetune", "--model.lr", "0.01", "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test/acc:")[1].split()[0])
    assert 0.5 < accuracy <= 1.0  # chance is 0.1


def test_method_head_is_the_papers_own_strl_head_for_skeleton_mae(tmp_path):
    import torch.nn.functional as F

    from tests.method_cases import CASES
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


def test_a_method_without_its_own_head_says_so(pretrained):
    with pytest.raises(ValueError, match="no fine-tuning head of its own"):
        FineTuner(str(pretrained), num_classes=10, head="method")
