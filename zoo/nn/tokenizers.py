"""A word-level tokenizer whose vocabulary is a plain list of strings, so it lives in a method's hparams and the Hub
``config.json`` (no tokenizer files, nothing downloaded). Used by SLAP's from-scratch text encoder."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

PAD, UNK, MASK = "[pad]", "[unk]", "[mask]"
SPECIALS = (PAD, UNK, MASK)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words (apostrophes kept inside words: "don't"); punctuation dropped."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: Iterable[str], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Special tokens, then words seen at least ``min_count`` times, most frequent first (ties alphabetical, so the
    list is a deterministic function of the texts)."""
    counts = Counter(w for text in texts for w in words(text))
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if max_size is not None:
        ranked = ranked[: max(0, max_size - len(SPECIALS))]
    return [*SPECIALS, *ranked]


class WordTokenizer:
    """Maps texts to padded id tensors ``[B, max_length]`` (0 = padding, unknown words → ``[unk]``)."""

    def __init__(self, vocabulary: Sequence[str], max_length: int = 32) -> None:
        if list(vocabulary[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with the special tokens {list(SPECIALS)}, got {list(vocabulary[:3])}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("the vocabulary has duplicate entries")
        self.vocabulary = list(vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.max_length = max_length
        self.pad_id, self.unk_id, self.mask_id = (self.index[t] for t in SPECIALS)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        if isinstance(texts, str):
            raise TypeError("WordTokenizer takes a list of texts, not one string")
        ids = torch.full((len(texts), self.max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.index.get(w, self.unk_id) for w in words(text)][: self.max_length] or [self.unk_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids.to(device) if device is not None else ids
