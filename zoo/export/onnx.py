"""``zoo export --format onnx``: ``embed`` as an ONNX graph with a dynamic batch axis, checked in onnxruntime.

One graph per input the model embeds: ``model.onnx`` (images, tabular rows, audio waveforms) and, for SLAP, also
``text_encoder.onnx`` (token ids → text features). Input normalisation, the log-mel front end and pooling are in the
graphs, so they take the same inputs as ``embed`` (float32; images in [0, 1]). ``onnx_export.json`` names each
graph's input, its shape and dtype, and the parity measured at export: the export runs every graph in onnxruntime
on random valid inputs at batch sizes other than the traced one and fails (writing nothing) when the largest
absolute difference from ``embed`` exceeds ``atol``.

Graphs come from ``torch.onnx.export(dynamo=True)`` (torch.export → ONNX): the TorchScript exporter (deprecated
since torch 2.9) cannot export ``nn.TransformerEncoder``'s fused inference op (tabular T-JEPA).
Skeleton models (SkeletonMAE's GIN) do not export: the encoder keeps only the persons present in each sample
(a boolean mask, so a data-dependent shape) and aggregates messages with torch-geometric's scatter ops, which
``torch.export`` does not trace.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.export import ExportError, image_input_shape, load_model, max_abs_diff, write_folder

MANIFEST = "onnx_export.json"
#: batch sizes of the parity check; the graph is traced at 2, so both exercise the dynamic axis
CHECK_BATCH_SIZES = (1, 5)
TRACE_BATCH_SIZE = 2
#: the graphs' output; torch.onnx names intermediate values after modules, so not "embedding" (nn.Embedding)
OUTPUT_NAME = "embeddings"


@dataclass
class OnnxTarget:
    """One graph: ``module(input) → [batch, D]`` features."""

    filename: str
    module: nn.Module
    input_name: str
    make_input: Callable[[int, torch.Generator], Tensor]
    input_note: str
    extra: dict[str, Any] = field(default_factory=dict)


class _Call(nn.Module):
    """``fn(x)`` as a module's forward (``embed`` is a method, not a module), keeping ``owner``'s weights
    registered so torch.export lifts them as parameters."""

    def __init__(self, owner: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def onnx_targets(model: Any, input_size: tuple[int, int, int] | None = None) -> list[OnnxTarget]:
    """The graphs that export ``model``'s ``embed`` (and SLAP's text arm), with random valid inputs for each."""
    kind = type(model).input_key
    embed = _Call(model, model.embed)
    if kind == "image":
        shape = image_input_shape(model, input_size)
        encoder = model.embedding_encoder()
        mean, std = [round(float(v), 6) for v in encoder.mean.flatten()], [round(float(v), 6) for v in encoder.std.flatten()]
        return [OnnxTarget(
            "model.onnx", embed, "image", lambda b, g: torch.rand(b, *shape, generator=g),
            f"float32 [batch, {shape[0]}, {shape[1]}, {shape[2]}] images in [0, 1] (uint8 / 255); the graph "
            f"normalises them with mean {mean}, std {std}",
            {"input_shape": ["batch", *shape], "mean": mean, "std": std},
        )]
    if kind == "features":
        tokenizer = model.embedding_encoder().tokenizer
        numeric, cardinalities = tokenizer.num_numeric, list(tokenizer.cardinalities)

        def rows(b: int, g: torch.Generator) -> Tensor:
            codes = [torch.randint(0, c, (b, 1), generator=g).float() for c in cardinalities]
            return torch.cat([torch.rand(b, numeric, generator=g), *codes], dim=1)

        return [OnnxTarget(
            "model.onnx", embed, "features", rows,
            f"float32 [batch, {numeric + len(cardinalities)}]: {numeric} numeric columns scaled as in training, then "
            f"{len(cardinalities)} categorical codes (integers as floats)",
            {"input_shape": ["batch", numeric + len(cardinalities)], "cardinalities": cardinalities},
        )]
    if kind == "audio":
        return _slap_targets(model, embed)
    if kind == "skeleton":
        raise ExportError(
            f"{type(model).__name__} does not export to ONNX: its GIN encoder keeps only the persons present in each "
            "sample (a data-dependent shape) and aggregates with torch-geometric scatter ops, which torch.export "
            "cannot trace"
        )
    raise ExportError(f"{type(model).__name__}: no ONNX export for inputs {kind!r}")


def _slap_targets(model: Any, embed: nn.Module) -> list[OnnxTarget]:
    log_mel = model.audio_encoder.log_mel
    data = model.training_record().get("data") or {}
    samples = int(round(float(data.get("clip_seconds") or 1.0) * log_mel.sample_rate))
    targets = [OnnxTarget(
        "model.onnx", embed, "audio", lambda b, g: 0.1 * torch.randn(b, samples, generator=g),
        f"float32 [batch, {samples}] mono waveforms at {log_mel.sample_rate} Hz (the log-mel front end is in the graph)",
        {"input_shape": ["batch", samples], "sample_rate": log_mel.sample_rate},
    )]
    text_encoder = getattr(model, "text_encoder", None)
    if text_encoder is not None:
        vocab_size, length = text_encoder.token_embedding.num_embeddings, text_encoder.max_length

        def ids(b: int, g: torch.Generator) -> Tensor:
            x = torch.randint(1, vocab_size, (b, length), generator=g)
            lengths = torch.randint(1, length + 1, (b,), generator=g)
            return x.masked_fill(torch.arange(length)[None] >= lengths[:, None], 0)  # padded tails, as the tokenizer

        targets.append(OnnxTarget(
            "text_encoder.onnx", text_encoder, "input_ids", ids,
            f"int64 [batch, {length}] token ids from zoo's WordTokenizer (0 = padding; vocabulary in this file)",
            {"input_shape": ["batch", length], "vocabulary": list(model.tokenizer.vocabulary)},
        ))
    return targets


def _export_graph(target: OnnxTarget, path: Path, opset: int | None) -> None:
    example = target.make_input(TRACE_BATCH_SIZE, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                target.module, (example,), dynamo=True, input_names=[target.input_name], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), opset_version=opset, verbose=False, external_data=False,
            )
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ExportError(f"{target.filename}: torch.onnx.export failed ({type(e).__name__}: {first})") from None
    program.save(str(path), external_data=False)


def check_parity(path: Path, target: OnnxTarget, atol: float, seed: int = 1) -> float:
    """Largest |onnxruntime − embed| over random valid inputs at :data:`CHECK_BATCH_SIZES`; raises above ``atol``."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # an invalid graph: onnxruntime's own one-line reason
        raise ExportError(f"{target.filename}: onnxruntime cannot load the exported graph ({str(e).strip().splitlines()[0]})") from None
    worst = 0.0
    generator = torch.Generator().manual_seed(seed)
    for batch in CHECK_BATCH_SIZES:
        x = target.make_input(batch, generator)
        with torch.no_grad():
            expected = target.module(x)
        (got,) = session.run(None, {target.input_name: x.numpy()})
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(f"{target.filename}: onnxruntime gives shape {tuple(got.shape)} at batch {batch}, embed gives {tuple(expected.shape)}")
        diff = max_abs_diff(got, expected)
        if not diff <= atol:  # NaN fails too
            raise ExportError(f"{target.filename}: parity check failed at batch {batch}: max |onnxruntime - embed| = {diff:.3g} > {atol:g}")
        worst = max(worst, diff)
    return worst


def export_onnx(
    source: str | Path, out: str | Path, *, input_size: tuple[int, int, int] | None = None, atol: float = 1e-4,
    opset: int | None = None,
) -> dict[str, Any]:
    """Write ``out/`` with one ONNX graph per embedded input and ``onnx_export.json``; returns the manifest."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx extra ({e.name} is not installed): pip install 'zoo-ssl[onnx]'") from None
    model = load_model(source)
    targets = onnx_targets(model, input_size)

    def write(folder: Path) -> dict[str, Any]:
        graphs = {}
        for target in targets:
            _export_graph(target, folder / target.filename, opset)
            graphs[target.filename] = {
                "input": target.input_name, "input_note": target.input_note, "output": OUTPUT_NAME,
                "output_shape": ["batch", int(target.module(target.make_input(1, torch.Generator().manual_seed(0))).shape[-1])],
                "parity_max_abs_diff": check_parity(folder / target.filename, target, atol),
                "parity_batch_sizes": list(CHECK_BATCH_SIZES), "parity_atol": atol, **target.extra,
            }
        manifest = {"source": str(source), "method": model.method_name, "torch": torch.__version__, "graphs": graphs}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return manifest

    with torch.no_grad():
        return write_folder(out, MANIFEST, write, "ONNX", last=MANIFEST)
