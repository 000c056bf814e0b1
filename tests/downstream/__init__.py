"""Shared by the downstream and `zoo evaluate` tests."""

from __future__ import annotations

from pathlib import Path

import torch

#: a training record naming the built-in digits data (small splits: the tests read the whole set in a second)
DIGITS = {"class": "ImageDataModule", "dataset": "digits", "val_size": 100, "knn_bank_size": 100}


def save_tiny_simclr(out: Path) -> Path:
    """A tiny SimCLR saved as `zoo fit` + `zoo export` would leave it, its record naming the digits data; its weights
    differ from any seed's initialisation, as trained ones do."""
    from tests.method_cases import CASES

    model = CASES["simclr"].build()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn(param.shape, generator=g))
    model._training_record = {"data": dict(DIGITS), "epochs_completed": 1}
    model.save_pretrained(out)
    return out
