"""MODEL_CARD.md is generated from the checkpoints' cards (`zoo cards`) and must match them."""

import shutil
from pathlib import Path

import pytest

from zoo.cards import main, render_model_card, summarize_checkpoint
from zoo.cli import main as zoo_main

REPO = Path(__file__).resolve().parents[1]


def test_model_card_is_up_to_date_with_the_checkpoints():
    assert main(["--checkpoints", str(REPO / "checkpoints"), "--output", str(REPO / "MODEL_CARD.md"), "--check"]) == 0, (
        "MODEL_CARD.md is out of date: run `zoo cards`"
    )


def test_every_checkpoint_is_listed_with_its_held_out_results():
    text = render_model_card(REPO / "checkpoints")
    for folder in (REPO / "checkpoints").iterdir():
        if folder.is_dir():
            summary = summarize_checkpoint(folder)
            assert f"[{folder.name}]" in text and summary.test_metrics
            first_metric, value = next(iter(summary.test_metrics.items()))
            assert f"{first_metric.removeprefix('test/')}: {value}" in text


def test_cards_writes_and_detects_drift(tmp_path, capsys):
    source = next(p for p in sorted((REPO / "checkpoints").iterdir()) if p.is_dir())
    shutil.copytree(source, tmp_path / "checkpoints" / source.name)
    output = tmp_path / "MODEL_CARD.md"
    assert zoo_main(["cards", "--checkpoints", str(tmp_path / "checkpoints"), "--output", str(output), "--check"]) == 1
    assert zoo_main(["cards", "--checkpoints", str(tmp_path / "checkpoints"), "--output", str(output)]) == 0
    assert main(["--checkpoints", str(tmp_path / "checkpoints"), "--output", str(output), "--check"]) == 0
    card = tmp_path / "checkpoints" / source.name / "README.md"
    card.write_text(card.read_text().replace("## Metrics\n", "## Metrics\n\n| test/extra | 1.0 |\n", 1))
    assert main(["--checkpoints", str(tmp_path / "checkpoints"), "--output", str(output), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out


def test_a_folder_without_weights_is_named(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    (tmp_path / "broken" / "README.md").write_text("# card")
    with pytest.raises(FileNotFoundError, match="broken: no model.safetensors"):
        summarize_checkpoint(tmp_path / "broken")
    assert zoo_main(["cards", "--checkpoints", str(tmp_path), "--output", str(tmp_path / "M.md")]) == 2


# ---- Hub metadata of the cards save_pretrained writes ----------------------------------------------------------

RECORD = {
    "data": {"class": "ImageDataModule", "dataset": "fashion-mnist", "batch_size": 32},
    "metrics": {
        "train/loss": 3.3, "lr-SGD/decay": 0.01, "val/knn_acc": 0.75, "val/rankme": 78.25, "test/knn_acc": 0.74,
        "test/acc (linear probe, raw, 20 epochs)": 0.49,
    },
    "epochs_completed": 2, "global_step": 10, "trainer": {"max_epochs": 2},
}  # fmt: skip


def _saved_card(tmp_path):
    from tests.method_cases import CASES

    model = CASES["simclr"].build()
    model._training_record = RECORD
    model.save_pretrained(tmp_path / "simclr")
    return tmp_path / "simclr"


def test_card_has_hub_metadata_and_model_index(tmp_path):
    from huggingface_hub import ModelCard

    folder = _saved_card(tmp_path)
    card = ModelCard.load(folder / "README.md")  # parses the YAML header and the model-index back into EvalResults
    assert card.data.library_name == "zoo" and card.data.pipeline_tag == "feature-extraction"
    assert card.data.datasets == ["fashion-mnist"] and {"simclr", "image", "self-supervised-learning"} <= set(card.data.tags)
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    # held-out metrics by name; training-loop values and prose-labelled comparisons stay out of the model-index
    assert results == {("validation", "knn_acc"): 0.75, ("validation", "rankme"): 78.25, ("test", "knn_acc"): 0.74}
    assert all(r.task_type == "feature-extraction" and r.dataset_type == "fashion-mnist" for r in card.data.eval_results)
    assert f'zoo.from_pretrained("{folder}")' in card.text and "<path-or-repo-id>" not in card.text


def test_pushed_card_names_the_repo_and_the_local_folder_is_untouched(tmp_path, monkeypatch):
    import huggingface_hub

    from zoo.hub import upload_folder

    folder = _saved_card(tmp_path)
    local_card = (folder / "README.md").read_text()
    uploaded = {}

    class FakeApi:  # the Hub itself is not reachable from the tests
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
            uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr("zoo.hub.hub_unreachable_reason", lambda timeout=3.0: None)  # the Hub is faked: reachable
    assert upload_folder(folder, "my-org/simclr-tiny").endswith("/commit/0")
    pushed = uploaded["README.md"].decode()
    assert 'zoo.from_pretrained("my-org/simclr-tiny")' in pushed and str(folder) not in pushed.split("## Training data")[0]
    assert uploaded["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert (folder / "README.md").read_text() == local_card
