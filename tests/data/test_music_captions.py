"""The music-captions builder: deterministic, resumable, captions from attributes, the `zoo data build` command."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from zoo.cli import main
from zoo.data.music_captions import ATTRIBUTES, WORDS, build, clip_spec, fluidsynth_available, midi_file, render_fluidsynth

SMALL = dict(num_clips=6, seconds=0.5, sample_rate=8000, captions_per_clip=2, renderer="numpy")


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_set(tmp_path):
    build(tmp_path / "a", **SMALL)
    build(tmp_path / "b", **SMALL)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    build(tmp_path / "c", **{**SMALL, "seed": 1})
    assert files(tmp_path / "a")["train.csv"] != files(tmp_path / "c")["train.csv"]


def test_resume_skips_written_clips_and_redoes_missing_or_broken_ones(tmp_path):
    root = tmp_path / "set"
    first = build(root, **SMALL)
    assert first["written"] == 6 and first["skipped"] == 0
    before = files(root)
    (root / "audio" / "00002.wav").unlink()
    (root / "audio" / "00004.wav").write_bytes(b"RIFF broken")
    (root / "train.csv").unlink()
    again = build(root, **SMALL)
    assert again["written"] == 2 and again["skipped"] == 4
    assert files(root) == before
    with pytest.raises(ValueError, match="other settings"):
        build(root, **{**SMALL, "seconds": 1.0})


def test_captions_and_labels_follow_the_attributes(tmp_path):
    build(tmp_path, **SMALL)
    rows = list(csv.DictReader(open(tmp_path / "train.csv"))) + list(csv.DictReader(open(tmp_path / "test.csv")))
    assert len(rows) == 12 and {r["audio_path"] for r in rows} == {f"audio/{i:05d}.wav" for i in range(6)}
    for row in rows:
        assert row["label"] == row["family"]
        for attribute in ATTRIBUTES:  # each caption names every attribute with one of its phrasings
            assert any(word in row["caption"] for word in WORDS[attribute][row[attribute]]), (attribute, row)
    wave, sr = sf.read(str(tmp_path / rows[0]["audio_path"]))
    assert sr == 8000 and len(wave) == 4000 and np.abs(wave).max() > 0.01
    assert json.loads((tmp_path / "meta.json").read_text())["renderer"] == "numpy"


def test_midi_file_is_well_formed():
    specs = [clip_spec(0, i, 1.0, 1) for i in range(2)]
    data = midi_file(specs, slot_seconds=2.0)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")


@pytest.mark.skipif(not fluidsynth_available(), reason="fluidsynth + FluidR3_GM soundfont not installed")
def test_fluidsynth_renders_audible_clips():
    specs = [clip_spec(0, i, 0.5, 1) for i in range(2)]
    waves = render_fluidsynth(specs, 0.5, 8000)
    assert [len(w) for w in waves] == [4000, 4000] and all(np.abs(w).max() > 1e-3 for w in waves)


def test_data_build_command(tmp_path, capsys):
    assert main(["data", "build", "music-captions", str(tmp_path / "x"), "--num-clips", "3", "--seconds", "0.25",
                 "--sample-rate", "8000", "--renderer", "numpy"]) == 0  # fmt: skip
    assert "3 clips written" in capsys.readouterr().out
    assert main(["data", "build", "music-captions", str(tmp_path / "x"), "--num-clips", "1"]) == 2
    assert "num_clips >= 2" in capsys.readouterr().err
