"""AudioTextDataModule: manifest parsing, clear errors, decoding and resampling, batches."""

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.data.audio_text import AudioTextDataModule, load_audio, read_manifest
from zoo.data.base import DataError


def tone(path, seconds=0.5, sr=8000, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def write_manifest(path, rows, header="audio_path,caption,label"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def folder(tmp_path):
    for i in range(6):
        tone(tmp_path / f"c{i}.wav", freq=200 + 100 * i)
    rows = [f"c{i}.wav,a tone number {i},{'low' if i < 3 else 'high'}" for i in range(6)]
    rows += ["c0.wav,another caption of clip zero,low"]
    write_manifest(tmp_path / "train.csv", rows)
    write_manifest(tmp_path / "test.csv", ["c5.wav,the test tone,high", "c1.wav,a second test tone,low"])
    return tmp_path


def test_manifest_groups_captions_per_clip(folder):
    clips = read_manifest(folder / "train.csv")
    assert len(clips) == 6 and clips[0].captions == ["a tone number 0", "another caption of clip zero"]
    assert clips[0].path == folder / "c0.wav" and clips[0].label == "low"


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("audio_path,text\nc0.wav,x\n", "missing column(s) ['caption']"),
        ("audio_path,caption\nc0.wav,\n", "row 2: empty caption"),
        ("audio_path,caption\nc0.wav,x\nnope.wav,y\n", "row 3: audio file"),
        ("audio_path,caption,label\nc0.wav,x,a\nc0.wav,y,b\n", "row 3: c0.wav has label 'b' but 'a' in row 2"),
        ("audio_path,caption\n", "no rows"),
    ],
)
def test_bad_manifests_are_one_clear_error(folder, content, message):
    (folder / "bad.csv").write_text(content)
    with pytest.raises(DataError) as err:
        read_manifest(folder / "bad.csv")
    assert message in str(err.value) and "bad.csv" in str(err.value) and "\n" not in str(err.value)


def test_missing_manifest_and_corrupt_audio(folder):
    with pytest.raises(DataError, match="nowhere.csv not found"):
        read_manifest(folder / "nowhere.csv")
    (folder / "c3.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    dm = AudioTextDataModule(str(folder / "train.csv"), str(folder / "test.csv"), sample_rate=8000, batch_size=2)
    with pytest.raises(DataError, match=r"c3\.wav: cannot decode audio"):
        dm.setup()


def test_load_audio_mixes_to_mono_and_resamples(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 1000 * t)], axis=1).astype(np.float32) * 0.5
    sf.write(str(tmp_path / "s.flac"), stereo, sr)
    wave = load_audio(tmp_path / "s.flac", 16000)
    assert wave.dtype == np.float32 and len(wave) == 16000
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 16000 / len(wave)
    assert abs(peak_hz - 1000) < 2


def test_batches_splits_labels_and_vocabulary(folder):
    dm = AudioTextDataModule(
        str(folder / "train.csv"), str(folder / "test.csv"), sample_rate=8000, clip_seconds=0.25, batch_size=2, val_size=1,
        knn_bank_size=3,
    )  # fmt: skip
    dm.setup()
    assert (len(dm.clips("train")), len(dm.clips("val")), len(dm.clips("test"))) == (5, 1, 2)
    assert dm.class_names == ["high", "low"] and dm.num_classes == 2
    vocab = dm.vocabulary()
    assert vocab[:3] == ["[pad]", "[unk]", "[mask]"] and "tone" in vocab and vocab == dm.vocabulary()
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (2, 2000) and batch["audio"].dtype == torch.float32
    assert batch["audio_length"].tolist() == [2000, 2000] and len(batch["caption"]) == 2 == len(batch["caption2"])
    loaders = dm.test_dataloader()
    assert len(loaders) == 2  # kNN bank + test
    test_batch = next(iter(loaders[1]))
    assert test_batch["caption"] == ["the test tone", "a second test tone"]
    assert test_batch["label"].tolist() == [0, 1]


def test_datasets_carry_labels_without_an_explicit_setup(folder):
    dm = AudioTextDataModule(str(folder / "train.csv"), str(folder / "test.csv"), sample_rate=8000, batch_size=2)
    assert dm.dataset("test", train=False)[0]["label"] == 0


def test_bad_settings_are_data_errors(folder):
    with pytest.raises(DataError, match="test_manifest= or test_size="):
        AudioTextDataModule(str(folder / "train.csv"))
    dm = AudioTextDataModule(str(folder / "train.csv"), test_size=2, val_size=4, batch_size=1)
    with pytest.raises(DataError, match="must leave training clips"):
        dm.setup()
