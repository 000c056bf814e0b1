"""`zoo export --format onnx`: embed as ONNX graphs with a dynamic batch axis, checked in onnxruntime."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.method_cases import CASES
from zoo.cli import main as zoo_main
from zoo.export import ExportError
from zoo.export.onnx import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[1]
SIMCLR = REPO / "checkpoints" / "simclr-fashion-mnist"


def _run(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert isinstance(inp.shape[0], str), f"batch axis is not dynamic: {inp.shape}"
    return session.run(None, {inp.name: x.numpy()})[0]


def test_simclr_checkpoint_exports_with_parity(tmp_path, capsys):
    out = tmp_path / "onnx"
    assert zoo_main(["export", "--format", "onnx", str(SIMCLR), str(out)]) == 0
    assert "parity" in capsys.readouterr().out
    manifest = json.loads((out / "onnx_export.json").read_text())
    graph = manifest["graphs"]["model.onnx"]
    assert graph["input_shape"] == ["batch", 1, 28, 28] and graph["parity_max_abs_diff"] <= 1e-4
    # independent of the export's own check: raw uint8 images through embed vs the float [0, 1] graph, batch 7
    model = zoo.from_pretrained(SIMCLR)
    images = torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.embed(images).numpy()
    got = _run(out / "model.onnx", images.float() / 255)
    assert got.shape == (7, 256) and np.abs(got - expected).max() <= 1e-4


def test_tabular_parity_and_a_failed_check_keeps_the_earlier_export(tmp_path):
    source = tmp_path / "tjepa"
    CASES["tjepa"].build().save_pretrained(source)
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "onnx_export.json").write_text("{}")  # an earlier export, which a failed one must leave as it is
    # atol = -1: no difference passes, so the error reports the measured one; one export tests both paths
    with pytest.raises(ExportError, match="parity check failed at batch 1") as failed:
        export_onnx(source, out, atol=-1.0)
    measured = float(str(failed.value).split("= ")[1].split(" >")[0])
    assert 0 <= measured <= 1e-4
    assert [p.name for p in out.iterdir()] == ["onnx_export.json"] and sorted(p.name for p in tmp_path.iterdir()) == ["onnx", "tjepa"]


def test_slap_exports_audio_and_text_graphs(tmp_path):
    source = tmp_path / "slap"
    model = CASES["slap"].build()
    model.save_pretrained(source)
    manifest = export_onnx(source, tmp_path / "onnx")
    assert set(manifest["graphs"]) == {"model.onnx", "text_encoder.onnx"}
    assert manifest["graphs"]["text_encoder.onnx"]["vocabulary"] == list(model.tokenizer.vocabulary)
    ids = model.tokenizer(["a slow soft organ tune", "piano"])
    with torch.no_grad():
        expected = model.eval().embed_text(["a slow soft organ tune", "piano"]).numpy()
    assert np.abs(_run(tmp_path / "onnx" / "text_encoder.onnx", ids) - expected).max() <= 1e-4
    assert all(g["parity_max_abs_diff"] <= 1e-4 for g in manifest["graphs"].values())


def test_unexportable_models_and_foreign_folders_fail_with_one_line(tmp_path, capsys):
    skeleton = tmp_path / "skeleton"
    CASES["skeleton_mae"].build().save_pretrained(skeleton)
    assert zoo_main(["export", "--format", "onnx", str(skeleton), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scatter" in err and not (tmp_path / "out").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert zoo_main(["export", "--format", "onnx", str(SIMCLR), str(mine)]) == 2
    assert "is not an earlier ONNX export" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"
