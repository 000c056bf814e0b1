"""Every shipped checkpoint in checkpoints/ loads with zoo.from_pretrained and embeds data of its kind."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import zoo

CHECKPOINTS = sorted(p for p in (Path(__file__).resolve().parents[1] / "checkpoints").iterdir() if p.is_dir())
OLD_CONFIGS = Path(__file__).resolve().parent / "fixtures" / "old_configs"
#: config.json files of shipped checkpoints as saved before the encoder keys took timm's names (zoo.deprecation)
OLD_NAMES = {
    "slap-music-captions": {"projector_dim", "text_encoder.dim", "text_encoder.heads"},
    "skeleton_mae-generated": {"encoder.hidden_dim", "encoder.num_layers"},
    "tjepa-adult": {"encoder.dim", "encoder.heads"},
    "tjepa-california": {"encoder.dim", "encoder.heads"},
}


def _keys(config: dict) -> set[str]:
    return set(config) | {f"{k}.{sub}" for k, v in config.items() if isinstance(v, dict) for sub in v}


def test_there_is_at_least_one_checkpoint():
    assert CHECKPOINTS


def test_the_shipped_checkpoints_stay_under_60_mb_in_all():
    # the repository's budget for checkpoints/ (weights, cards and figures): a clone must stay quick to make
    total = sum(f.stat().st_size for f in CHECKPOINTS[0].parent.rglob("*") if f.is_file())
    assert total < 60_000_000, f"checkpoints/ holds {total / 1e6:.1f} MB; export with --inference-only or drop a checkpoint"


@pytest.mark.parametrize("name", sorted(OLD_NAMES))
def test_a_config_with_the_old_names_loads_with_one_warning_per_name_and_embeds_the_same(name, tmp_path):
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / name
    for file in shipped.iterdir():
        (tmp_path / file.name).symlink_to(file)
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text((OLD_CONFIGS / f"{name}.json").read_text())
    old = OLD_NAMES[name]
    assert old <= _keys(json.loads((tmp_path / "config.json").read_text()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = zoo.from_pretrained(tmp_path)
    renames = {str(w.message) for w in caught if issubclass(w.category, FutureWarning)}
    assert len(renames) == len(old) and all(any(f"'{n.split('.')[-1]}' is now" in r for r in renames) for n in old), renames
    current = zoo.from_pretrained(shipped)
    assert model.init_args() == current.init_args()  # the old names mean the same settings
    x = {
        "features": lambda: torch.rand(3, model.encoder.num_columns),
        "skeleton": lambda: torch.randn(3, model.encoder.in_channels, 8, model.encoder.layout.num_joints, 2),
        "audio": lambda: torch.randn(3, 8000) * 0.1,
    }[model.input_key]()
    with torch.no_grad():
        assert torch.equal(current.embed(x), model.embed(x))


@pytest.mark.parametrize("folder", CHECKPOINTS, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_embeds(folder, tmp_path):
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] in zoo.list_models()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # shipped configs use the current names
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
        assert features.shape == (4, model.encoder.num_features) and torch.isfinite(features).all()
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


GOLDEN = Path(__file__).resolve().parent / "golden" / "shipped_jepa_embeddings.safetensors"
# the JEPA checkpoints zoo 0.1 shipped (since replaced in checkpoints/ by runs of the current recipes), kept to test loading
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_checkpoints"


@pytest.mark.parametrize("name", ["ijepa-fashion-mnist", "dmt_jepa-fashion-mnist", "tjepa-adult", "tjepa-california"])
def test_shipped_jepa_checkpoints_embed_as_the_version_that_trained_them(name):
    """The JEPAs' position tables and predictor names changed after these were saved: loading migrates them
    (``migrate_config``/``migrate_state_dict``), and the embeddings are those zoo 0.1 computed (tests/golden, written
    by zoo at commit clipkg; equal to the bit on the machine that wrote them, within float noise elsewhere)."""
    from safetensors.torch import load_file

    from zoo.encoders.image import normalize_images
    from zoo.nn.tokens import sincos_2d

    golden = load_file(GOLDEN)
    model = zoo.from_pretrained(LEGACY / name if (LEGACY / name).is_dir() else CHECKPOINTS[0].parent / name)
    inputs = golden[f"{name}/input"]
    with torch.no_grad():
        embedding = model.embed(inputs)
    torch.testing.assert_close(embedding, golden[f"{name}/embedding"], rtol=0, atol=1e-6)
    if model.input_key == "image":
        # the layout the weights were trained with ("yx": row first), bit for bit in this process
        encoder = model.target_encoder
        assert model.hparams.pos_embed_order == "yx"
        table = sincos_2d(encoder.grid_size, encoder.num_features, "xy")
        half = encoder.num_features // 2
        transposed = torch.cat([table[:, half:], table[:, :half]], dim=1)
        with torch.no_grad():
            x = encoder.backbone.patch_embed(normalize_images(inputs, encoder.mean, encoder.std)) + transposed
            assert torch.equal(embedding, encoder.backbone.norm(encoder.backbone.blocks(x)).mean(1))
