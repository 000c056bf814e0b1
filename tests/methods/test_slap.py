"""SLAP: the step is the paper's loss on online predictions and target projections; accumulation equals a larger
batch; the InfoNCE variant; a tiny fit through the CLI, export and Hub reload."""

import copy
import json
from pathlib import Path

import pytest
import torch

import zoo
from tests.method_cases import CAPTIONS, audio_batch
from tests.method_cases import SLAP_TINY as TINY
from zoo.cli import main
from zoo.data.music_captions import build
from zoo.losses.clip import symmetric_info_nce
from zoo.losses.slap import slap_loss
from zoo.methods.slap import SLAP

REPO = Path(__file__).resolve().parents[2]
# SLAP's tiny configuration, captions and batches are those of the cross-method tests
batch = audio_batch


def test_ssl_step_is_the_slap_loss_of_online_predictions_and_target_projections():
    torch.manual_seed(0)
    model = SLAP(**TINY, predictor_dropout=0.0)
    b = batch()
    views = model.make_inputs(b)["views"]
    torch.manual_seed(1)
    out = model.ssl_step({**b, "views": views})
    mels, ids = torch.cat(views["audio"]), torch.cat(views["text"])
    torch.manual_seed(1)  # the text encoder has no dropout here; same RNG state anyway
    qa = model.audio_predictor(model.audio_projector(model.audio_encoder.features(mels))).split(4)
    qt = model.text_predictor(model.text_projector(model.text_encoder(ids))).split(4)
    za = model.target_audio_projector(model.target_audio_encoder.features(mels)).split(4)
    zt = model.target_text_projector(model.target_text_encoder(ids)).split(4)
    torch.testing.assert_close(out.loss, slap_loss(qa, qt, za, zt, 0.5)[0])
    assert set(out.logs) >= {"audio_to_text", "text_to_audio", "audio_intra", "text_intra"}


def test_gradient_accumulation_equals_one_larger_batch():
    """No cross-sample terms (per-sample norms, no dropout): k micro-batches give the big batch's update."""
    torch.manual_seed(0)
    tiny = {**TINY, "audio_encoder": {**TINY["audio_encoder"], "norm": "group"}}
    big = SLAP(**tiny, predictor_dropout=0.0, text_projector_batch_norm=False)
    small = copy.deepcopy(big)
    b = batch(n=8, seed=3)
    views = big.make_inputs(b)["views"]
    big.ssl_step({"views": views}).loss.backward()
    k = 4
    for i in range(k):
        part = slice(2 * i, 2 * i + 2)
        micro = {"audio": [v[part] for v in views["audio"]], "text": [v[part] for v in views["text"]]}
        (small.ssl_step({"views": micro}).loss / k).backward()
    for (name, p), q in zip(big.named_parameters(), small.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-4, msg=name)
    # SGD: the update is the gradient itself (Adam would amplify float noise in exactly-zero gradients, e.g. the
    # attention key bias, to ±lr)
    for model in (big, small):
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.update_targets()
    for (name, p), q in zip(big.state_dict().items(), small.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-4, msg=name)


def test_infonce_variant_has_no_predictors_or_targets_and_uses_clip_loss():
    torch.manual_seed(0)
    model = SLAP(**TINY, loss="infonce")
    assert not any(n.startswith(("target_", "audio_predictor", "text_predictor")) for n, _ in model.named_parameters())
    b = batch()
    views = model.make_inputs(b)["views"]
    out = model.ssl_step({"views": views})
    za = model.audio_projector(model.audio_encoder.features(torch.cat(views["audio"]))).split(4)
    zt = model.text_projector(model.text_encoder(torch.cat(views["text"]))).split(4)
    expected = (symmetric_info_nce(za[0], zt[0], model.log_scale) + symmetric_info_nce(za[1], zt[1], model.log_scale)) / 2
    torch.testing.assert_close(out.loss, expected)


def test_clear_errors():
    with pytest.raises(ValueError, match="loss must be one of"):
        SLAP(**{**TINY, "loss": "triplet"})
    with pytest.raises(RuntimeError, match="needs a vocabulary"):
        SLAP(**{**TINY, "vocabulary": None}).embed_text(["a piano"])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("slap")
    build(root / "data", num_clips=24, seconds=1.0, sample_rate=8000, captions_per_clip=2, test_fraction=0.3, renderer="numpy")
    args = [
        "fit", "--config", str(REPO / "configs" / "slap" / "tiny.yaml"),
        "--data.init_args.manifest", str(root / "data" / "train.csv"),
        "--data.init_args.test_manifest", str(root / "data" / "test.csv"),
        "--data.init_args.val_size", "4", "--data.init_args.batch_size", "4",
        "--trainer.limit_train_batches", "2",
        "--trainer.default_root_dir", str(root),
        "--trainer.callbacks", json.dumps([{
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True},
        }]),
        "--trainer.logger", json.dumps({
            "class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root), "name": "logs"},
        }),
    ]  # fmt: skip
    assert main(args) == 0
    return root


def test_fit_through_the_cli_logs_audio_text_metrics_and_stores_the_vocabulary(fitted):
    header = (fitted / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train/loss", "train/audio_to_text", "val/a2t_R@1", "val/t2a_median_rank", "val/zero_shot_acc",
                   "val/gap_centroid", "val/gap_linear_acc", "val/knn_acc"):  # fmt: skip
        assert column in header
    checkpoint = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)
    hp = checkpoint["hyper_parameters"]
    assert checkpoint["zoo_method"] == "slap" and hp["vocabulary"][:3] == ["[pad]", "[unk]", "[mask]"]
    assert hp["class_names"] and len(hp["class_names"]) == hp["num_classes"]
    state = checkpoint["state_dict"]
    assert not torch.equal(state["text_encoder.token_embedding.weight"], state["target_text_encoder.token_embedding.weight"])


def test_export_and_hub_round_trip(fitted, tmp_path):
    assert main(["export", str(fitted / "checkpoints" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["method"] == "slap" and "piano" in config["vocabulary"]
    loaded = zoo.from_pretrained(tmp_path / "hub")
    reference = SLAP.load_from_checkpoint(fitted / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True).eval()
    audio = torch.randn(3, 8000) * 0.1
    with torch.no_grad():
        assert torch.equal(loaded.embed(audio), reference.embed(audio))
        assert torch.equal(loaded.embed_text(CAPTIONS), reference.embed_text(CAPTIONS))
        assert torch.equal(loaded.audio_space(audio), reference.audio_space(audio))
