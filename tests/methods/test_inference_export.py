"""An inference-only Hub export of every method: it leaves out exactly what ``embed`` does not run (pre-training
heads, EMA targets off the embedding path), is smaller, and the loaded model embeds bit-identically."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import zoo
from tests.method_cases import CASES
from zoo.hub import WEIGHTS_NAME


@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_export_embeds_identically(name, tmp_path):
    case = CASES[name]
    model = case.build()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained weights: nothing equals its initialisation, so a rebuilt module would show
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=g))
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "small", inference_only=True)
    omitted = model.hub_omittable_modules()
    assert set(model.pretraining_heads) <= set(omitted)
    with safe_open(str(tmp_path / "small" / WEIGHTS_NAME), framework="pt") as f:
        assert json.loads((f.metadata() or {}).get("omitted_modules", "[]")) == omitted
        assert not any(k.startswith(tuple(f"{n}." for n in omitted)) for k in f.keys())
    if omitted:
        assert (tmp_path / "small" / WEIGHTS_NAME).stat().st_size < (tmp_path / "full" / WEIGHTS_NAME).stat().st_size
    raw = case.raw_batch(4, 0)
    inputs = raw[model.input_key]
    loaded = zoo.from_pretrained(tmp_path / "small").eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.embed(inputs), model.embed(inputs))
