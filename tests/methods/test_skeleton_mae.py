"""SkeletonMAE: masking, reconstruction loss, embedding, Hub round trip, and `zoo fit` end to end (fine-tuning: tests/downstream/test_finetune.py)."""

import json
from pathlib import Path

import pytest
import torch

import zoo
from tests.method_cases import with_inputs
from zoo.cli import main
from zoo.data.skeleton_generator import generate_actions, write_actions_dataset
from zoo.methods.skeleton_mae import SkeletonMAE

REPO = Path(__file__).resolve().parents[2]
TINY = {"embed_dim": 8, "depth": 2, "velocity": True}


def skeletons(n=6, frames=8, seed=0):
    data, labels = generate_actions(n, seed=seed, max_frames=frames)
    x = torch.from_numpy(data)
    return x - x[:, :, :1, 20:21, :1] * (x != 0).any(1, keepdim=True), torch.from_numpy(labels)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SkeletonMAE(encoder=TINY, num_classes=12, mask_parts=["right_arm", "right_leg"])


def test_masked_joints_inputs_cannot_reach_the_encoder(model):
    x, _ = skeletons()
    model.eval()
    features = model.encoder.input_features(x)[:, 0]  # [B, T, V, F], one person
    mask = model.make_inputs({"skeleton": x})["masks"]
    masked_joints = mask[0].nonzero().flatten()
    assert set(masked_joints.tolist()) == {9, 10, 11, 23, 24, 17, 18, 19}  # NTU right arm + right leg

    def encode(f):
        tokens = model.encoder.tokens(f)
        masked = model.mask_tokens(tokens, mask)
        # exactly the masked joints carry the [MASK] vector, in every frame
        is_token = (masked == model.mask_token).all(-1)
        assert torch.equal(is_token, mask[:, None, :].expand_as(is_token))
        return model.encoder.encode_tokens(masked)

    reference = encode(features)
    hidden = features.clone()
    hidden[:, :, masked_joints] += 5.0  # change what the masked joints hold: the encoding must not move
    assert torch.equal(encode(hidden), reference)
    visible = features.clone()
    visible[:, :, 0] += 5.0  # a visible joint: it must
    assert not torch.allclose(encode(visible), reference)


def test_loss_is_sce_on_present_masked_joints_and_trains_every_part(model):
    x, _ = skeletons()
    x[:, :, :, 10] = 0.0  # right wrist missing everywhere: masked but nothing to reconstruct
    out = model.ssl_step(with_inputs(model, {"skeleton": x}))
    present = x[..., 0].ne(0).any(1)  # [B, T, V]; the generator also drops joints at random
    scored = present[:, :, [9, 11, 23, 24, 17, 18, 19]].sum().item()  # right arm + leg, less the wrist
    assert out.logs["masked_fraction"].item() == pytest.approx(scored / present.numel(), abs=1e-6)
    assert out.features.shape == (6, 8 * 4) and torch.isfinite(out.loss)
    out.loss.backward()
    for name in ("mask_token", "encoder.joint_embed.weight", "encoder.layers.0.nn.0.weight", "decoder_mlp.2.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_perfect_decoder_gives_zero_loss(model, monkeypatch):
    x, _ = skeletons()
    features = model.encoder.input_features(x)[:, 0]
    monkeypatch.setattr(model, "decode", lambda encoded, mask: features)  # a decoder that reconstructs exactly
    assert model.ssl_step(with_inputs(model, {"skeleton": x})).loss.item() == pytest.approx(0.0, abs=1e-6)


def test_embedding_pools_present_persons_only(model):
    model.eval()
    x, _ = skeletons(n=3)
    two = torch.zeros(*x.shape[:4], 2)
    two[..., 0] = x[..., 0]
    emb_one = model.embed(x[..., :1].clone())
    emb_two_slots = model.embed(two)  # empty second slot: same embedding
    torch.testing.assert_close(emb_one, emb_two_slots)
    assert emb_one.shape == (3, 32) and model.input_key == "skeleton"


def test_options_and_bad_config():
    for kwargs in ({"mask_strategy": "random_joints", "mask_ratio": 0.4, "target": "embedding", "remask": False},
                   {"mask_strategy": "random_parts", "num_mask_parts": 3, "sce_beta": 1.0, "embed_segments": 1}):  # fmt: skip
        m = SkeletonMAE(encoder=TINY, **kwargs)
        loss = m.ssl_step(with_inputs(m, {"skeleton": skeletons()[0]})).loss
        assert torch.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match="unknown body part"):
        SkeletonMAE(encoder=TINY, mask_parts=["tail"])
    with pytest.raises(ValueError, match="unknown skeleton encoder key"):
        SkeletonMAE(encoder={"width": 3})
    with pytest.raises(ValueError, match=r"expects \[B, C=3, T, V=25, M\]"):
        SkeletonMAE(encoder=TINY).embed(torch.zeros(2, 2, 8, 17, 1))


def test_coco_layout_model():
    m = SkeletonMAE(encoder={**TINY, "layout": "coco17", "in_channels": 2}, mask_parts=["left_arm"])
    x = torch.randn(4, 2, 6, 17, 2)
    assert torch.isfinite(m.ssl_step(with_inputs(m, {"skeleton": x})).loss) and m.embed(x).shape == (4, 32)


def test_hub_round_trip_gives_identical_embeddings(model, tmp_path):
    x, _ = skeletons()
    model.train()
    model.ssl_step(with_inputs(model, {"skeleton": x}))  # move BN statistics off their init
    model.eval()
    model.save_pretrained(tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["method"] == "skeleton_mae" and config["mask_parts"] == ["right_arm", "right_leg"]
    loaded = zoo.from_pretrained(tmp_path / "hub")
    assert isinstance(loaded, SkeletonMAE)
    assert torch.equal(loaded.embed(x), model.embed(x))


def test_zoo_fit_then_export_and_load(tmp_path):
    data = tmp_path / "data"
    write_actions_dataset(data, train=96, test=36, seed=0, max_frames=12)
    args = [
        "fit", "--config", str(REPO / "configs" / "skeleton_mae" / "generated.yaml"),
        "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger", json.dumps({"class_path": "lightning.pytorch.loggers.CSVLogger",
                                        "init_args": {"save_dir": str(tmp_path), "name": "logs"}}),
        "--trainer.callbacks", json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                            "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}]),
        "--model.init_args.encoder", json.dumps({**TINY, "layout": "ntu25", "in_channels": 3}),
        "--data.init_args.path", str(data), "--data.init_args.num_frames", "8", "--data.init_args.batch_size", "16",
        "--data.init_args.val_size", "16", "--data.init_args.knn_bank_size", "64",
    ]  # fmt: skip
    assert main(args) == 0
    metrics = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    for column in ("train/loss", "val/knn_acc", "val/probe_acc", "val/rankme"):
        assert column in header
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert checkpoint["zoo_method"] == "skeleton_mae" and checkpoint["hyper_parameters"]["num_classes"] == 12
    assert main(["export", str(tmp_path / "ckpt" / "last.ckpt"), str(tmp_path / "hub")]) == 0
    loaded = zoo.from_pretrained(tmp_path / "hub")
    reference = SkeletonMAE.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True).eval()
    x, _ = skeletons(n=5)
    assert torch.equal(loaded.embed(x), reference.embed(x))
    assert main(["data", "build", "skeleton-actions", str(tmp_path / "d2"), "--train", "12", "--test", "12", "--frames", "8"]) == 0
    assert (tmp_path / "d2" / "train_data.npy").is_file()
    assert main(["data", "nothing"]) == 2


def test_ntu60_recipe_runs_on_mmskeleton_named_files(tmp_path):
    from zoo.data.skeleton import write_ntu_split

    for split, seed in (("train", 0), ("val", 1)):  # mmskeleton names the test split "val"
        data, labels = generate_actions(40, seed=seed, max_frames=16)
        write_ntu_split(tmp_path, split, data, labels)
        (tmp_path / f"{split}_data.npy").rename(tmp_path / f"{split}_data_joint.npy")
    args = [
        "fit", "--config", str(REPO / "configs" / "skeleton_mae" / "ntu60_xsub.yaml"), "--trainer.fast_dev_run", "1",
        "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.callbacks", "[]",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        "--model.init_args.encoder", json.dumps({**TINY, "velocity": False}), "--data.init_args.path", str(tmp_path),
        "--data.init_args.num_frames", "8", "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
        "--data.init_args.val_size", "8", "--data.init_args.knn_bank_size", "16",
    ]  # fmt: skip
    assert main(args) == 0
