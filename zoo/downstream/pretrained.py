"""Load a trained encoder once, rebuild the data it was trained on, and give the baselines it is compared with.

    from zoo.downstream import Pretrained

    p = Pretrained.load("checkpoints/simclr-fashion-mnist")         # a Hub folder, a repo id or a zoo fit .ckpt
    p = Pretrained.load("timm:resnet18", data="fashion-mnist", data_dir="/usr/share/datasets/fashion-mnist")
    bank, bank_labels = p.embed_all("train")
    baseline = p.random_init(seed=0)                                 # same architecture, fresh weights
    raw = p.raw_inputs()                                             # the inputs themselves, flattened

Sources:

- a zoo Hub folder or repo id (``zoo.from_pretrained``), or a ``zoo fit`` Lightning checkpoint (``.ckpt``,
  ``zoo.hub.load_checkpoint_model``): the model and its training record, which names the datamodule it was trained
  on (class and init args) — :meth:`Pretrained.datamodule` rebuilds it from there;
- ``timm:NAME`` (random weights), ``timm:NAME:/path/weights.safetensors`` (or ``.pth``/``.bin``, read with
  ``weights_only``: no pickled code runs), or a local timm folder (``config.json`` with ``architecture`` +
  ``model.safetensors``, as ``timm``'s ``save_for_hf`` and ``zoo export --format timm`` write it): an image encoder
  zoo did not train. It has no training record, so the data must be given (``data=``). It is wrapped by
  :class:`TimmImageModel`: the first conv takes the data's channels (timm's ``adapt_input_conv`` for weights made
  for RGB), inputs are normalised with the weights' ``pretrained_cfg`` mean/std (averaged over RGB for grey data),
  and resized (antialiased) only for a model that accepts one input size (a ViT); CNNs see the data at its own size.

``data``: a datamodule YAML (a recipe with a ``data:`` key, or ``class_path``/``init_args``), a class path, or a
zoo dataset name (``fashion-mnist``, ``cifar10``, ... for images; ``adult``, ``california``, ... for tables).
``data_dir`` moves the data: records hold the paths of the machine that trained the model (see
:func:`relocate_data`).
"""

from __future__ import annotations

import contextvars
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.base import DataError

#: the method's ``input_key`` → the modality protocols declare
MODALITIES = {"image": "image", "features": "tabular", "skeleton": "skeleton", "audio": "audio"}
#: zoo datamodules a training record's ``data.class`` can name, by module
DATAMODULE_MODULES = (
    "zoo.data.image_files", "zoo.data.imagenet", "zoo.data.images", "zoo.data.tabular", "zoo.data.skeleton",
    "zoo.data.audio_text", "zoo.data.streaming",
)
SPLITS = ("train", "val", "test", "knn_bank")


class SourceError(DataError):
    """A model source (path, repo id, ``timm:`` spec) that cannot be loaded: one line naming it."""


# ---- datamodules ------------------------------------------------------------------------------------------------------
def datamodule_class(name: str) -> type:
    """A datamodule class from a class path (``pkg.mod.Class``) or a zoo datamodule's class name (a training record)."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise DataError(f"datamodule class {name!r} cannot be imported ({e})") from None
    for module in DATAMODULE_MODULES:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:  # an optional extra (litdata) that is not installed
            continue
        if isinstance(cls, type):
            return cls
    raise DataError(f"no zoo datamodule is called {name!r}; pass --data CONFIG.yaml or a class path")


def read_data_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(class_path, init_args)`` from a YAML file: a recipe (its ``data:`` key) or a ``class_path``/``init_args``
    mapping."""
    import yaml

    file = Path(path)
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{file}: not valid YAML ({' '.join(str(e).split())})") from None
    if isinstance(config, dict) and "data" in config:
        config = config["data"]
    if not isinstance(config, dict) or not isinstance(config.get("class_path"), str):
        raise DataError(f"{file}: expected a datamodule config (class_path: ..., init_args: {{...}}) or a recipe with a data: key")
    args = config.get("init_args") or {}
    if not isinstance(args, dict):
        raise DataError(f"{file}: data.init_args must be a mapping, got {type(args).__name__}")
    return config["class_path"], dict(args)


def data_spec(data: str) -> tuple[str, dict[str, Any]]:
    """``(class, init_args)`` of a ``--data`` value: a YAML file, a class path, or a zoo dataset name."""
    if Path(data).is_file():
        return read_data_config(data)
    if data.endswith((".yaml", ".yml")):
        raise DataError(f"--data {data}: no such file")
    if "." in data:
        return data, {}
    from zoo.data.images import ImageDataModule
    from zoo.data.sources import SOURCES as TABLES

    # recipes are named configs/<method>/fashion_mnist.yaml: accept either spelling of a dataset name
    for name in dict.fromkeys((data, data.replace("_", "-"), data.replace("-", "_"))):
        if name in ImageDataModule.DATASETS:
            return "ImageDataModule", {"dataset": name}
        if name in TABLES:
            return "TabularDataModule", {"dataset": name}
    raise DataError(
        f"--data {data}: not a YAML file, a class path or a zoo dataset; datasets: "
        f"{', '.join([*ImageDataModule.DATASETS, *TABLES])}"
    )


def relocate_data(class_name: str, kwargs: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """The init args with their data location moved to ``data_dir``: an image set's ``data_dir``, a skeleton set's
    ``path`` (a file keeps its name), an audio manifest's folder (file names kept), a table's ``path`` (name kept) or
    cache ``data_dir``, an image-files ``root``. A training record holds the paths of the machine that trained."""
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise DataError(f"--data-dir {folder}: no such folder")
    out = dict(kwargs)
    name = class_name.rpartition(".")[2]

    def moved(key: str) -> None:
        if out.get(key):
            out[key] = str(folder / Path(str(out[key])).name)

    if name == "SkeletonDataModule":
        old = Path(str(out.get("path") or ""))
        out["path"] = str(folder / old.name) if old.suffix and folder.is_dir() else str(folder)
    elif name == "AudioTextDataModule":
        moved("manifest")
        moved("test_manifest")
    elif name == "TabularDataModule" and out.get("path"):
        moved("path")
    elif "root" in out or name in ("ImageFilesDataModule", "ImageNetDataModule"):
        out["root"] = str(folder)
    else:
        out["data_dir"] = str(folder)
    return out


def build_datamodule(
    record: dict[str, Any] | None, data: str | None = None, data_dir: str | Path | None = None, **overrides: Any
) -> Any:
    """THE rebuild of a datamodule: from ``data`` (:func:`data_spec`) when given, else from a training record's
    ``data`` entry (``{"class": ..., **init_args}``); ``data_dir`` relocates it (:func:`relocate_data`), and
    ``overrides`` replace init args. Not set up (setup reads the data)."""
    if data is not None:
        class_name, kwargs = data_spec(data)
        what = f"--data {data}"
    else:
        kwargs = dict(record or {})
        class_name = kwargs.pop("class", None)
        if class_name is None:
            raise DataError("no training record naming the data (a model not saved by zoo fit): pass --data CONFIG.yaml or a dataset name")
        what = f"the training record's {class_name}"
    if data_dir is not None:
        kwargs = relocate_data(class_name, kwargs, data_dir)
    kwargs.update(overrides)
    cls = datamodule_class(class_name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise DataError(f"{what}: cannot build the datamodule ({e})") from None


def split_inputs(datamodule: Any, split: str) -> tuple[Any, Tensor]:
    """(inputs [N, ...] as the model's ``embed`` takes them, int64 labels [N]; -1 unknown) of a datamodule split,
    in the split's order: arrays (images, tables), tensors (skeletons) or fixed-length clips (audio)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if hasattr(datamodule, "arrays"):
        datamodule.setup()
        x, y = datamodule.arrays(split)
        labels = torch.from_numpy(np.asarray(y))
        return torch.from_numpy(x), labels.long() if not labels.is_floating_point() else labels
    if hasattr(datamodule, "dataset"):
        datamodule.setup()
        import inspect

        takes_train = "train" in inspect.signature(datamodule.dataset).parameters
        ds = datamodule.dataset(split, train=False) if takes_train else datamodule.dataset(split)
        if hasattr(ds, "skeletons"):
            return ds.skeletons, ds.labels.long()
        items = [ds[i] for i in range(len(ds))]
        key = next(k for k in ("audio", "image", "features") if k in items[0])
        labels = torch.tensor([int(it.get("label", -1)) for it in items], dtype=torch.long)
        return torch.stack([torch.as_tensor(it[key]) for it in items]), labels
    raise DataError(f"{type(datamodule).__name__} has neither arrays(split) nor dataset(split): cannot read its {split} split")


# ---- embedding --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def embed_inputs(model: Any, inputs: Tensor, batch_size: int = 512) -> Tensor:
    """``model.embed`` of ``inputs`` in batches, eval mode, fp32 [N, D] on the CPU."""
    was_training = getattr(model, "training", False)
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device if isinstance(model, nn.Module) else torch.device("cpu")
    try:
        out = [model.embed(inputs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    finally:
        model.train(was_training)
    if not out:
        raise DataError("nothing to embed: the split is empty")
    return torch.cat(out)


# ---- models zoo did not train -----------------------------------------------------------------------------------------
class TimmImageModel(nn.Module):
    """A timm backbone (classifier removed, pooled) with what a zoo datamodule's images need: uint8/[0, 1] input,
    normalised with the weights' ``pretrained_cfg`` mean/std, resized only when the model takes one size."""

    input_key = "image"

    def __init__(self, architecture: str, in_chans: int, weights: str | None = None, model_args: dict[str, Any] | None = None,
                 pretrained_cfg: dict[str, Any] | None = None, name: str | None = None) -> None:  # fmt: skip
        super().__init__()
        import timm

        from zoo.encoders.image import create_backbone
        from zoo.validation import fixed_image_size

        if not timm.is_model(architecture):
            raise SourceError(f"timm:{architecture}: not a timm model name (timm.list_models() lists them)")
        # a timm folder's model_args name the channels and classes it was saved with; the data decides them here
        model_args = {k: v for k, v in (model_args or {}).items() if k not in ("in_chans", "num_classes")}
        self.architecture, self.weights, self.model_args = architecture, weights, model_args
        self.method_name = name or f"timm:{architecture}"
        try:
            self.backbone = create_backbone(architecture, in_chans, self.model_args, weights or False)
        except (FileNotFoundError, ValueError) as e:
            raise SourceError(f"{self.method_name}: {e}") from None
        cfg = {**self.backbone.pretrained_cfg, **(pretrained_cfg or {})}
        mean, std = list(cfg.get("mean") or (0.5,)), list(cfg.get("std") or (0.5,))
        if len(mean) != in_chans:  # grey data through RGB statistics: their mean, as timm adapts the first conv
            mean, std = [float(np.mean(mean))] * in_chans, [float(np.mean(std))] * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.in_chans = in_chans
        self.size = fixed_image_size(self)
        self.feature_dim = self.num_features = int(self.backbone.num_features)
        self._training_record: dict[str, Any] = {}

    def embed(self, images: Tensor) -> Tensor:
        from zoo.encoders.image import normalize_images

        x = normalize_images(images, self.mean, self.std)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return self.backbone(x)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)

    def embedding_encoder(self) -> nn.Module:
        return self.backbone

    def training_record(self) -> dict[str, Any]:
        return dict(self._training_record)

    def init_args(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "in_chans": self.in_chans, "model_args": self.model_args, "name": self.method_name}


def parse_timm_source(src: str) -> tuple[str, str | None]:
    """``timm:NAME[:FILE]`` → (NAME, FILE or None)."""
    _, _, rest = src.partition(":")
    name, _, weights = rest.partition(":")
    if not name:
        raise SourceError(f"{src}: expected timm:NAME or timm:NAME:/path/weights.safetensors")
    return name, weights or None


def is_timm_folder(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "architecture" in config and "method" not in config


# ---- the loaded model -------------------------------------------------------------------------------------------------
def load_model(src: str | Path) -> Any:
    """A zoo model (eval mode) from a Hub folder / repo id or a ``zoo fit`` ``.ckpt``.

    Built in a fresh ``contextvars`` context: LightningCLI instantiates models inside a context that hands *its*
    config to every ``save_hyperparameters`` call, which would otherwise become the loaded model's."""
    import zoo
    from zoo.hub import load_checkpoint_model

    if str(src).endswith(".ckpt"):
        return contextvars.Context().run(load_checkpoint_model, src)[0].eval()
    if Path(src).is_file():
        raise SourceError(f"{src}: a file that is not a .ckpt; give a Hub folder, a repo id, a zoo fit checkpoint or timm:NAME")
    return contextvars.Context().run(zoo.from_pretrained, str(src)).eval()


def random_init_model(model: Any, seed: int) -> Any:
    """A zoo model of ``model``'s architecture with fresh weights: built from its init args under
    ``torch.manual_seed(seed)`` in a forked RNG (nothing drawn before or after changes them), without any initial
    weights its config names (``encoder.pretrained``), in a fresh ``contextvars`` context (see :func:`load_model`)."""
    from zoo.encoders.image import saved_weights_follow

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with saved_weights_follow():
            return contextvars.Context().run(lambda: type(model)(**model.init_args()))


@dataclass
class Pretrained:
    """A loaded encoder (``model``: anything with ``embed``), its training ``record`` and where its data comes from.

    ``name`` labels it in result tables (``"pretrained"`` for a zoo model; ``"timm:resnet18"``; ``"random-init"``,
    ``"raw-input"`` for the baselines)."""

    model: Any
    record: dict[str, Any]
    source: str
    name: str = "pretrained"
    data: str | None = None
    data_dir: str | None = None
    data_overrides: dict[str, Any] = field(default_factory=dict)
    _datamodule: Any = field(default=None, repr=False)
    _embeddings: dict[tuple[str, int | None], tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, src: str | Path, data: str | None = None, data_dir: str | Path | None = None,
             like: Pretrained | None = None, **data_overrides: Any) -> Pretrained:  # fmt: skip
        """Load ``src`` once (see the module docstring). ``data``/``data_dir``/``data_overrides`` say where
        :meth:`datamodule` finds the data: by default the training record's datamodule; ``like``: an encoder
        without a record (timm) reads the data of this other loaded model (the same datamodule object)."""
        src = str(src)
        data_dir = None if data_dir is None else str(data_dir)
        if src.startswith("timm:") or is_timm_folder(Path(src)):
            return cls._load_timm(src, data, data_dir, data_overrides, like)
        model = load_model(src)
        record = model.training_record()
        return cls(model, record, src, "pretrained", data, data_dir, dict(data_overrides))

    @classmethod
    def _load_timm(cls, src: str, data: str | None, data_dir: str | None, overrides: dict[str, Any], like: Pretrained | None) -> Pretrained:
        if data is None and like is None:
            raise SourceError(f"{src}: an encoder zoo did not train has no training record; pass --data (a datamodule YAML or a dataset name)")
        shell = cls(None, {}, src, src, data, data_dir, dict(overrides))
        if data is None and like is not None:
            shell.record = {"data": like.record.get("data")}
            shell.data, shell.data_dir, shell.data_overrides = like.data, like.data_dir, dict(like.data_overrides)
            shell._datamodule = like.datamodule()
        dm = shell.datamodule()
        dm.setup()
        shape = getattr(dm, "image_shape", None)
        if shape is None:
            raise SourceError(f"{src}: a timm encoder takes images; --data {data} gives {type(dm).__name__}")
        if src.startswith("timm:"):
            name, weights = parse_timm_source(src)
            shell.model = TimmImageModel(name, int(shape[0]), weights, name=src.split(":", 2)[0] + ":" + name)
        else:
            folder = Path(src)
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            weights = folder / "model.safetensors"
            if not weights.is_file():
                raise SourceError(f"{folder}: a timm folder without model.safetensors (zoo loads safetensors only)")
            shell.model = TimmImageModel(config["architecture"], int(shape[0]), str(weights), config.get("model_args"),
                                         config.get("pretrained_cfg"), name=f"timm:{config['architecture']}")  # fmt: skip
            shell.name = f"timm:{folder.name}"
        shell.model.eval()
        return shell

    # ---- what it is ----------------------------------------------------------------------------------------------
    @property
    def input_key(self) -> str:
        return type(self.model).input_key if hasattr(type(self.model), "input_key") else self.model.input_key

    @property
    def modality(self) -> str:
        return MODALITIES.get(self.input_key, self.input_key)

    # ---- data ----------------------------------------------------------------------------------------------------
    def datamodule(self, **overrides: Any) -> Any:
        """The datamodule of this model's data (the training record's, or ``data``), relocated to ``data_dir``, with
        ``overrides`` over its init args. Built once per set of overrides' absence: ``datamodule()`` is cached, so
        every protocol reads the same splits."""
        if not overrides and self._datamodule is not None:
            return self._datamodule
        dm = build_datamodule(self.record.get("data"), self.data, self.data_dir, **{**self.data_overrides, **overrides})
        if not overrides:
            self._datamodule = dm
        return dm

    def inputs(self, split: str) -> tuple[Any, Tensor]:
        """(inputs, labels) of a split of :meth:`datamodule`."""
        return split_inputs(self.datamodule(), split)

    def embed_all(self, split: str, limit: int | None = None, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        """(embeddings fp32 [N, D], labels [N]) of the first ``limit`` rows (all: None) of a split; computed once
        (kNN and the linear probe read the same embeddings)."""
        key = (split, limit)
        if key not in self._embeddings:
            x, y = self.inputs(split)
            if limit is not None:
                x, y = x[:limit], y[:limit]
            self._embeddings[key] = (embed_inputs(self.model, x, batch_size), y)
        return self._embeddings[key]

    # ---- baselines -----------------------------------------------------------------------------------------------
    def random_init(self, seed: int = 0) -> Pretrained:
        """The same architecture with fresh weights: built from the same init args under ``torch.manual_seed(seed)``
        in a forked RNG (so nothing drawn before, and nothing after, changes them), without any initial weights its
        config names (``encoder.pretrained``). Same seed, same torch and timm: bit-identical weights on any machine
        and thread count (tests/downstream/test_pretrained.py)."""
        if isinstance(self.model, TimmImageModel):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                m = self.model
                model = TimmImageModel(m.architecture, m.in_chans, None, m.model_args, None, name=m.method_name)
        else:
            model = random_init_model(self.model, seed)
        model.eval()
        return self._baseline(model, "random-init")

    def raw_inputs(self) -> Pretrained:
        """The raw-input baseline: the model's inputs themselves, flattened to float vectors (pixels, normalised
        coordinates, preprocessed table features, waveform samples)."""
        return self._baseline(RawInputs(self.input_key), "raw-input")

    def _baseline(self, model: Any, name: str) -> Pretrained:
        # the same datamodule object: a baseline is scored on exactly the splits the model is
        return Pretrained(model, self.record, self.source, name, self.data, self.data_dir, dict(self.data_overrides), self.datamodule())


class RawInputs(nn.Module):
    """``embed(x) = x.float().flatten(1)``: what a representation is compared with."""

    def __init__(self, input_key: str) -> None:
        super().__init__()
        self.input_key = input_key

    def embed(self, inputs: Tensor) -> Tensor:
        return inputs.float().flatten(1)

    def training_record(self) -> dict[str, Any]:
        return {}
