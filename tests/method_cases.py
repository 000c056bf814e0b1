"""One tiny configuration per registered method, for the tests that run every method the same way (distributed
equivalence, mixed precision).

For each case: ``build()`` the model (seeded, so two calls give the same weights), ``raw_batch(n, seed)`` what its
datamodule would yield (views and masks are then drawn by the method on the device), and ``batch(model, n, seed)``
the same with the method's inputs (views, masks) already drawn by ``model.make_inputs``, as after the device transfer:
what ``ssl_step`` reads, and what every rank of a distributed run can be handed its share of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from tests.conftest import TINY_ENCODER
from zoo.data.skeleton_generator import generate_actions
from zoo.methods.base import SSLMethod
from zoo.nn.tokenizers import build_vocabulary
from zoo.registry import get_method

# plain SGD in the step tests: Adam turns float noise in exactly-zero gradients (a ViT's key bias) into ±lr updates
SGD = {"optimizer": "sgd", "lr": 0.05, "warmup_epochs": 0}
TINY_HEADS = {"projector_hidden_dim": 16, "projector_out_dim": 8}
TINY_VIT = {"img_size": 8, "patch_size": 2, "in_chans": 1, "embed_dim": 16, "depth": 1, "num_heads": 2}
TINY_PREDICTOR = {"predictor_dim": 16, "predictor_depth": 1, "predictor_heads": 2}
TABLE_SCHEMA = {"numeric": ["a", "b", "c"], "categorical": ["d", "e"], "cardinalities": [4, 3]}
CAPTIONS = ["a fast loud piano melody", "a slow soft organ tune", "quick bright strings", "gentle low flute"]
SLAP_TINY = {
    "audio_encoder": {"channels": [4, 8], "log_mel": {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 16}},
    "text_encoder": {"embed_dim": 16, "depth": 1, "num_heads": 2, "max_length": 12, "dropout": 0.0},
    "projector_out_dim": 16, "predictor_hidden_dim": 32, "crop_seconds": 0.25, "vocabulary": build_vocabulary(CAPTIONS),
}  # fmt: skip


def _images(n: int, seed: int) -> Tensor:
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _image_batch(n: int, seed: int) -> dict[str, Any]:
    return {"image": _images(n, seed)}


def _table_rows(n: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"features": torch.cat([torch.rand(n, 3, generator=g), torch.randint(0, 3, (n, 2), generator=g).float()], dim=1)}


def _skeletons(n: int, seed: int) -> dict[str, Any]:
    data, _ = generate_actions(n, seed=seed, max_frames=8)
    return {"skeleton": torch.from_numpy(data)}


def audio_batch(n: int = 4, seed: int = 0) -> dict[str, Any]:
    """Clips of noise with paired captions (and second captions), as AudioTextDataModule yields them."""
    g = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(n, 4000, generator=g) * 0.1, "audio_length": torch.full((n,), 4000),
        "caption": [CAPTIONS[i % 4] for i in range(n)], "caption2": [CAPTIONS[(i + 1) % 4] for i in range(n)],
    }  # fmt: skip


@dataclass(frozen=True)
class MethodCase:
    method: str
    kwargs: dict[str, Any]
    raw_batch: Callable[[int, int], dict[str, Any]]

    def build(self, **overrides: Any) -> SSLMethod:
        torch.manual_seed(0)
        return get_method(self.method)(**{**self.kwargs, **overrides})

    def batch(self, model: SSLMethod, n: int, seed: int = 0) -> dict[str, Any]:
        """``raw_batch(n, seed)`` with ``model``'s inputs for it: the batch ``ssl_step`` reads."""
        return with_inputs(model, self.raw_batch(n, seed))


def with_inputs(model: SSLMethod, raw: dict[str, Any]) -> dict[str, Any]:
    """A raw batch with the inputs (views, masks) ``model`` draws for it, as after the device transfer in training."""
    return {**raw, **model.make_inputs(raw)}


CASES: dict[str, MethodCase] = {
    "simclr": MethodCase("simclr", {"encoder": TINY_ENCODER, **TINY_HEADS, **SGD}, _image_batch),
    "byol": MethodCase(
        "byol", {"encoder": TINY_ENCODER, **TINY_HEADS, "predictor_hidden_dim": 16, "ema_tau_base": 0.9, **SGD},
        _image_batch,
    ),
    "swav": MethodCase(
        "swav",
        {
            "encoder": TINY_ENCODER, "num_small_crops": 2, "large_crop_size": 8, "small_crop_size": 6, **TINY_HEADS,
            "num_prototypes": 12, "freeze_prototypes_steps": 1, **SGD,
        },
        _image_batch,
    ),  # fmt: skip
    "ijepa": MethodCase("ijepa", {"encoder": TINY_VIT, "masking": {"min_keep": 2}, **TINY_PREDICTOR, "ema_tau_base": 0.9, **SGD}, _image_batch),
    "dmt_jepa": MethodCase(
        "dmt_jepa", {"encoder": TINY_VIT, "masking": {"min_keep": 2}, **TINY_PREDICTOR, "ema_tau_base": 0.9, **SGD}, _image_batch,
    ),
    "tjepa": MethodCase(
        "tjepa",
        {
            "feature_schema": TABLE_SCHEMA, "encoder": {"embed_dim": 16, "depth": 1, "num_heads": 2, "ff_dim": 16, "num_reg_tokens": 2},
            "predictor_dim": 8, "predictor_depth": 1, "ema_tau_base": 0.9, **SGD,
        },
        _table_rows,
    ),  # fmt: skip
    "skeleton_mae": MethodCase(
        "skeleton_mae", {"encoder": {"embed_dim": 8, "depth": 2}, "mask_strategy": "random_parts", "num_mask_parts": 2, **SGD},
        _skeletons,
    ),
    "slap": MethodCase("slap", {**SLAP_TINY, "ema_tau_base": 0.9, **SGD}, audio_batch),
    "slap_infonce": MethodCase("slap", {**SLAP_TINY, "loss": "infonce", **SGD}, audio_batch),
}


def take(batch: Any, index: Tensor) -> Any:
    """The samples ``index`` of a batch: tensors, lists (captions), dicts, and mask tuples whose ``targets`` are
    ``[num_targets, B, K]`` (batch on dim 1)."""
    if isinstance(batch, Tensor):
        return batch[index]
    if isinstance(batch, dict):
        return {k: take(v, index) for k, v in batch.items()}
    if hasattr(batch, "context") and hasattr(batch, "targets"):  # zoo.nn.tokens.TokenMasks (NamedTuple)
        fields = {"context": batch.context[index], "targets": batch.targets[:, index]}
        return batch._replace(**fields) if hasattr(batch, "_replace") else replace(batch, **fields)
    if isinstance(batch, list) and batch and isinstance(batch[0], str):
        return [batch[i] for i in index.tolist()]
    if isinstance(batch, (list, tuple)):
        return type(batch)(take(v, index) for v in batch)
    raise TypeError(f"take: cannot index a {type(batch).__name__}")
