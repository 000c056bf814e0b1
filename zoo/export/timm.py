"""``zoo export --format timm`` / ``zoo push --format timm``: the image encoder as a timm model folder.

The folder is what timm's own ``save_for_hf`` writes (``config.json`` with ``architecture``, ``model_args`` and
``pretrained_cfg``; ``model.safetensors``), so ``timm.create_model("local-dir:OUT", pretrained=True)`` (or ``"hf-hub:ORG/NAME"``
once pushed; without ``pretrained=True`` timm builds the architecture with random weights) rebuilds it. ``pretrained_cfg`` carries the training data's input size, channels and mean/std and
``num_classes: 0``: the model returns pooled features.

Preprocessing differs from zoo's in one place: a zoo encoder normalises raw images itself (``uint8`` or float in
[0, 1]), a timm model takes normalised float input, ``(x - mean) / std`` with the ``pretrained_cfg`` statistics
(``timm.data.resolve_data_config`` + ``create_transform`` do this for PIL images). With that,
``timm_model((x - mean) / std) == zoo_model.embed(x)``; the export checks it (max abs diff <= 1e-5) before it
writes anything.

- timm backbones (``zoo.encoders.image``): the same architecture and ``model_kwargs``. The small-image stem (a 3×3
  stride-1 first conv without max-pool) is not a timm option, so encoders built with it do not export.
- The JEPA ViT (``zoo.encoders.vit``) maps onto timm's ``VisionTransformer`` without a class token, with
  ``global_pool="avg"`` and ``fc_norm=False`` (final LayerNorm on the tokens, then the mean, as ``embed``); the fixed
  2-D sin-cos positions become the ``pos_embed`` parameter's values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from zoo.encoders.image import ImageEncoder
from zoo.encoders.vit import ViTEncoder
from zoo.export import ExportError, image_input_shape, load_model, max_abs_diff, write_folder

#: registered timm name under which the ViT is saved; ``model_args`` in config.json set every dimension
VIT_ARCHITECTURE = "vit_base_patch16_224"
PARITY_ATOL = 1e-5
_SOURCE_CFG_KEYS = ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes", "description", "hf_hub_id", "url")


def is_timm_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and "architecture" in config and "pretrained_cfg" in config


def to_timm(model: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A timm model with the weights of ``model``'s embedding encoder, and the model_args that rebuild it."""
    encoder = model.embedding_encoder()
    if isinstance(encoder, ViTEncoder):
        vit = encoder.backbone
        args = {
            "img_size": encoder.img_size, "patch_size": encoder.patch_size, "in_chans": encoder.in_chans,
            "embed_dim": encoder.num_features, "depth": len(vit.blocks), "num_heads": encoder.num_heads,
            "mlp_ratio": vit.blocks[0].mlp.fc1.out_features / encoder.num_features,
            "class_token": False, "global_pool": "avg", "fc_norm": False, "num_classes": 0,
            **(model.hparams.get("encoder") or {}).get("model_kwargs", {}),
        }
        architecture = VIT_ARCHITECTURE
        state = {**vit.state_dict(), "pos_embed": encoder.pos_embed.detach().clone()}
    elif isinstance(encoder, ImageEncoder):
        stems = {"small_image_stem (3x3 stride-1 stem, no max-pool)": encoder.config["small_image_stem"],
                 "stem_pool: false (no max-pool)": not encoder.config["stem_pool"]}  # fmt: skip
        stem = next((name for name, used in stems.items() if used), None)
        if stem:
            raise ExportError(
                f"{encoder.config['name']} with {stem} has no timm equivalent; timm export needs an encoder built "
                "from timm arguments alone"
            )
        architecture = encoder.config["name"]
        args = {"in_chans": encoder.in_chans, "num_classes": 0, **encoder.config["model_kwargs"]}
        state = encoder.backbone.state_dict()
    else:
        raise ExportError(f"{type(model).__name__}: timm export covers image encoders, not {type(encoder).__name__}")
    try:
        timm_model = timm.create_model(architecture, pretrained=False, **args)
        timm_model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ExportError(f"{architecture} {args} does not take the encoder's weights: {str(e).splitlines()[0]}") from None
    # the registry's default cfg describes timm's own ImageNet weights (tag, paper, licence): not these weights
    timm_model.pretrained_cfg = {k: v for k, v in timm_model.pretrained_cfg.items() if k not in _SOURCE_CFG_KEYS}
    return timm_model.eval(), args


def _data_config(model: Any, input_size: tuple[int, int, int] | None) -> dict[str, Any]:
    encoder = model.embedding_encoder()
    return {
        "input_size": image_input_shape(model, input_size),
        "mean": tuple(round(float(v), 6) for v in encoder.mean.flatten()),
        "std": tuple(round(float(v), 6) for v in encoder.std.flatten()),
        # zoo evaluates whole images at their stored size: no centre crop
        "crop_pct": 1.0,
        "interpolation": "bilinear",
    }


def check_timm_parity(folder: Path, model: Any, data_config: dict[str, Any], seed: int = 0) -> float:
    """Largest |timm.create_model("local-dir:folder", pretrained=True)(normalised x) − embed(x)| on random images
    in [0, 1]."""
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = loaded.pretrained_cfg
    for key in ("input_size", "mean", "std"):
        if tuple(cfg[key]) != tuple(data_config[key]):
            raise ExportError(f"{folder}: pretrained_cfg {key} = {cfg[key]}, expected {data_config[key]}")
    if cfg.get("num_classes") != 0 or loaded.num_classes != 0:
        raise ExportError(f"{folder}: the timm model has a classifier (num_classes {loaded.num_classes}); expected 0")
    x = torch.rand(4, *data_config["input_size"], generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        diff = max_abs_diff(loaded((x - mean) / std), model.embed(x))
    if not diff <= PARITY_ATOL:
        raise ExportError(f"timm parity check failed: max |timm - embed| = {diff:.3g} > {PARITY_ATOL:g}")
    return diff


README = """# {name}

A zoo {method} image encoder exported as a timm model (`zoo export --format timm`).

```python
import timm, torch
model = timm.create_model("local-dir:PATH", pretrained=True)  # or "hf-hub:ORG/NAME" once pushed
cfg = timm.data.resolve_data_config({{}}, model=model)  # input_size {input_size}, mean {mean}, std {std}
x = torch.rand(8, *cfg["input_size"])  # images in [0, 1]
mean, std = torch.tensor(cfg["mean"]).view(1, -1, 1, 1), torch.tensor(cfg["std"]).view(1, -1, 1, 1)
features = model((x - mean) / std)  # [8, {dim}]: equals zoo's model.embed(x) (checked at export: {diff:.2g})
```
"""


def export_timm(source: str | Path, out: str | Path, *, input_size: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Write ``out/`` with timm's ``save_for_hf``; returns architecture, model_args and the measured parity."""
    from timm.models import save_for_hf

    model = load_model(source)
    timm_model, args = to_timm(model)
    data_config = _data_config(model, input_size)

    def write(folder: Path) -> dict[str, Any]:
        save_for_hf(timm_model, str(folder), model_args=args, safe_serialization=True, data_config=data_config)
        diff = check_timm_parity(folder, model, data_config)
        architecture = json.loads((folder / "config.json").read_text())["architecture"]
        (folder / "README.md").write_text(README.format(
            name=Path(out).name, method=model.method_name, input_size=data_config["input_size"], mean=data_config["mean"],
            std=data_config["std"], dim=timm_model.num_features, diff=diff,
        ))
        return {"architecture": architecture, "model_args": args, "parity_max_abs_diff": diff}

    return write_folder(out, is_timm_folder, write, "timm", last="config.json")


def push_timm(source: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Export (with the parity check) and push with timm's ``push_to_hf_hub``; returns the commit URL."""
    import tempfile

    from timm.models import push_to_hf_hub

    with tempfile.TemporaryDirectory() as tmp:
        export_timm(source, Path(tmp) / "timm")
        loaded = timm.create_model(f"local-dir:{Path(tmp) / 'timm'}", pretrained=True)
        data_config = {k: loaded.pretrained_cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation")}
        return str(push_to_hf_hub(
            loaded, repo_id, private=private, token=token, safe_serialization=True, data_config=data_config,
            task_name="image-feature-extraction",
        ))
