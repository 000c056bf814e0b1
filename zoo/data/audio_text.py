"""Audio–caption pairs from a manifest CSV, the shape of MusicCaps / Song Describer.

Manifest: one row per caption, columns ``audio_path`` and ``caption`` (required) and ``label`` (optional; a class
name or integer for zero-shot / kNN evaluation); other columns are ignored. Several rows may name the same clip:
its captions are grouped. Relative paths are resolved against the manifest's folder.

The loader only decodes (soundfile: wav/flac/ogg/…), mixes to mono, resamples (polyphase, scipy's
``resample_poly``) and cuts a fixed-length window; log-mels, random crops and SpecAugment happen on the device in the
method (:mod:`zoo.nn.audio_features`). Batches::

    {"audio": float32 [B, clip_samples], "audio_length": int64 [B] (valid samples, the rest is zero padding),
     "caption": list[str], "caption2": list[str] (train: another caption of the clip when it has one),
     "label": int64 [B] (when the manifest has labels), "index": int64 [B] (clip index in its split)}
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import DataError, ZooDataModule
from zoo.nn.tokenizers import build_vocabulary

REQUIRED_COLUMNS = ("audio_path", "caption")


@dataclass
class Clip:
    path: Path
    captions: list[str]
    label: str | None
    row: int  # manifest row (1-based, header = row 1) of the clip's first caption, for error messages


def read_manifest(path: str | Path, label_column: str | None = "label") -> list[Clip]:
    """Clips of a manifest CSV, captions grouped per ``audio_path`` in order of first appearance.

    Raises :class:`DataError` naming the file, row and column for a missing file, an empty file, a missing column,
    an empty path or caption, a missing audio file, or a clip whose rows disagree on its label.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"manifest {path} not found (a CSV with columns audio_path, caption[, label])")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames
        if not columns:
            raise DataError(f"manifest {path} is empty: expected a header row with columns audio_path, caption[, label]")
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"manifest {path}: missing column(s) {missing}; header has {columns}")
        has_label = label_column is not None and label_column in columns
        clips: dict[str, Clip] = {}
        for row_number, row in enumerate(reader, start=2):
            audio, caption = (row.get("audio_path") or "").strip(), (row.get("caption") or "").strip()
            if not audio:
                raise DataError(f"manifest {path}, row {row_number}: empty audio_path")
            if not caption:
                raise DataError(f"manifest {path}, row {row_number}: empty caption for {audio}")
            label = (row.get(label_column) or "").strip() if has_label else None  # type: ignore[arg-type]
            if has_label and not label:
                raise DataError(f"manifest {path}, row {row_number}: empty {label_column} for {audio}")
            clip = clips.get(audio)
            if clip is None:
                resolved = Path(audio).expanduser()
                resolved = resolved if resolved.is_absolute() else path.parent / resolved
                if not resolved.is_file():
                    raise DataError(f"manifest {path}, row {row_number}: audio file {resolved} not found")
                clips[audio] = Clip(resolved, [caption], label, row_number)
            else:
                if clip.label != label:
                    raise DataError(
                        f"manifest {path}, row {row_number}: {audio} has {label_column} {label!r} but {clip.label!r} "
                        f"in row {clip.row}"
                    )
                clip.captions.append(caption)
    if not clips:
        raise DataError(f"manifest {path} has a header but no rows")
    if label_column is not None and label_column != "label" and not any(c.label for c in clips.values()):
        raise DataError(f"manifest {path}: no column {label_column!r}; header has {columns}")
    return list(clips.values())


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (polyphase resampling when the file's rate differs)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError for bad files
        raise DataError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(sample_rate, rate)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


class AudioTextDataset(Dataset):
    """Decodes one clip per item; ``train=True`` draws a random window and two captions per item."""

    def __init__(self, clips: list[Clip], class_index: dict[str, int] | None, sample_rate: int, clip_samples: int, train: bool) -> None:
        self.clips, self.class_index = clips, class_index
        self.sample_rate, self.clip_samples, self.train = sample_rate, clip_samples, train

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        wave = load_audio(clip.path, self.sample_rate)
        n = len(wave)
        if n > self.clip_samples:
            # train: a random window (the global RNG, seeded by seed_everything); eval: the centre, deterministic
            start = int(torch.randint(0, n - self.clip_samples + 1, ()).item()) if self.train else (n - self.clip_samples) // 2
            wave = wave[start : start + self.clip_samples]
        length = len(wave)
        out = np.zeros(self.clip_samples, dtype=np.float32)
        out[:length] = wave
        if self.train and len(clip.captions) > 1:
            i, j = torch.randperm(len(clip.captions))[:2].tolist()
            caption, caption2 = clip.captions[i], clip.captions[j]
        elif self.train:
            caption = caption2 = clip.captions[0]
        else:  # evaluation: the first caption, so retrieval is a fixed one-to-one task
            caption = caption2 = clip.captions[0]
        item: dict[str, Any] = {
            "audio": torch.from_numpy(out), "audio_length": length, "caption": caption, "caption2": caption2, "index": index,
        }  # fmt: skip
        if self.class_index is not None and clip.label is not None:
            item["label"] = self.class_index[clip.label]
        return item


def collate_audio_text(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "audio": torch.stack([it["audio"] for it in items]),
        "audio_length": torch.tensor([it["audio_length"] for it in items], dtype=torch.long),
        "caption": [it["caption"] for it in items],
        "caption2": [it["caption2"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }
    if all("label" in it for it in items):
        batch["label"] = torch.tensor([it["label"] for it in items], dtype=torch.long)
    return batch


class AudioTextDataModule(ZooDataModule):
    """Audio–caption pairs from manifest CSVs (see the module docstring).

    Splits: ``test_manifest`` when given, else ``test_size`` clips held out of ``manifest``; ``val_size`` clips held
    out of the rest (seeded permutation). The kNN bank (labelled data only) is the first ``knn_bank_size`` train
    clips. The word vocabulary for a from-scratch text encoder is built from the train split's captions
    (:meth:`vocabulary`); SLAP reads it from the datamodule when it has none.
    """

    collate_fn = staticmethod(collate_audio_text)  # captions are strings: lists, not tensors

    def __init__(
        self,
        manifest: str,
        test_manifest: str | None = None,
        label_column: str | None = "label",
        sample_rate: int = 16000,
        clip_seconds: float = 4.0,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 0,
        test_size: int = 0,
        knn_bank_size: int = 1000,
        seed: int = 0,
        drop_last: bool = True,
        vocabulary_min_count: int = 1,
    ) -> None:
        """
        Args:
            manifest: training manifest CSV (``audio_path, caption[, label]``).
            test_manifest: held-out manifest; None: hold out ``test_size`` clips of ``manifest``.
            label_column: column with class labels (evaluation only); None ignores labels.
            sample_rate: decoding rate (files at other rates are resampled).
            clip_seconds: window handed to the method (longer clips are cut, shorter zero-padded).
            batch_size, num_workers, drop_last: loader settings.
            val_size, test_size: clips held out for validation / test.
            knn_bank_size: labelled train clips used as kNN memory bank in evaluation (0: none).
            seed: split permutation.
            vocabulary_min_count: words rarer than this in the train captions map to ``[unk]``.
        """
        super().__init__()
        self.save_hyperparameters()
        for arg, value, minimum in (
            ("sample_rate", sample_rate, 1), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
            ("val_size", val_size, 0), ("test_size", test_size, 0), ("knn_bank_size", knn_bank_size, 0),
            ("vocabulary_min_count", vocabulary_min_count, 1),
        ):  # fmt: skip
            if int(value) != value or value < minimum:
                raise DataError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        if not clip_seconds > 0:
            raise DataError(f"clip_seconds must be > 0, got {clip_seconds}")
        if test_manifest is None and test_size == 0:
            raise DataError("give test_manifest= or test_size= (clips of manifest held out for testing)")
        self.manifest, self.test_manifest = Path(manifest).expanduser(), test_manifest
        self.label_column = label_column
        self.sample_rate, self.clip_samples = int(sample_rate), int(round(clip_seconds * sample_rate))
        self.batch_size, self.num_workers, self.drop_last = int(batch_size), int(num_workers), bool(drop_last)
        self.val_size, self.test_size, self.knn_bank_size, self.seed = int(val_size), int(test_size), int(knn_bank_size), int(seed)
        self._splits: dict[str, list[Clip]] | None = None
        self._class_names: list[str] | None = None

    # ---- setup --------------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read and check the manifests (every audio file's header is read, so a corrupt file fails here)."""
        if self._splits is not None:
            return
        clips = read_manifest(self.manifest, self.label_column)
        perm = np.random.default_rng(self.seed).permutation(len(clips))
        held = self.val_size + (0 if self.test_manifest is not None else self.test_size)
        if held >= len(clips):
            raise DataError(
                f"val_size={self.val_size} + test_size={self.test_size} must leave training clips; {self.manifest} has "
                f"{len(clips)} clips"
            )
        val = [clips[i] for i in perm[: self.val_size]]
        if self.test_manifest is not None:
            test = read_manifest(self.test_manifest, self.label_column)
            rest = perm[self.val_size :]
        else:
            test = [clips[i] for i in perm[self.val_size : held]]
            rest = perm[held:]
        train = [clips[i] for i in sorted(rest)]
        splits = {"train": train, "val": val, "test": test}
        for split in splits.values():
            for clip in split:
                _check_header(clip)
        labels = [c.label for split in splits.values() for c in split]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise DataError(f"{self.label_column!r} labels are present in one manifest but not the other")
            names = sorted(set(labels), key=lambda s: (int(s), s) if s.lstrip("-").isdigit() else (math.inf, s))  # type: ignore[union-attr]
            self._class_names = names  # type: ignore[assignment]
        if self.drop_last and len(train) < self.batch_size:
            raise DataError(
                f"the train split has {len(train)} clips, fewer than batch_size={self.batch_size}: with drop_last=True "
                "the train loader would yield no batch; lower batch_size or val_size/test_size"
            )
        self._splits = splits

    def clips(self, split: str) -> list[Clip]:
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r}; valid splits: train, val, test")
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    # ---- metadata -----------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        if self.label_column is None:
            return None
        self.setup()
        return len(self._class_names) if self._class_names and len(self._class_names) >= 2 else None

    @property
    def class_names(self) -> list[str] | None:
        self.setup()
        return list(self._class_names) if self._class_names else None

    def vocabulary(self) -> list[str]:
        """Word vocabulary of the train split's captions (special tokens first; deterministic)."""
        return build_vocabulary((c for clip in self.clips("train") for c in clip.captions), self.hparams.vocabulary_min_count)

    # ---- loaders ------------------------------------------------------------------------------------------------
    def dataset(self, split: str, train: bool | None = None) -> AudioTextDataset:
        self.setup()  # the class index is known only after reading the manifests
        class_index = {name: i for i, name in enumerate(self._class_names)} if self._class_names else None
        clips = self.clips(split) if split != "knn_bank" else self.clips("train")[: self.knn_bank_size]
        return AudioTextDataset(clips, class_index, self.sample_rate, self.clip_samples, split == "train" if train is None else train)

    def split_dataset(self, split: str, train: bool) -> AudioTextDataset:
        return self.dataset(split, train=train)

    def has_split(self, split: str) -> bool:
        if split == "val":
            return self.val_size > 0
        if split == "knn_bank":  # labelled clips only
            return self.knn_bank_size > 0 and bool(self.num_classes)
        return True


def _check_header(clip: Clip) -> None:
    import soundfile as sf

    try:
        info = sf.info(str(clip.path))
    except Exception as e:
        raise DataError(f"{clip.path}: cannot decode audio ({type(e).__name__}: {e})") from None
    if info.frames == 0:
        raise DataError(f"{clip.path}: the audio file holds no samples")
