"""Every shipped checkpoint in checkpoints/ loads with zoo.from_pretrained and embeds data of its kind."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import zoo

CHECKPOINTS = sorted(p for p in (Path(__file__).resolve().parents[1] / "checkpoints").iterdir() if p.is_dir())


def test_there_is_at_least_one_checkpoint():
    assert CHECKPOINTS


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_embeds(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] in zoo.list_models()
    model = zoo.from_pretrained(folder)
    # every card reports held-out results, as Hugging Face model-index entries of the pretrained model
    results = model.training_record()["results"]
    assert any(r["model"] == "pretrained" and r["split"] == "test" for r in results)
    assert ModelCard.load(folder / "README.md").data.eval_results
    if model.input_key == "image":
        images = torch.randint(0, 256, (4, config["encoder"]["in_chans"], 28, 28), dtype=torch.uint8)
        with torch.no_grad():
            features = model.embed(images)
        assert features.shape[0] == 4 and torch.isfinite(features).all()
    elif model.input_key == "features":  # tabular: preprocessed numerics in [0, 1], then category codes
        schema = config["feature_schema"]
        numeric = torch.rand(4, len(schema["numeric"]))
        codes = [torch.randint(0, card, (4, 1)).float() for card in schema["cardinalities"]]
        with torch.no_grad():
            features = model.embed(torch.cat([numeric, *codes], dim=1))
        assert features.shape == (4, config["encoder"]["dim"]) and torch.isfinite(features).all()
    elif model.input_key == "skeleton":
        from zoo.data.skeleton import normalize_skeletons, resample_frames
        from zoo.data.skeleton_generator import generate_actions

        layout = model.encoder.layout
        if layout.name == "ntu25":  # generated actions, preprocessed as the datamodule does
            data, _ = generate_actions(4, seed=0, max_frames=16)
            skeletons = torch.from_numpy(normalize_skeletons(resample_frames(data, 16), layout))
        else:
            skeletons = torch.randn(4, model.encoder.in_channels, 16, layout.num_joints, 2)
        with torch.no_grad():
            features = model.embed(skeletons)
        assert features.shape == (4, model.feature_dim) and torch.isfinite(features).all()
    elif model.input_key == "audio":
        # one second of noise at the encoder's rate; audio–text models also embed captions into the shared space
        rate = config.get("audio_encoder", {}).get("log_mel", {}).get("sample_rate", 16000)
        waves = torch.randn(3, rate, generator=torch.Generator().manual_seed(0)) * 0.1
        with torch.no_grad():
            features = model.embed(waves)
            assert features.shape[0] == 3 and torch.isfinite(features).all()
            if hasattr(model, "text_space"):
                audio, text = model.audio_space(waves), model.text_space(["a slow soft piano melody", "loud brass"])
                assert audio.shape[1] == text.shape[1] and torch.isfinite(text).all()
