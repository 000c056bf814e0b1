"""`zoo evaluate` as a user meets it: one table, results JSON, export with a bit-exact reload, several sources in one
table, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.downstream import save_tiny_simclr
from zoo.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--limit-train", "150", "--limit-test", "50", "--knn-k", "20"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_simclr(tmp_path_factory.mktemp("hub") / "simclr")


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo evaluate: error:") and "\n" not in err, err
    return err


def test_help_is_fast_and_imports_no_torch():
    code = "import sys; from zoo.cli.evaluate import parser; parser().parse_args(['x']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
    from zoo.cli.evaluate import PROTOCOL_NAMES
    from zoo.downstream.protocols import PROTOCOLS

    assert PROTOCOL_NAMES == tuple(PROTOCOLS)
    from zoo.downstream.protocols import DEFAULT_PROTOCOLS

    # every modality's defaults apply to it (the --help text lists them)
    assert all(m in PROTOCOLS[name].modalities for m, names in DEFAULT_PROTOCOLS.items() for name in names)


def test_evaluate_export_and_reload(folder, tmp_path, capsys):
    import zoo

    out, export = tmp_path / "results.json", tmp_path / "export"
    args = ["evaluate", str(folder), "--protocol", "knn", "--baselines", "random,raw", *QUICK, "--output", str(out), "--export", str(export)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| model | knn accuracy |" in printed
    for row in ("| pretrained |", "| random-init |", "| raw-input |"):
        assert row in printed
    results = json.loads(out.read_text())
    assert [(r["protocol"], r["model"]) for r in results] == [("knn", "pretrained"), ("knn", "random-init"), ("knn", "raw-input")]
    assert results[1]["settings"]["init_seeds"] == [0] and results[1]["std"] is None and results[0]["settings"]["bank_size"] == 150
    raw_knn = results[2]["value"]
    assert raw_knn > 0.8  # raw digits pixels: the protocol really classifies
    reloaded = zoo.from_pretrained(export)
    assert reloaded.training_record()["results"] == results
    # the card's results table: pretrained, random-init and raw-input side by side on the knn row
    row = next(line for line in (export / "README.md").read_text().splitlines() if line.startswith("| knn | accuracy |"))
    assert row.rstrip(" |").endswith(f"{round(raw_knn, 4):g}")
    # a second export into the same folder replaces zoo's files and keeps the user's
    (export / "notes.txt").write_text("mine")
    args = ["evaluate", str(folder), "--protocol", "knn", *QUICK, "--baselines", "random", "--random-seeds", "0", "1", "--export", str(export)]
    assert main(args) == 0
    assert (export / "notes.txt").read_text() == "mine"
    pretrained, random_init = zoo.from_pretrained(export).training_record()["results"]
    assert pretrained["model"] == "pretrained" and random_init["model"] == "random-init"
    assert random_init["settings"]["init_seeds"] == [0, 1] and random_init["std"] is not None  # a spread over two inits


def test_a_zoo_model_and_a_timm_backbone_in_one_table(folder, capsys):
    assert main(["evaluate", str(folder), "timm:test_resnet", "--protocol", "knn", "--baselines", "random", *QUICK]) == 0
    printed = capsys.readouterr().out
    assert f"| {folder} |" in printed and "| timm:test_resnet |" in printed
    assert f"(baselines: random of the first SRC, {folder}: " in printed  # whose architecture the random-init row is


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/model"], "no/such/model: no such folder, and not a Hub repo id"),
        (["{folder}", "--protocol", "knn,nearest"], "unknown protocol nearest; protocols: knn, linear, retrieval, tabular, finetune"),
        (["{folder}", "--protocol", "tabular"], "--protocol tabular: applies to tabular models, not image"),
        (["{folder}", "--data-dir", "/no/such/data"], "--data-dir /no/such/data: no such folder"),
        (["timm:test_resnet"], "timm:test_resnet: an encoder zoo did not train has no training record; pass --data"),
        (["{folder}", "--limit-train", "0"], "--limit-train must be >= 1, got 0"),
        (["{folder}", "--baselines", "noise"], "unknown baseline noise; baselines: random, raw"),
    ],
)
def test_bad_input_is_one_line(folder, capsys, args, message):
    assert main(["evaluate", *[a.format(folder=folder) for a in args]]) == 2
    assert message in one_line(capsys)
