"""Shared tiny configurations: every model in the suite is a few thousand parameters so the suite stays fast."""

from __future__ import annotations

import pytest

# ResNet-18 layout at 1/8 width with one block per stage: ~30k parameters, runs on 8×8 digits in milliseconds
TINY_ENCODER = {
    "name": "resnet18",
    "in_chans": 1,
    "small_image_stem": True,
    "model_kwargs": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1]},
}


@pytest.fixture
def tiny_encoder() -> dict:
    return {**TINY_ENCODER, "model_kwargs": dict(TINY_ENCODER["model_kwargs"])}
