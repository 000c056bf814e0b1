"""MODEL_CARD.md is generated from the checkpoints' structured records (`zoo cards`) and must match them; the one-time
migration turns the legacy prose metric keys into results entries without touching the weights."""

import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.cards import MigrationError, legacy_result, migrate_checkpoint, render_model_card, summarize_checkpoint
from zoo.cli import main as zoo_main
from zoo.hub import format_result, read_record, rewrite_record

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted(p for p in (REPO / "checkpoints").iterdir() if p.is_dir())
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_cards"  # two shipped cards and records before migration


def test_model_card_is_up_to_date_with_the_checkpoints(capsys):
    args = ["cards", "--checkpoints", str(REPO / "checkpoints"), "--output", str(REPO / "MODEL_CARD.md"), "--check"]
    assert zoo_main(args) == 0, "MODEL_CARD.md is out of date: run `zoo cards`"
    assert "is up to date" in capsys.readouterr().out


def test_every_checkpoint_has_structured_results_in_its_card_and_in_model_card():
    text = (REPO / "MODEL_CARD.md").read_text()
    for folder in CHECKPOINTS:
        results = read_record(folder)["results"]
        pretrained = [r for r in results if r["model"] == "pretrained"]
        assert pretrained, folder.name
        first = pretrained[0]
        assert f"| {folder.name} | {first['protocol']} | {first['metric']} |" in text
        assert f"| {format_result(first)} |" in text
        # the card's model-index holds exactly the pretrained entries, by name (protocol + metric), never prose
        card = ModelCard.load(folder / "README.md")
        index = sorted((r.metric_name, r.metric_value, r.dataset_split) for r in card.data.eval_results)
        assert index == sorted((f"{r['protocol']} {r['metric']}", r["value"], r["split"]) for r in pretrained)
        assert "(" not in " ".join(name for name, _, _ in index)


def test_cards_writes_and_detects_drift_from_the_records_not_the_card_text(tmp_path, capsys):
    source = REPO / "checkpoints" / "skeleton_mae-generated"  # the smallest shipped checkpoint
    folder = tmp_path / "checkpoints" / source.name
    shutil.copytree(source, folder)
    output = tmp_path / "MODEL_CARD.md"
    args = ["cards", "--checkpoints", str(tmp_path / "checkpoints"), "--output", str(output)]
    assert zoo_main([*args, "--check"]) == 1 and "out of date" in capsys.readouterr().out
    assert zoo_main(args) == 0 and zoo_main([*args, "--check"]) == 0
    assert output.read_text() == render_model_card(tmp_path / "checkpoints")
    (folder / "README.md").write_text("edited by hand")  # MODEL_CARD.md reads the record, never the card's text
    assert zoo_main([*args, "--check"]) == 0
    results = [{**r, "value": 0.5} if (r["model"], r["protocol"]) == ("pretrained", "knn") else r for r in read_record(folder)["results"]]
    rewrite_record(folder, results=results)
    assert zoo_main([*args, "--check"]) == 1
    knn = {r["model"]: r for r in results if r["protocol"] == "knn"}
    row = f"| 0.5 | {format_result(knn['random-init'])} | {format_result(knn['raw-input'])} |"
    assert zoo_main(args) == 0 and row in output.read_text()


def test_a_folder_without_weights_and_a_missing_folder_are_one_line(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="broken: no model.safetensors"):
        summarize_checkpoint(tmp_path / "broken")
    assert zoo_main(["cards", "--checkpoints", str(tmp_path), "--output", str(tmp_path / "M.md")]) == 2
    assert zoo_main(["cards", "--checkpoints", str(tmp_path / "nope"), "--output", str(tmp_path / "M.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"zoo cards: error: {tmp_path / 'nope'}: not a folder (--checkpoints: the folder of Hub checkpoint folders)"
    assert not (tmp_path / "M.md").exists()


# ---- the one-time migration of legacy prose keys ----------------------------------------------------------------


def _legacy_copy(tmp_path, name):
    """A shipped checkpoint as it was before the migration: its weights, the legacy record (no "results") and card."""
    folder = tmp_path / name
    shutil.copytree(REPO / "checkpoints" / name, folder)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        metadata = {k: v for k, v in (f.metadata() or {}).items() if k != "results"}
    metadata["training_record"] = (LEGACY / name / "training_record.json").read_text()
    save_file(load_file(folder / "model.safetensors"), str(folder / "model.safetensors"), metadata=metadata)
    shutil.copy(LEGACY / name / "README.md", folder / "README.md")
    return folder


def test_migration_of_prose_keys_in_the_record_keeps_weights_and_embeddings(tmp_path, capsys):
    folder = _legacy_copy(tmp_path, "skeleton_mae-generated")
    tensors, config = load_file(folder / "model.safetensors"), (folder / "config.json").read_bytes()
    skeletons = torch.randn(4, 3, 16, 25, 1, generator=torch.Generator().manual_seed(0))
    before = zoo.from_pretrained(folder).embed(skeletons)
    assert "results" not in read_record(folder)

    assert zoo_main(["cards", "--migrate", "--checkpoints", str(tmp_path), "--output", str(tmp_path / "M.md")]) == 0
    assert f"{folder}: 11 results entries from legacy metric keys" in capsys.readouterr().out
    after = load_file(folder / "model.safetensors")
    assert after.keys() == tensors.keys() and all(torch.equal(after[k], tensors[k]) for k in tensors)
    assert (folder / "config.json").read_bytes() == config
    loaded = zoo.from_pretrained(folder)
    assert torch.equal(loaded.embed(skeletons), before)

    record = loaded.training_record()
    assert not [k for k in record["metrics"] if "(" in k] and "test/knn_acc" not in record["metrics"]
    assert record["metrics"]["test/rankme"] == 28.5311  # the test loop's own numbers stay training-run metrics
    knn = {r["model"]: r["value"] for r in record["results"] if r["protocol"] == "knn"}
    assert knn == {"pretrained": 0.885, "random-init": 0.828, "raw-input": 0.882}
    assert {r["dataset"] for r in record["results"]} == {"generated-skeleton-actions"}
    finetune = [r for r in record["results"] if r["protocol"] == "finetune"]
    assert {r["model"]: r["value"] for r in finetune} == {"pretrained": 0.998, "random-init": 1.0}
    assert finetune[0]["settings"] == {"head": "strl", "frozen": False, "optimizer": "sgd", "epochs": 10}
    assert migrate_checkpoint(folder) == 0  # once: a folder with results is left alone
    assert "| knn | accuracy | generated-skeleton-actions (test) | k=20, temperature=0.1, bank=knn-bank | 0.885 | 0.828 | 0.882 |" in (folder / "README.md").read_text()


def test_migration_of_card_only_keys_with_spread_and_the_author_s_limitations(tmp_path):
    folder = _legacy_copy(tmp_path, "tjepa-adult")  # its numbers were only in the card: "0.8471 ± 0.0021"
    assert migrate_checkpoint(folder) == 3
    record = read_record(folder)
    by_model = {r["model"]: r for r in record["results"]}
    assert set(by_model) == {"pretrained", "raw-input", "hist-gradient-boosting"}
    assert (by_model["pretrained"]["value"], by_model["pretrained"]["std"], by_model["pretrained"]["seeds"]) == (0.8472, 0.0017, [0, 1, 2])
    assert by_model["raw-input"]["std"] == 0.0021 and by_model["pretrained"]["metric"] == "accuracy"
    assert record["limitations"].startswith("The test/ numbers come from `zoo tabular-eval`")
    card = (folder / "README.md").read_text()
    assert "| pretrained | raw-input | hist-gradient-boosting |" in card
    assert "| 0.8472 ± 0.0017 (seeds 0, 1, 2) | 0.8471 ± 0.0021 (seeds 0, 1, 2) | 0.8662 ± 0 (seeds 0, 1, 2) |" in card
    assert "mean ± std over" not in card


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("test/knn_acc (SimCLR, trained; k=200, bank = train split)", 0.7867,
         {"protocol": "knn", "model": "pretrained", "settings": {"k": 200, "temperature": 0.1, "bank": "train"}}),
        ("test/linear_acc (raw pixels; logistic regression on the train split)", 0.8434,
         {"protocol": "linear", "model": "raw-input", "settings": {"classifier": "logistic-regression", "standardised": True, "fit_on": "train"}}),
        ("test/knn_acc (random init; k=200, bank = train split)", 0.2019, {"protocol": "knn", "model": "random-init"}),
        ("test/a2t_R@10", 0.1335, {"protocol": "retrieval", "metric": "a2t_recall@10", "model": "pretrained"}),
        ("test/zero_shot_acc_mean", 0.2057, {"protocol": "zero-shot", "metric": "accuracy", "settings": {"prompts": "mean over 4 templates"}}),
        ("test/rmse (MLP, raw features; mean ± std over 3 seeds)", "0.4730 ± 0.0035",
         {"protocol": "tabular", "metric": "rmse", "model": "raw-input", "value": 0.473, "std": 0.0035, "seeds": [0, 1, 2]}),
    ],
)  # fmt: skip
def test_legacy_keys_of_each_evaluation_script(key, value, expected):
    entry = legacy_result(key, value, dataset="fashion-mnist", config={"knn_k": 200, "knn_temperature": 0.1})
    assert {k: entry[k] for k in expected} == expected and entry["split"] == "test"


def test_an_unknown_legacy_key_is_named():
    with pytest.raises(MigrationError, match=r"test/acc \(something new\): not a metric key the migration knows"):
        legacy_result("test/acc (something new)", 0.5, dataset="d", config={})
