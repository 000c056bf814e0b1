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
