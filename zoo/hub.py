"""Hub format for every method: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Built on huggingface_hub's ``ModelHubMixin``. A saved model is a folder with
- ``config.json``: the method's init args plus ``"method": <registry name>``;
- ``model.safetensors``: the state dict (the only weights format zoo loads: no pickle, no remote code);
- ``README.md``: a model card with the data, recipe and metrics of the run that produced the weights.

``save_pretrained`` writes into a new or empty folder, or over an earlier zoo save: it replaces only those three
files, each written to a temporary name first, and never deletes or uploads anything it did not write
(:func:`write_hub_files`). ``zoo.from_pretrained`` reads ``config.json`` and dispatches on ``"method"``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, ModelHubMixin, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from safetensors.torch import save_file, save_model

from zoo.encoders.image import saved_weights_follow
from zoo.network import hub_unreachable_reason

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: the files a zoo save writes, in the order they are put in place (config.json last: see write_hub_files)
HUB_FILES = (WEIGHTS_NAME, CARD_NAME, CONFIG_NAME)
#: config.json keys that are metadata, not init args
META_KEYS = ("method", "zoo_version")
#: weight files zoo refuses to load: they are pickles and can run code
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "model.ckpt", "model.pt", "model.pth")

T = TypeVar("T", bound="HubMixin")


class PretrainedLoadError(ValueError):
    """A pretrained folder or repo that cannot be loaded as it is (missing files, wrong method, bad weights)."""


class HubFolderError(ValueError):
    """A save target that zoo refuses to write into (a file, or a folder of someone else's files)."""


logger = logging.getLogger(__name__)


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

## Usage

```python
import zoo

model = zoo.from_pretrained("{{ model_id }}")
embeddings = model.embed(inputs)  # {{ input_note }}
```

`model.encoder` is a plain `torch.nn.Module`: put a linear layer on `embed(...)` for a linear probe, or fine-tune it.

## Training data

{{ data_section }}

## Recipe

{{ recipe_section }}

Method config (`config.json`):

```json
{{ config_json }}
```

## Metrics

{{ metrics_section }}

## Limitations

{{ limitations }}
"""


#: card tags for a method's input (``input_key``): the modality a Hub search filters on
MODALITY_TAGS = {"image": ["image"], "features": ["tabular"], "audio": ["audio", "text"], "skeleton": ["skeleton", "video"]}
#: logged metric prefix → the dataset split of the model-index
METRIC_SPLITS = {"val": "validation", "test": "test"}
#: a metric key whose name is an identifier (``test/knn_acc``, ``val/a2t_R@1``), not a prose description
_METRIC_KEY = re.compile(r"^(val|test)/([A-Za-z0-9_@.\-]+)$")


def dataset_label(data: dict[str, Any]) -> str | None:
    """The name of a run's training data from its record: the dataset name, else what the source files say."""
    if data.get("dataset") or data.get("source"):
        return str(data.get("dataset") or data.get("source"))
    if data.get("data_format") == "generated":
        return "generated skeleton actions"
    if data.get("manifest"):  # audio-text manifests live in a folder named after the corpus
        return Path(str(data["manifest"])).parent.name
    return None


def eval_results(metrics: dict[str, Any], dataset: str | None, modality: str) -> list[EvalResult] | None:
    """model-index entries for the held-out metrics (``val/…``, ``test/…``) named by an identifier; training-loop
    values (``train/…``, learning rates) and prose-labelled comparisons stay in the card's table only."""
    if not dataset:
        return None
    results = []
    for key, value in metrics.items():
        match = _METRIC_KEY.match(key)
        if match is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        split, name = match.groups()
        results.append(EvalResult(
            task_type="feature-extraction", task_name=f"{modality} feature extraction", dataset_type=re.sub(r"[^\w.-]+", "-", dataset),
            dataset_name=dataset, dataset_split=METRIC_SPLITS[split], metric_type=name, metric_name=name,
            metric_value=value,
        ))
    return results or None


def card_for_repo(text: str, repo_id: str) -> str:
    """The card ``text`` with its usage snippet loading ``repo_id`` (the folder's local path until it is pushed)."""
    return re.sub(r'zoo\.from_pretrained\("[^"\n]*"\)', lambda _: f'zoo.from_pretrained("{repo_id}")', text, count=1)


def init_parameter_names(cls: type) -> set[str]:
    """Init-arg names of ``cls``, following ``**kwargs`` forwarded to base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _umask_mode(mode: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def is_hub_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a zoo save: a config.json with a ``"method"``, or (a save interrupted between its
    renames, which takes config.json away first) a model.safetensors whose metadata names a method."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        if isinstance(config, dict) and "method" in config:
            return True
    except (OSError, ValueError):
        pass
    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt", device="cpu") as f:
            return "method" in (f.metadata() or {})
    except Exception:  # missing, or not a safetensors file: not ours
        return False


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-(?P<pid>\d+)$")


def _temp_path(folder: Path, name: str, kind: str) -> Path:
    return folder / f".{name}.{kind}-{os.getpid()}"


def _remove_stale_temporaries(folder: Path, names: set[str] | frozenset[str] = frozenset(HUB_FILES)) -> None:
    """Temporaries of ``names`` that an earlier save killed mid-way left behind (its process is gone); a live save's
    stay."""
    for path in folder.iterdir():
        match = _TEMP_NAME.match(path.name)
        if not match or match["name"] not in names or not path.is_file():
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (PermissionError, OverflowError):  # PermissionError: alive, another user's
            pass


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:  # a file system without hard links
        shutil.copy2(source, destination)


def write_hub_files(target: str | Path, writers: dict[str, Callable[[Path], None]]) -> list[str]:
    """Write zoo's own files into ``target`` (new, empty or an earlier zoo save) and return the names of those that
    replaced an earlier version; :func:`replace_files` with a zoo Hub folder's rules."""
    return replace_files(
        target, writers, last=CONFIG_NAME, is_ours=is_hub_folder,
        refusal="is not empty and is not a zoo Hub folder (no config.json with a 'method'); zoo will not write among "
                "other files: choose a new or empty folder",
    )


def replace_files(
    target: str | Path, writers: dict[str, Callable[[Path], None]], *, last: str, is_ours: Callable[[Path], bool],
    refusal: str,
) -> list[str]:
    """Write the files ``writers`` make into ``target`` and return the names of those that replaced an earlier version.

    ``target`` must be new, empty or an earlier save of the same kind (``is_ours``); anything else in it (a user's
    notes, a subfolder, other weights) is left alone. Each file is written in full (and fsynced) under a temporary
    name first; only then are they moved in, ``last`` (the file that marks a complete folder, e.g. config.json) last:
    the old ``last`` is set aside before the first move, so a save killed between two moves leaves a folder *without*
    it (which fails to load with a clear message and which the next save recognises and repairs), never a config
    beside weights it did not describe. A move that fails puts every earlier file back.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise HubFolderError(f"{target} is a file; save into a folder (new, empty, or an earlier save)")
    if target.is_dir():
        _remove_stale_temporaries(target, set(writers))
        if any(target.iterdir()) and not is_ours(target):
            raise HubFolderError(f"{target} {refusal}")
    target.mkdir(parents=True, exist_ok=True)
    names = [name for name in writers if name != last] + ([last] if last in writers else [])
    temps: dict[str, Path] = {}
    backups: dict[str, Path] = {}  # previous versions, kept until the new ones are all in place
    placed: list[str] = []
    try:
        for name in names:
            temps[name] = _temp_path(target, name, "tmp")
            writers[name](temps[name])
            os.chmod(temps[name], _umask_mode(0o666))  # some writers make 0600 files
            with open(temps[name], "rb") as f:
                os.fsync(f.fileno())
        for name in names:
            if (target / name).exists():
                backup = _temp_path(target, name, "old")
                if name == last:  # set aside: from here until the last rename the folder has no such file
                    os.replace(target / name, backup)
                else:  # a second link: the old file stays in place until the rename below replaces it
                    _link_or_copy(target / name, backup)
                backups[name] = backup
        for name in names:
            os.replace(temps[name], target / name)
            placed.append(name)
    except BaseException:
        for name in names:
            if name in backups and (name in placed or name == last):
                os.replace(backups[name], target / name)
            elif name in backups:  # still in place (a rename between two links of one file would do nothing)
                backups[name].unlink()
            elif name in placed:
                (target / name).unlink(missing_ok=True)
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    for backup in backups.values():
        backup.unlink(missing_ok=True)
    return [name for name in names if name in backups]


def _markdown_table(rows: dict[str, Any], header: tuple[str, str]) -> str:
    if not rows:
        return "_none recorded_"
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def _omitted_note(omitted: list[str]) -> str:
    if not omitted:
        return ""
    return (
        f"\n\nInference export: {', '.join(f'`{n}`' for n in omitted)} are not in the file; `from_pretrained` "
        "rebuilds them from the online networks, as the method initialises them. Embeddings and fine-tuning are "
        "unaffected; continuing the original pre-training run exactly needs its Lightning checkpoint."
    )


def resolve_file(model_id: str, filename: str, **download_kwargs: Any) -> Path:
    """Path of ``filename`` in a local folder or, for a repo id, in the local Hub cache (downloaded if needed)."""
    if os.path.isdir(model_id):
        path = Path(model_id) / filename
        if not path.is_file():
            hint = ""
            if filename == WEIGHTS_NAME:
                pickles = [f for f in PICKLE_WEIGHT_FILES if (Path(model_id) / f).exists()]
                if pickles:
                    hint = f"; found {pickles[0]}, a pickle, which zoo refuses to load (only safetensors are loaded)"
            raise PretrainedLoadError(f"{model_id}: no {filename} in this folder{hint}")
        return path
    if os.path.exists(model_id):
        raise PretrainedLoadError(f"{model_id} is a file; from_pretrained takes a folder with {CONFIG_NAME} and {WEIGHTS_NAME} or a Hub repo id")
    try:
        validate_repo_id(model_id)
    except HFValidationError:
        raise PretrainedLoadError(f"{model_id}: no such folder, and not a Hub repo id (org/name)") from None
    offline = None if download_kwargs.get("local_files_only") else hub_unreachable_reason()
    if offline:  # the local cache only: huggingface_hub would retry for ~25 s before using it
        download_kwargs = {**download_kwargs, "local_files_only": True}
    try:
        return Path(hf_hub_download(repo_id=model_id, filename=filename, **download_kwargs))
    except (HfHubHTTPError, OSError) as e:  # offline, unknown repo, missing file, no access
        if offline:
            raise PretrainedLoadError(f"{model_id}: could not get {filename} from the Hub: {offline}, and it is not in the local Hub cache") from None
        reason = " ".join(str(e).split())
        raise PretrainedLoadError(f"{model_id}: could not get {filename} from the Hub ({type(e).__name__}: {reason})") from None


class HubError(ValueError):
    """A Hub request (upload) that failed: offline, no access, bad token."""


def read_config(model_id: str, **download_kwargs: Any) -> dict[str, Any]:
    path = resolve_file(model_id, CONFIG_NAME, **download_kwargs)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PretrainedLoadError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "method" not in config:
        raise PretrainedLoadError(f"{path}: not a zoo config (no 'method' key)")
    return config


def state_dict_problems(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], omitted: tuple[str, ...] = ()) -> str:
    """One line naming the missing, unexpected and mis-shaped tensors of ``shapes`` against ``model`` (leaving out
    the sub-modules ``omitted``); "" if none."""
    prefixes = tuple(f"{name}." for name in omitted)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not (prefixes and k.startswith(prefixes))}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    mismatched = [f"{k}: file {shapes[k]} vs model {expected[k]}" for k in sorted(set(shapes) & set(expected)) if shapes[k] != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {unexpected[:8]}")
    if mismatched:
        problems.append(f"shape mismatch: {mismatched[:8]}")
    return "; ".join(problems)


def load_safetensors_strict(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Load ``path`` into ``model``; any missing, unexpected or wrongly shaped tensor is one clear error. Sub-modules
    that an ``inference_only`` save left out (named in the metadata) are rebuilt by the model. Returns the file's
    metadata."""
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            file_keys = set(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in file_keys}
            state = {k: f.get_tensor(k) for k in file_keys & set(expected)}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise PretrainedLoadError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        omitted = json.loads(metadata.get("omitted_modules", "[]"))
    except json.JSONDecodeError:
        omitted = None
    if not isinstance(omitted, list) or not all(isinstance(n, str) for n in omitted):
        raise PretrainedLoadError(f"{path}: unreadable 'omitted_modules' metadata {metadata.get('omitted_modules')!r}")
    rebuildable = set(getattr(model, "hub_omittable_modules", list)())
    if not set(omitted) <= rebuildable:
        raise PretrainedLoadError(
            f"{path} leaves out {sorted(set(omitted) - rebuildable)}, which {type(model).__name__} cannot rebuild"
        )
    problems = state_dict_problems(model, shapes, tuple(omitted))
    if problems:
        raise PretrainedLoadError(f"{path} does not match {type(model).__name__} built from its config.json: {problems}")
    model.load_state_dict(state, strict=not omitted)
    if omitted:
        model.hub_restore_modules(omitted)  # type: ignore[operator]
    return metadata


class HubMixin(ModelHubMixin, library_name="zoo", tags=["self-supervised-learning", "zoo"]):
    """Hub save/load for zoo methods. Expects ``method_name`` (set by ``@register_method``) and ``self.hparams``."""

    method_name: str = ""

    def set_results(self, results: list[dict[str, Any]]) -> None:
        """Keep evaluation results (entries of the results record: protocol, metric, value, std, seeds, model,
        dataset, split, settings) on the model: ``training_record()["results"]`` returns them and ``save_pretrained``
        writes them to the ``"results"`` metadata key of model.safetensors."""
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ValueError(f"set_results takes a list of result dicts, got {type(results).__name__}")
        for i, entry in enumerate(results):
            missing = [k for k in ("protocol", "metric", "value", "model") if k not in entry]
            if missing:
                raise ValueError(f"set_results: entry {i} has no {missing}: {entry}")
            if not isinstance(entry["value"], (int, float)) or isinstance(entry["value"], bool):
                raise ValueError(f"set_results: entry {i} value must be a number, got {entry['value']!r}")
        self._training_record = {**self.training_record(), "results": json.loads(json.dumps(results))}  # type: ignore[attr-defined]

    def init_args(self) -> dict[str, Any]:
        """The init args that rebuild this model (JSON values): ``type(m)(**m.init_args())``."""
        hparams = {k: v for k, v in dict(self.hparams).items() if not k.startswith("_")}
        return json.loads(json.dumps(hparams))

    def hub_config(self) -> dict[str, Any]:
        from zoo import __version__

        return {"method": self.method_name, "zoo_version": __version__, **self.init_args()}

    # ---- save -------------------------------------------------------------------------------------------------
    def hub_omittable_modules(self) -> list[str]:
        """Sub-modules an ``inference_only`` save may leave out because :meth:`hub_restore_modules` rebuilds them
        from the rest (e.g. EMA targets that ``embed`` never runs). None by default."""
        return []

    def hub_restore_modules(self, names: list[str]) -> None:
        """Rebuild the sub-modules ``names`` that a save left out (see :meth:`hub_omittable_modules`)."""
        if names:
            raise PretrainedLoadError(f"{type(self).__name__} cannot rebuild omitted modules {names}")

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        inference_only: bool = False,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write config.json, model.safetensors and README.md to ``save_directory``: a new or empty folder, or an
        earlier zoo save whose three files are replaced (:func:`write_hub_files`; other files in it are kept, and
        never uploaded).

        ``inference_only`` leaves out the modules of :meth:`hub_omittable_modules` (BYOL's EMA targets: 40% of
        its weights); loading rebuilds them as the method's own initialisation would, so ``embed``, fine-tuning and
        a fresh pre-training start are unchanged, but continuing the original run exactly needs the Lightning
        checkpoint.
        """
        replaced = self.write_pretrained(save_directory, config=config, model_card_kwargs=model_card_kwargs, inference_only=inference_only)
        if replaced:
            logger.info("%s: replaced %s", save_directory, ", ".join(replaced))
        if push_to_hub:  # the files just written, as they are (an inference-only save stays inference-only)
            return upload_folder(save_directory, repo_id or Path(save_directory).name, **push_to_hub_kwargs)
        return None

    def write_pretrained(
        self, save_directory: str | Path, *, config: dict | None = None, model_card_kwargs: dict[str, Any] | None = None,
        inference_only: bool = False,
    ) -> list[str]:
        """:meth:`save_pretrained` without the push; returns the names of the files that replaced earlier ones."""
        omitted = self.hub_omittable_modules() if inference_only else []
        card_kwargs = dict(model_card_kwargs or {})
        card_kwargs.setdefault("model_id", str(save_directory))  # the usage snippet loads this folder until it is pushed
        if omitted:
            card_kwargs.setdefault("omitted", omitted)
        config_text = json.dumps(config or self.hub_config(), sort_keys=True, indent=2)
        # what ModelHubMixin.save_pretrained does, with the weights written by save_weights (which needs to know
        # what to omit; ModelHubMixin's _save_pretrained hook takes only the folder)
        return write_hub_files(save_directory, {
            WEIGHTS_NAME: lambda path: self.save_weights(path, omitted),
            CARD_NAME: lambda path: self.generate_model_card(**card_kwargs).save(path),
            CONFIG_NAME: lambda path: path.write_text(config_text, encoding="utf-8"),
        })  # fmt: skip

    def _save_pretrained(self, save_directory: Path) -> None:
        # ModelHubMixin.push_to_hub saves through this hook
        self.save_weights(save_directory / WEIGHTS_NAME, [])

    def save_weights(self, path: Path, omitted: list[str]) -> None:
        """model.safetensors without the sub-modules ``omitted`` (named in the file's metadata for the loader)."""
        record = dict(self.training_record())  # type: ignore[attr-defined]
        results = record.pop("results", None)
        metadata = {"format": "pt", "method": self.method_name, "training_record": json.dumps(record)}
        if results is not None:
            metadata["results"] = json.dumps(results)
        if not omitted:
            save_model(self, str(path), metadata=metadata)
            return
        prefixes = tuple(f"{name}." for name in omitted)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(prefixes)}  # type: ignore[attr-defined]
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={**metadata, "omitted_modules": json.dumps(omitted)})

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        record: dict[str, Any] = {**self.training_record(), **kwargs}  # type: ignore[attr-defined]
        config = self.hub_config()
        data = record.get("data") or {}
        dataset = data.get("dataset") or data.get("source")  # a named data set: the card's `datasets`
        modality = MODALITY_TAGS.get(type(self).input_key, [])  # type: ignore[attr-defined]
        title = kwargs.get("title") or f"zoo {self.method_name}" + (f" — {dataset}" if dataset else "")
        card_data = ModelCardData(
            library_name="zoo",
            license="apache-2.0",
            tags=["self-supervised-learning", "zoo", self.method_name, *modality],
            datasets=[str(dataset)] if dataset else None,
            pipeline_tag="feature-extraction",
            model_name=title,
            eval_results=eval_results(record.get("metrics") or {}, dataset_label(data), (modality or ["input"])[0]),
        )
        doc = (inspect.getdoc(type(self)) or "").strip()
        trainer = record.get("trainer") or {}
        recipe = {**trainer, "epochs_completed": record.get("epochs_completed"), "optimizer steps": record.get("global_step")}
        return ModelCard.from_template(
            card_data=card_data,
            template_str=CARD_TEMPLATE,
            title=title,
            summary=doc.split("\n\n")[0] if doc else f"A zoo {self.method_name} model.",
            model_id=kwargs.get("model_id") or ".",
            input_note=f"batch[{type(self).input_key!r}] as the datamodule yields it",  # type: ignore[attr-defined]
            data_section=_markdown_table({k: v for k, v in data.items()}, ("setting", "value")),
            recipe_section=_markdown_table({k: v for k, v in recipe.items() if v is not None}, ("setting", "value")),
            config_json=json.dumps(config, indent=2, sort_keys=True),
            # the run's own metrics; learning-rate monitor entries and the like are not results
            metrics_section=_markdown_table(
                {
                    **{k: v for k, v in (record.get("metrics") or {}).items() if k.startswith(("train/", "val/", "test/"))},
                    **{
                        f"{r['split']}/{r['protocol']}_{r['metric']} ({r['model']})": f"{r['value']:.4f}"
                        + (f" ± {r['std']:.4f}" if r.get("std") is not None else "")
                        for r in record.get("results") or []
                    },
                },
                ("metric", "value"),
            ),
            limitations=kwargs.get(
                "limitations",
                "Metrics are from the online evaluation of the training run (kNN on a held-out split of the training "
                "data, online linear probe, RankMe); they are not a full linear-evaluation protocol. Small-data, "
                "short-schedule weights: a starting point for fine-tuning, not a state-of-the-art encoder.",
            )
            + _omitted_note(kwargs.get("omitted") or []),
        )

    # ---- load -------------------------------------------------------------------------------------------------
    @classmethod
    def _from_pretrained(
        cls: type[T],
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        config: dict | None = None,
        map_location: str | torch.device = "cpu",
        **config_kwargs: Any,
    ) -> T:
        # ModelHubMixin.from_pretrained has already read config.json (``config``) and copied its keys into
        # ``config_kwargs``; the config is the single source of truth here.
        download = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only, token=token)
        if config is None:
            config = read_config(model_id, **download)  # raises the clear error for a missing config.json
        method = config.get("method")
        if cls.method_name and method != cls.method_name:
            raise PretrainedLoadError(
                f"{model_id}: config.json is for method {method!r}, not {cls.method_name!r}; use zoo.from_pretrained"
            )
        init_kwargs = {k: v for k, v in config.items() if k not in META_KEYS}
        unknown = sorted(set(init_kwargs) - init_parameter_names(cls))
        if unknown:
            raise PretrainedLoadError(f"{model_id}: config.json key(s) {unknown} are not init args of {cls.__name__}")
        try:
            with saved_weights_follow():  # an encoder's `pretrained` init would be overwritten by the file's weights
                model = cls(**init_kwargs)
        except (TypeError, ValueError) as e:
            raise PretrainedLoadError(f"{model_id}: config.json does not build a {cls.__name__}: {e}") from None
        metadata = load_safetensors_strict(model, resolve_file(model_id, WEIGHTS_NAME, **download))
        if "training_record" in metadata:
            model._training_record = json.loads(metadata["training_record"])
        if "results" in metadata:
            model._training_record = {**getattr(model, "_training_record", {}), "results": json.loads(metadata["results"])}
        model.to(map_location)
        model.eval()
        return model


def from_pretrained(model_id: str | Path, **kwargs: Any) -> Any:
    """Load any zoo model from a folder or Hub repo id, dispatching on ``"method"`` in its config.json."""
    from zoo.registry import get_method

    download = {k: kwargs[k] for k in ("revision", "cache_dir", "force_download", "local_files_only", "token") if k in kwargs}
    config = read_config(str(model_id), **download)
    try:
        cls = get_method(config["method"])
    except KeyError as e:
        raise PretrainedLoadError(f"{model_id}: {e.args[0]}") from None
    return cls.from_pretrained(str(model_id), **kwargs)


def upload_folder(
    directory: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
    commit_message: str = "Upload zoo model", **upload_kwargs: Any,
) -> str:
    """Create ``repo_id`` on the Hub if needed and upload a saved zoo folder to it; returns the commit URL. The
    folder must load with :func:`from_pretrained` first, so a broken folder is never published, and only zoo's own
    files (:data:`HUB_FILES`) are uploaded unless ``allow_patterns`` says otherwise: a note or a private file that
    shares the folder stays local."""
    from huggingface_hub import HfApi

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"{repo_id}: not a Hub repo id (org/name): {e}") from None
    offline = hub_unreachable_reason()
    if offline:  # before loading the folder: fails in a second
        raise HubError(f"cannot push {directory} to {repo_id}: {offline}")
    from_pretrained(directory)
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        upload_kwargs.setdefault("allow_patterns", list(HUB_FILES))
        with tempfile.TemporaryDirectory() as staged:  # the pushed card names the repo; the local folder is left as it is
            folder = Path(staged) / "model"
            shutil.copytree(directory, folder, ignore=lambda src, names: [n for n in names if Path(src) == Path(directory) and n not in HUB_FILES])
            card = folder / CARD_NAME
            if card.is_file():
                card.write_text(card_for_repo(card.read_text(encoding="utf-8"), repo), encoding="utf-8")
            return str(api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=commit_message, **upload_kwargs))
    except (HfHubHTTPError, OSError) as e:  # no token, no write access, connection lost
        reason = " ".join(str(e).split())
        raise HubError(f"cannot push {directory} to {repo_id}: {type(e).__name__}: {reason}") from None


def load_checkpoint_model(checkpoint_path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the method saved in a ``zoo fit`` Lightning checkpoint: ``(model in eval mode, raw checkpoint)``.

    The checkpoint is read with ``weights_only=True``: no pickled code is executed.
    """
    from zoo.registry import get_method

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainedLoadError(f"{path}: not a loadable Lightning checkpoint ({type(e).__name__}: {e})") from None
    for key in ("zoo_method", "state_dict", "hyper_parameters"):
        if key not in checkpoint:
            raise PretrainedLoadError(f"{path}: not a zoo checkpoint (no {key!r} key)")
    try:
        cls = get_method(checkpoint["zoo_method"])
        with saved_weights_follow():
            model = cls(**{k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")})
    except (KeyError, TypeError, ValueError) as e:  # unknown method, args this version does not take
        raise PretrainedLoadError(f"{path}: cannot rebuild the model ({type(e).__name__}: {e.args[0] if e.args else e})") from None
    problems = state_dict_problems(model, {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()})
    if problems:
        raise PretrainedLoadError(f"{path}: cannot rebuild the model: its weights do not match its hyper-parameters: {problems}")
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.on_load_checkpoint(checkpoint)
    return model.eval(), checkpoint


class Export(NamedTuple):
    directory: Path
    replaced: list[str]  # zoo's files that an earlier save had written there


def export_checkpoint(
    checkpoint_path: str | Path, save_directory: str | Path, inference_only: bool = False, **model_card_kwargs: Any
) -> Export:
    """Turn a Lightning checkpoint written by ``zoo fit`` into a Hub folder (config.json + safetensors + card);
    ``inference_only`` leaves out what ``from_pretrained`` can rebuild (see ``HubMixin.save_pretrained``). The folder
    must be new, empty or an earlier zoo save (see :func:`write_hub_files`)."""
    model, _ = load_checkpoint_model(checkpoint_path)
    replaced = model.write_pretrained(save_directory, model_card_kwargs=model_card_kwargs or None, inference_only=inference_only)
    return Export(Path(save_directory), replaced)
