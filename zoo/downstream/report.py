"""Results → the model's structured record → a Hub folder, checked by reloading it.

:func:`export_with_results` puts the evaluation entries on the model (``set_results``: the ``"results"`` record of
model.safetensors, from which the card is made), saves through ``zoo.hub`` (a new or empty folder or an earlier zoo
save; other files in it are kept), reloads the folder with ``zoo.from_pretrained`` and compares the reloaded
model's embeddings of a fixed batch with the in-memory model's, bit for bit. A folder whose model does not embed
identically is reported as a failure, never as an export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.downstream.pretrained import Pretrained, embed_inputs


class ExportMismatch(RuntimeError):
    """The exported folder reloads to a model whose embeddings differ from the evaluated model's."""


def table(results: list[dict[str, Any]]) -> str:
    """One markdown table: a row per model, a column per ``split/protocol metric``."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for r in results:
        column = f"{r['protocol']} {r['metric']}"
        if column not in columns:
            columns.append(column)
        value = f"{r['value']:.4f}" + (f" ± {r['std']:.4f}" if r.get("std") is not None else "")
        rows.setdefault(r["model"], {})[column] = value
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += [f"| {model} | " + " | ".join(cells.get(c, "") for c in columns) + " |" for model, cells in rows.items()]
    return "\n".join(lines)


def reload_check_batch(p: Pretrained, size: int = 64) -> Any:
    """The fixed batch the reload check embeds: the first ``size`` inputs of the test split."""
    inputs, _ = p.inputs("test")
    return inputs[:size]


def export_with_results(p: Pretrained, results: list[dict[str, Any]], directory: str | Path, inference_only: bool = False) -> Path:
    """Save ``p.model`` with ``results`` into ``directory`` and check the reload (see the module docstring); returns
    the folder. Raises :class:`ExportMismatch` when the reloaded model embeds differently."""
    import zoo

    model = p.model
    if not hasattr(model, "save_pretrained"):
        raise ValueError(f"--export: {p.source} is not a zoo model ({type(model).__name__}); only zoo models are exported")
    batch = reload_check_batch(p)
    before = embed_inputs(model, batch)
    model.set_results(list(results))
    model.save_pretrained(directory, inference_only=inference_only)
    reloaded = zoo.from_pretrained(directory)
    after = embed_inputs(reloaded, batch)
    if not torch.equal(before, after):
        diff = (before - after).abs().max().item() if before.shape == after.shape else float("nan")
        raise ExportMismatch(f"{directory}: the reloaded model's embeddings differ from the evaluated model's (max |diff| {diff:.3g})")
    saved = reloaded.training_record().get("results")
    if saved != model.training_record().get("results"):
        raise ExportMismatch(f"{directory}: the results read back differ from those written")
    return Path(directory)
