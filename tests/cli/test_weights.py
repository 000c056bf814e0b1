"""`zoo weights` as `make weights` runs it: a manifest's recipe trained, evaluated, exported with its figures and card,
MODEL_CARD.md rewritten; and one-line errors for a bad manifest, name or data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import zoo
from zoo.cli import main
from zoo.hub import read_record

REPO = Path(__file__).resolve().parents[2]
TINY_FIT = [
    "--config", str(REPO / "configs/simclr/digits.yaml"), "--config", str(REPO / "configs/trainer/cpu.yaml"),
    "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
    "--trainer.log_every_n_steps", "1", "--data.init_args.batch_size", "32", "--model.init_args.encoder.model_kwargs.channels", "[8, 8, 8, 8]",
]  # fmt: skip


def write_manifest(path: Path, entries: dict) -> Path:
    path.write_text(yaml.safe_dump({"data_dirs": {"here": str(path.parent)}, "checkpoints": entries}))
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo weights: error:") and "\n" not in err, err
    return err


def test_rebuilds_a_checkpoint_with_its_record_figures_card_and_model_card(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evaluate = ["--protocol", "knn", "--baselines", "raw", "--limit-train", "150", "--limit-test", "60", "--knn-k", "20"]
    broken = {"fit": [*TINY_FIT, "--model.init_args.lr", "-1"], "evaluate": evaluate}
    manifest = write_manifest(tmp_path / "weights.yaml", {"tiny-simclr": {"fit": TINY_FIT, "evaluate": evaluate}, "broken": broken})
    out, runs = tmp_path / "checkpoints", tmp_path / "runs"
    args = ["weights", "--manifest", str(manifest), "--out", str(out), "--runs", str(runs), "--map-points", "60"]
    # two at a time: one recipe fails (its error names it and its log), the other is rebuilt all the same
    assert main([*args, "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"zoo weights: error: broken: the fit step exited with 2 (its output is in {runs / 'broken.log'}); nothing after it ran"
    assert "lr" in (runs / "broken.log").read_text() and not (out / "broken").exists()
    folder = out / "tiny-simclr"
    for name in ("training_curve.png", "embedding_map.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in (folder / "README.md").read_text()
    record = read_record(folder)
    assert record["command"].startswith("zoo fit --config") and "--trainer.default_root_dir" in record["command"]
    assert record["epochs_completed"] == 2 and record["wall_time_s"] > 0 and record["machine"]
    assert [(r["protocol"], r["model"]) for r in record["results"]] == [("knn", "pretrained"), ("knn", "raw-input")]
    assert json.loads((runs / "tiny-simclr" / "results.json").read_text()) == record["results"]
    zoo.from_pretrained(folder)  # loads as users load it
    # --skip-fit: evaluate, export and draw again from the finished run (no training), replacing only zoo's files;
    # then MODEL_CARD.md
    (folder / "notes.txt").write_text("mine")
    assert main([*args, "tiny-simclr", "--skip-fit"]) == 0
    assert "fit: zoo fit" not in capsys.readouterr().out and (folder / "notes.txt").read_text() == "mine"
    assert "tiny-simclr" in (tmp_path / "MODEL_CARD.md").read_text()


def test_list_and_dry_run_print_the_commands(tmp_path, capsys):
    entry = {"prepare": [{"args": ["data", "build", "skeleton-actions", "{here}/skel"], "creates": "{here}/skel"}],
             "fit": ["--config", "r.yaml", "--data.init_args.data_dir", "{here}"], "evaluate": ["--protocol", "knn"], "inference_only": True}  # fmt: skip
    manifest = write_manifest(tmp_path / "weights.yaml", {"a": entry})
    assert main(["weights", "--manifest", str(manifest), "--dry-run", "--runs", "R", "--out", "C", "--data-dir", "here=/d"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "a"
    assert printed[1].split() == ["prepare", "zoo", "data", "build", "skeleton-actions", "/d/skel"]
    assert printed[2].split() == ["fit", "zoo", "fit", "--config", "r.yaml", "--data.init_args.data_dir", "/d", "--trainer.default_root_dir", "R/a",
                                  "--overwrite", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert printed[3].split()[-5:] == ["--export", "C/a", "--output", "R/a/results.json", "--inference-only"]
    assert "figures" in printed[4]
    assert main(["weights", "--manifest", str(manifest), "--list", "--resume", "--runs", "R"]) == 0
    assert "--resume" in capsys.readouterr().out


def test_the_shipped_manifest_names_every_shipped_checkpoint_and_existing_recipes():
    manifest = yaml.safe_load((REPO / "configs" / "weights.yaml").read_text())
    shipped = sorted(p.name for p in (REPO / "checkpoints").iterdir() if p.is_dir())
    assert sorted(manifest["checkpoints"]) == shipped
    for name, entry in manifest["checkpoints"].items():
        configs = [entry["fit"][i + 1] for i, a in enumerate(entry["fit"]) if a == "--config"]
        assert configs and all((REPO / c).is_file() for c in configs), name


@pytest.mark.parametrize(
    "entries, args, message",
    [
        ({"a": {"fit": [], "evaluate": []}}, ["nope"], "unknown checkpoint 'nope'; "),
        ({"a": {"fit": ["{missing}"], "evaluate": []}}, [], "names the data folder 'missing', which neither data_dirs nor --data-dir missing=PATH gives"),
        ({"a": {"fit": []}}, [], "checkpoints.a.evaluate must be a list of command-line arguments"),
        ({"a": {"fit": [], "evaluate": []}}, ["--data-dir", "oops"], "--data-dir 'oops': expected KEY=PATH"),
        ({"a": {"fit": [], "evaluate": []}}, ["--jobs", "0"], "--jobs must be >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, entries, args, message):
    manifest = write_manifest(tmp_path / "weights.yaml", entries)
    assert main(["weights", "--manifest", str(manifest), "--dry-run", *args]) == 2
    assert message in one_line(capsys)


def test_a_missing_manifest_is_one_line(tmp_path, capsys):
    assert main(["weights", "--manifest", str(tmp_path / "no.yaml")]) == 2
    assert "no.yaml: no such manifest" in one_line(capsys)
