"""Hub format for every method: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

Built on huggingface_hub's ``ModelHubMixin``. A saved model is a folder with
- ``config.json``: the method's init args plus ``"method": <registry name>``;
- ``model.safetensors``: the state dict (the only weights format zoo loads: no pickle, no remote code), with the
  training record (``"training_record"``) and the evaluation results (``"results"``) as JSON in its metadata;
- ``README.md``: a model card generated from that record (:meth:`HubMixin.generate_model_card`);
- optionally ``training_curve.png`` and ``embedding_map.png`` (:data:`FIGURE_FILES`), which the card shows when
  they are there; zoo never writes or deletes them on save, and ``zoo push`` uploads them with its own files.

``save_pretrained`` writes into a new or empty folder, or over an earlier zoo save: it replaces only its three
files, each written to a temporary name first, and never deletes or uploads anything that is not zoo's
(:func:`write_hub_files`). ``zoo.from_pretrained`` reads ``config.json`` and dispatches on ``"method"``.

The training record (``model.training_record()``; ``Pretrained.record``), a JSON object:

    data              the datamodule's class and init args            (set by the Lightning run)
    metrics           {"val/knn_acc": 0.75, ...}: the run's last logged values, names only
    epochs_completed, global_step, trainer                            (set by the Lightning run)
    results           evaluation results: a list of entries (below); stored under its own metadata key
    command           str: the exact command that trained the weights            (optional; update_record)
    wall_time_s       float: wall-clock seconds of that run                      (optional)
    machine           str: the hardware it ran on, e.g. "2-core Xeon (AVX512-BF16), no GPU"   (optional)
    seeds             [int, ...]: the pre-training seed(s)                       (optional)
    notes             str: markdown the card shows verbatim under "Notes" (setup facts no entry can hold)
    limitations       str: the card's "Limitations" text when the default does not fit

A results entry (``set_results``; one per number; names, never prose):

    {"protocol": "knn" | "linear" | "finetune" | "retrieval" | "tabular" | ...,
     "metric":   "accuracy" | "rmse" | "a2t_recall@10" | ...,
     "value":    0.7898,                              # float
     "std":      0.0021 | null,  "seeds": [0, 1, 2] | null,    # when repeated (optional keys)
     "model":    "pretrained" | "random-init" | "raw-input" | "timm:resnet18" | ...,
     "dataset":  "fashion-mnist", "split": "test",
     "settings": {"k": 200, "temperature": 0.1, "bank": "train", ...}}   # what defines the protocol (optional)

The card's model-index (Hugging Face ``EvalResult``) holds the ``"pretrained"`` entries; the others are the
baselines beside them in the card's results table.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

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
#: pictures the card shows when they are in the folder (made by whoever trained the weights), with their captions
FIGURE_FILES = {
    "training_curve.png": "Training curve: loss and online kNN accuracy per epoch",
    "embedding_map.png": "2-D map of test embeddings, coloured by class",
}
#: zoo's files in a Hub folder: what ``zoo push`` uploads (anything else in the folder stays local)
ZOO_FILES = (*HUB_FILES, *FIGURE_FILES)
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

## Results

{{ results_section }}
{{ figures_section }}
## Training data

{{ data_section }}

## Recipe

{{ recipe_section }}
{{ reproduce_section }}
Method config (`config.json`):

```json
{{ config_json }}
```

## Metrics of the training run

{{ metrics_section }}
{{ notes_section }}
## Limitations

{{ limitations }}
"""

DEFAULT_LIMITATIONS = (
    "Small-data, short-schedule weights: a starting point for fine-tuning, not a state-of-the-art encoder. The "
    "training-run metrics come from the run's online evaluation (kNN on a held-out part of the training data, online "
    "linear probe, RankMe); the results table is the offline evaluation of the saved weights."
)

#: card tags for a method's input (``input_key``): the modality a Hub search filters on
MODALITY_TAGS = {"image": ["image"], "features": ["tabular"], "audio": ["audio", "text"], "skeleton": ["skeleton", "video"]}

#: a results entry's keys (module docstring; CONTRACT §2)
RESULT_REQUIRED = ("protocol", "metric", "value", "model", "dataset", "split")
RESULT_OPTIONAL = ("std", "seeds", "settings")
#: the optional training-record keys that :meth:`HubMixin.update_record` sets, with their JSON types
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "command": str, "wall_time_s": (int, float), "machine": str, "seeds": list, "notes": str, "limitations": str,
}
#: a name: a protocol, metric, model, dataset or split (``knn``, ``a2t_recall@10``, ``timm:resnet18``), never prose
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:/+\-]{0,63}$")
#: the baselines' columns, after "pretrained", in the card's results table (other models follow in record order)
BASELINE_ORDER = ("pretrained", "random-init", "raw-input")


class ResultsError(ValueError):
    """A results entry that is not a CONTRACT §2 entry (a missing key, a value that is not a number, prose)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_label(index: int, entry: Any) -> str:
    if isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("model", "protocol", "metric")):
        return f"results[{index}] ({entry['model']} {entry['protocol']} {entry['metric']})"
    return f"results[{index}]"


def validate_results(results: Any) -> list[dict[str, Any]]:
    """CONTRACT §2 entries, checked and normalised (values as floats, the optional keys present); a
    :class:`ResultsError` of one line naming the first bad entry and key otherwise."""
    if not isinstance(results, (list, tuple)):
        raise ResultsError(f"results must be a list of entries, got {type(results).__name__}")
    checked: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(results):
        where = _entry_label(i, entry)
        if not isinstance(entry, dict):
            raise ResultsError(f"{where}: an entry is a dict, got {type(entry).__name__}")
        missing = [k for k in RESULT_REQUIRED if k not in entry]
        if missing:
            raise ResultsError(f"{where}: missing key(s) {missing} (required: {', '.join(RESULT_REQUIRED)})")
        unknown = sorted(set(entry) - set(RESULT_REQUIRED) - set(RESULT_OPTIONAL))
        if unknown:
            raise ResultsError(f"{where}: unknown key(s) {unknown} (allowed: {', '.join(RESULT_REQUIRED + RESULT_OPTIONAL)})")
        for key in ("protocol", "metric", "model", "dataset", "split"):
            if not isinstance(entry[key], str) or not _NAME.match(entry[key]):
                raise ResultsError(
                    f"{where}: {key} {entry[key]!r} is not a name (letters, digits and _ . @ : / + -, at most 64; "
                    "put what defines the protocol in 'settings')"
                )
        if not _is_number(entry["value"]):
            raise ResultsError(f"{where}: value {entry['value']!r} is not a finite number")
        std, seeds, settings = entry.get("std"), entry.get("seeds"), entry.get("settings")
        if std is not None and (not _is_number(std) or std < 0):
            raise ResultsError(f"{where}: std {std!r} is not a finite number >= 0 (or null)")
        if seeds is not None and (
            not isinstance(seeds, (list, tuple)) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        ):
            raise ResultsError(f"{where}: seeds {seeds!r} is not a non-empty list of ints (or null)")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise ResultsError(f"{where}: settings {settings!r} is not a dict")
        try:
            settings = json.loads(json.dumps(settings, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ResultsError(f"{where}: settings are not JSON values ({e})") from None
        normalised = {
            **{k: entry[k] for k in ("protocol", "metric")}, "value": float(entry["value"]),
            "std": None if std is None else float(std), "seeds": None if seeds is None else list(seeds),
            **{k: entry[k] for k in ("model", "dataset", "split")}, "settings": settings,
        }  # fmt: skip
        identity = json.dumps({k: v for k, v in normalised.items() if k not in ("value", "std", "seeds")}, sort_keys=True)
        if identity in seen:
            raise ResultsError(f"{where}: the same model, protocol, metric, data and settings as results[{seen[identity]}]")
        seen[identity] = i
        checked.append(normalised)
    return checked


def validate_record_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The optional record keys of :data:`RECORD_FIELDS`, type-checked (one line naming a bad key)."""
    unknown = sorted(set(fields) - set(RECORD_FIELDS))
    if unknown:
        raise ResultsError(f"unknown training-record key(s) {unknown}; settable: {', '.join(RECORD_FIELDS)} (results: set_results)")
    for key, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, RECORD_FIELDS[key]) or isinstance(value, bool):
            raise ResultsError(f"training record {key!r}: expected {RECORD_FIELDS[key]}, got {type(value).__name__}")
        if key == "seeds" and not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise ResultsError(f"training record 'seeds': expected a list of ints, got {value!r}")
        if key == "wall_time_s" and (not math.isfinite(value) or value < 0):
            raise ResultsError(f"training record 'wall_time_s': expected seconds >= 0, got {value!r}")
    return fields


def dataset_label(data: dict[str, Any]) -> str | None:
    """The name of a run's training data from its record: the dataset name, else what the source files say."""
    if data.get("dataset") or data.get("source"):
        return str(data.get("dataset") or data.get("source"))
    if data.get("data_format") == "generated":
        return "generated skeleton actions"
    if data.get("manifest"):  # audio-text manifests live in a folder named after the corpus
        return Path(str(data["manifest"])).parent.name
    return None


def dataset_name(data: dict[str, Any]) -> str | None:
    """:func:`dataset_label` as a results-entry name (``generated-skeleton-actions``)."""
    label = dataset_label(data)
    return re.sub(r"[^\w.-]+", "-", label).strip("-") if label else None


def _format_value(value: Any) -> str:
    return f"{round(value, 4):g}" if _is_number(value) else str(value)


def format_result(entry: dict[str, Any]) -> str:
    """``0.8472 ± 0.0017 (seeds 0, 1, 2)``, or the value alone for a single run."""
    text = _format_value(entry["value"])
    if entry.get("std") is not None:
        text += f" ± {_format_value(entry['std'])}"
    if entry.get("seeds"):
        text += f" (seed{'s' if len(entry['seeds']) > 1 else ''} {', '.join(map(str, entry['seeds']))})"
    return text


def format_settings(settings: dict[str, Any]) -> str:
    """``k=200, bank=train, standardised=true``: the settings as they are stored (JSON values)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()) or "-"


#: recorded beside a result's settings but not settings of its protocol: a random-init baseline's weight seeds, a
#: run's wall time
NOT_SETTINGS = ("init_seeds", "seconds")


def _protocol_settings(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (entry.get("settings") or {}).items() if k not in NOT_SETTINGS}


def result_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]]:
    """The results grouped for a table: ``(models, [(row key, {model: entry})])``, the models as columns (pretrained,
    then the baselines). One row per protocol, metric and data when each model has one entry there, under the
    settings they share (what only some of them set, e.g. a baseline's own classifier, is in :func:`model_settings`);
    one row per distinct settings where a model was evaluated under several."""
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    models: list[str] = []
    for entry in results:
        head = {k: entry[k] for k in ("protocol", "metric", "dataset", "split")}
        groups.setdefault(json.dumps(head, sort_keys=True), (head, []))[1].append(entry)
        if entry["model"] not in models:
            models.append(entry["model"])
    rows: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = []
    for head, entries in groups.values():
        if len({e["model"] for e in entries}) == len(entries):
            first = _protocol_settings(entries[0])
            shared = {k: v for k, v in first.items() if all(_protocol_settings(e).get(k, object()) == v for e in entries)}
            rows.append((head | {"settings": shared}, {e["model"]: e for e in entries}))
            continue
        by_settings: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
        for e in entries:
            settings = _protocol_settings(e)
            by_settings.setdefault(json.dumps(settings, sort_keys=True), (head | {"settings": settings}, {}))[1][e["model"]] = e
        rows.extend(by_settings.values())
    ordered = [m for m in BASELINE_ORDER if m in models] + [m for m in models if m not in BASELINE_ORDER]
    return ordered, rows


def model_settings(rows: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]) -> dict[str, str]:
    """Per model, the settings of its entries that their table row (of :func:`result_rows`) does not show."""
    own: dict[str, dict[str, Any]] = {}
    for key, by_model in rows:
        for model, entry in by_model.items():
            extra = {k: v for k, v in _protocol_settings(entry).items() if k not in key["settings"]}
            own.setdefault(model, {}).update(extra)
    return {model: format_settings(extra) for model, extra in own.items() if extra}


def results_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return "_No offline evaluation recorded yet (`zoo evaluate` adds one)._"
    models, rows = result_rows(results)
    lines = [f"| protocol | metric | data | settings | {' | '.join(models)} |", "|" + " --- |" * (4 + len(models))]
    for key, by_model in rows:
        cells = [format_result(by_model[m]) if m in by_model else "-" for m in models]
        lines.append(
            f"| {key['protocol']} | {key['metric']} | {key['dataset']} ({key['split']}) | {format_settings(key['settings'])} | "
            + " | ".join(cells) + " |"
        )
    notes = {"random-init": "the same architecture and config, untrained", "raw-input": "the input itself (flattened), no encoder"}
    init_seeds = sorted({s for e in results if e["model"] == "random-init" for s in (e.get("settings") or {}).get("init_seeds") or []})
    if init_seeds:
        notes["random-init"] += f" (weight seeds {', '.join(map(str, init_seeds))}" + ("; mean ± std over them)" if len(init_seeds) > 1 else ")")
    described = [f"{m}: {notes[m]}" for m in models if m in notes]
    own = model_settings(rows)
    return (
        "\n".join(lines)
        + (f"\n\nBaselines: {'; '.join(described)}." if described else "")
        + (f"\n\nSettings of one model only: {'; '.join(f'{m}: {own[m]}' for m in models if m in own)}." if own else "")
    )


def eval_results(results: list[dict[str, Any]]) -> list[EvalResult] | None:
    """model-index entries (Hugging Face ``EvalResult``) for the ``"pretrained"`` results; the metric's name says its
    protocol (``knn accuracy``) and ``metric_args`` holds the settings."""
    entries = [
        EvalResult(
            task_type="feature-extraction", task_name=f"{entry['protocol']} evaluation",
            dataset_type=entry["dataset"], dataset_name=entry["dataset"], dataset_split=entry["split"],
            metric_type=entry["metric"], metric_name=f"{entry['protocol']} {entry['metric']}", metric_value=entry["value"],
            metric_config=format_settings(entry["settings"]) if entry.get("settings") else None,
            metric_args=entry.get("settings") or None,
        )
        for entry in results if entry["model"] == "pretrained"
    ]  # fmt: skip
    return entries or None


def _reproduce_section(record: dict[str, Any]) -> str:
    if not any(record.get(k) is not None for k in ("command", "wall_time_s", "machine", "seeds")):
        return ""
    lines = ["", "Reproduce:"]
    if record.get("command"):
        lines += ["", "```bash", str(record["command"]), "```"]
    rows = {}
    if record.get("wall_time_s") is not None:
        seconds = float(record["wall_time_s"])
        rows["wall time"] = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    if record.get("machine"):
        rows["machine"] = record["machine"]
    if record.get("seeds"):
        rows["seed(s)"] = ", ".join(map(str, record["seeds"]))
    if rows:
        lines += ["", _markdown_table(rows, ("run", "value"))]
    return "\n".join(lines) + "\n"


def _figures_section(figures: list[str]) -> str:
    if not figures:
        return ""
    return "\n" + "\n\n".join(f"![{FIGURE_FILES[name]}]({name})" for name in figures if name in FIGURE_FILES) + "\n"


def card_for_repo(text: str, repo_id: str) -> str:
    """The card ``text`` with its usage snippet loading ``repo_id`` (the folder's local path until it is pushed)."""
    return re.sub(r'zoo\.from_pretrained\("[^"\n]*"\)', lambda _: f'zoo.from_pretrained("{repo_id}")', text, count=1)


def init_parameter_names(cls: type) -> set[str]:
    """Init-arg names of ``cls``, following ``**kwargs`` forwarded to base classes, and the old names it still
    accepts (``renamed_args``)."""
    names: set[str] = set(getattr(cls, "renamed_args", {}))
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
        f"\n\nInference export: left out of the file, because `embed` does not run them: {', '.join(f'`{n}`' for n in omitted)}; "
        "`from_pretrained` rebuilds them as the method initialises them (EMA targets as copies of their online "
        "networks, pre-training heads freshly initialised). Embeddings and fine-tuning are unaffected; continuing the "
        "original pre-training run needs its Lightning checkpoint."
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


def load_safetensors_strict(
    model: torch.nn.Module, path: Path, migrate: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
) -> dict[str, str]:
    """Load ``path`` into ``model``; any missing, unexpected or wrongly shaped tensor is one clear error. Sub-modules
    that an ``inference_only`` save left out (named in the metadata) are rebuilt by the model. ``migrate`` renames
    the tensors of a file written by an earlier version first. Returns the file's metadata."""
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise PretrainedLoadError(f"{path}: not a readable safetensors file ({e})") from None
    if migrate is not None:
        state = migrate(state)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    state = {k: v for k, v in state.items() if k in expected}
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

    def init_args(self) -> dict[str, Any]:
        """The init args that rebuild this model (JSON values): ``type(m)(**m.init_args())``."""
        hparams = {k: v for k, v in dict(self.hparams).items() if not k.startswith("_")}
        return json.loads(json.dumps(hparams))

    # ---- files written by earlier versions ----------------------------------------------------------------------
    @classmethod
    def migrate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Init args saved by an earlier version of the method, in this version's form (unchanged by default).
        Called by every loader before the model is built: ``from_pretrained``, :func:`load_checkpoint_model` and
        Lightning's ``load_from_checkpoint``/resume (through ``on_load_checkpoint``)."""
        return config

    @classmethod
    def migrate_state_dict(cls, state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weights saved by an earlier version of the method under this version's names (unchanged by default);
        ``config``: their init args, after :meth:`migrate_config`."""
        return state

    def hub_config(self) -> dict[str, Any]:
        from zoo import __version__

        return {"method": self.method_name, "zoo_version": __version__, **self.init_args()}

    # ---- the record -------------------------------------------------------------------------------------------
    def set_results(self, results: list[dict[str, Any]]) -> None:
        """Keep the evaluation ``results`` (CONTRACT §2 entries: see the module docstring) with these weights:
        ``training_record()["results"]`` returns them, ``save_pretrained`` writes them to the ``"results"`` metadata
        key and into the card. Replaces earlier results; a bad entry is a one-line :class:`ResultsError`.

        The results describe the weights as they are: a Lightning run attached to the model rebuilds its
        training record from the trainer (see ``SSLMethod.training_record``), so set them on the trained model."""
        self._training_record = {**self._training_record, "results": validate_results(results)}  # type: ignore[has-type]

    def update_record(self, **fields: Any) -> None:
        """Set optional training-record keys (:data:`RECORD_FIELDS`: command, wall_time_s, machine, seeds, notes,
        limitations); None removes one."""
        validate_record_fields(fields)
        record = {**self._training_record, **fields}  # type: ignore[has-type]
        self._training_record = {k: v for k, v in record.items() if v is not None}

    # ---- save -------------------------------------------------------------------------------------------------
    #: sub-modules only the pre-training loss runs (projectors, predictors, prototypes): an inference-only save
    #: leaves them out, and a model loaded from it has them as the method initialises them
    pretraining_heads: tuple[str, ...] = ()

    def hub_omittable_modules(self) -> list[str]:
        """Sub-modules an ``inference_only`` save may leave out: the :attr:`pretraining_heads` (``embed`` never runs
        them; loading keeps them as initialised) and whatever :meth:`hub_restore_modules` rebuilds from the rest
        (EMA targets, in :class:`~zoo.methods.momentum.MomentumMethod`)."""
        return [name for name in self.pretraining_heads if isinstance(getattr(self, name, None), torch.nn.Module)]

    def hub_restore_modules(self, names: list[str]) -> None:
        """Rebuild the sub-modules ``names`` that a save left out (see :meth:`hub_omittable_modules`); the
        pre-training heads stay as the constructor initialised them."""
        unknown = [n for n in names if n not in self.pretraining_heads]
        if unknown:
            raise PretrainedLoadError(f"{type(self).__name__} cannot rebuild omitted modules {unknown}")

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
        inference_only: bool = False, omit: list[str] | None = None,
    ) -> list[str]:
        """:meth:`save_pretrained` without the push; returns the names of the files that replaced earlier ones.
        ``omit``: the modules to leave out, a subset of :meth:`hub_omittable_modules` (default: all of them when
        ``inference_only``, else none)."""
        omittable = self.hub_omittable_modules()
        omitted = list(omit) if omit is not None else omittable if inference_only else []
        if not set(omitted) <= set(omittable):
            raise PretrainedLoadError(f"{type(self).__name__} cannot leave out {sorted(set(omitted) - set(omittable))}")
        card_kwargs = dict(model_card_kwargs or {})
        card_kwargs.setdefault("model_id", str(save_directory))  # the usage snippet loads this folder until it is pushed
        card_kwargs.setdefault("figures", [name for name in FIGURE_FILES if (Path(save_directory) / name).is_file()])
        if omitted:
            card_kwargs.setdefault("omitted", omitted)
        config = config or self.hub_config()
        card_kwargs.setdefault("config", config)  # the card shows the config.json written beside it
        config_text = json.dumps(config, sort_keys=True, indent=2)
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
        """model.safetensors without the sub-modules ``omitted`` (named in the file's metadata for the loader), with
        the training record and, under their own key, its results."""
        record = dict(self.training_record())  # type: ignore[attr-defined]
        results = validate_results(record.pop("results", None) or [])
        metadata = {"format": "pt", "method": self.method_name, "training_record": json.dumps(record)}
        if results:
            metadata["results"] = json.dumps(results)
        if not omitted:
            save_model(self, str(path), metadata=metadata)
            return
        prefixes = tuple(f"{name}." for name in omitted)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(prefixes)}  # type: ignore[attr-defined]
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={**metadata, "omitted_modules": json.dumps(omitted)})

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The card, from the training record (``kwargs`` override its keys; ``model_id``: the repo or folder the
        usage snippet loads; ``figures``: the :data:`FIGURE_FILES` present; ``omitted``: modules an inference-only
        save left out; ``config``: the config.json written beside it; ``title``)."""
        record: dict[str, Any] = {**self.training_record(), **kwargs}  # type: ignore[attr-defined]
        config = kwargs.get("config") or self.hub_config()
        data = record.get("data") or {}
        dataset = data.get("dataset") or data.get("source")  # a named data set: the card's `datasets`
        label = dataset_label(data)
        modality = MODALITY_TAGS.get(type(self).input_key, [])  # type: ignore[attr-defined]
        results = validate_results(record.get("results") or [])
        title = kwargs.get("title") or f"zoo {self.method_name}" + (f" — {label}" if label else "")
        card_data = ModelCardData(
            library_name="zoo",
            license="apache-2.0",
            tags=["self-supervised-learning", "zoo", self.method_name, *modality],
            datasets=[str(dataset)] if dataset else None,
            pipeline_tag="feature-extraction",
            model_name=title,
            eval_results=eval_results(results),
        )
        doc = (inspect.getdoc(type(self)) or "").strip()
        trainer = record.get("trainer") or {}
        recipe = {**trainer, "epochs_completed": record.get("epochs_completed"), "optimizer steps": record.get("global_step")}
        # the run's own last values by name (the final loss, the held-out ones); learning rates are not results
        metrics = {
            k: v for k, v in (record.get("metrics") or {}).items()
            if k.startswith(("val/", "test/")) or k == "train/loss"
        }  # fmt: skip
        notes = str(record.get("notes") or "").strip()
        return ModelCard.from_template(
            card_data=card_data,
            template_str=CARD_TEMPLATE,
            title=title,
            summary=doc.split("\n\n")[0] if doc else f"A zoo {self.method_name} model.",
            model_id=kwargs.get("model_id") or ".",
            input_note=f"batch[{type(self).input_key!r}] as the datamodule yields it",  # type: ignore[attr-defined]
            results_section=results_table(results),
            figures_section=_figures_section(list(kwargs.get("figures") or [])),
            data_section=_markdown_table({k: v for k, v in data.items()}, ("setting", "value")),
            recipe_section=_markdown_table({k: v for k, v in recipe.items() if v is not None}, ("setting", "value")),
            reproduce_section=_reproduce_section(record),
            config_json=json.dumps(config, indent=2, sort_keys=True),
            metrics_section=_markdown_table(metrics, ("metric", "value")),
            notes_section=f"\n## Notes\n\n{notes}\n" if notes else "",
            limitations=str(record.get("limitations") or DEFAULT_LIMITATIONS) + _omitted_note(kwargs.get("omitted") or []),
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
        init_kwargs = cls.migrate_config({k: v for k, v in config.items() if k not in META_KEYS})
        unknown = sorted(set(init_kwargs) - init_parameter_names(cls))
        if unknown:
            raise PretrainedLoadError(f"{model_id}: config.json key(s) {unknown} are not init args of {cls.__name__}")
        try:
            with saved_weights_follow():  # an encoder's `pretrained` init would be overwritten by the file's weights
                model = cls(**init_kwargs)
        except (TypeError, ValueError) as e:
            raise PretrainedLoadError(f"{model_id}: config.json does not build a {cls.__name__}: {e}") from None
        path = resolve_file(model_id, WEIGHTS_NAME, **download)
        metadata = load_safetensors_strict(model, path, lambda state: cls.migrate_state_dict(state, init_kwargs))
        model._training_record = record_from_metadata(metadata, path)
        model.to(map_location)
        model.eval()
        return model


def record_from_metadata(metadata: dict[str, str], source: str | Path) -> dict[str, Any]:
    """The training record of a model.safetensors' metadata, with its ``"results"`` key checked and merged in."""
    record: dict[str, Any] = {}
    for key in ("training_record", "results"):
        if key not in metadata:
            continue
        try:
            value = json.loads(metadata[key])
        except json.JSONDecodeError as e:
            raise PretrainedLoadError(f"{source}: {key!r} metadata is not valid JSON ({e})") from None
        if key == "training_record":
            if not isinstance(value, dict):
                raise PretrainedLoadError(f"{source}: 'training_record' metadata is not a JSON object")
            record.update(value)
        else:
            try:
                record["results"] = validate_results(value)
            except ResultsError as e:
                raise PretrainedLoadError(f"{source}: 'results' metadata: {e}") from None
    return record


def read_record(folder: str | Path) -> dict[str, Any]:
    """The training record (with its results) of a local Hub folder, from the safetensors header alone: no model is
    built and no weights are read."""
    path = resolve_file(str(folder), WEIGHTS_NAME)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise PretrainedLoadError(f"{path}: not a readable safetensors file ({e})") from None
    return record_from_metadata(metadata, path)


def rewrite_record(
    folder: str | Path, *, results: list[dict[str, Any]] | None = None, metrics: dict[str, float] | None = None,
    **fields: Any,
) -> list[str]:
    """Rewrite the record and card of the Hub folder ``folder`` in place: the results and the training-run metrics
    (when given) and the optional record keys ``fields`` (see :meth:`HubMixin.update_record`; None removes one). config.json is written back as it
    is, the weights tensor for tensor (an inference-only save stays one), and the card is regenerated (it then shows
    the :data:`FIGURE_FILES` present). Returns the names of the replaced files."""
    folder = Path(folder)
    config = read_config(str(folder))
    model = from_pretrained(folder)
    if results is not None:
        model.set_results(results)
    if metrics is not None:
        model._training_record["metrics"] = dict(metrics)
    model.update_record(**fields)
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt", device="cpu") as f:
        omitted = json.loads((f.metadata() or {}).get("omitted_modules", "[]"))
    return model.write_pretrained(folder, config=config, omit=omitted)


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
    files (:data:`ZOO_FILES`: the saved files and the card's pictures) are uploaded unless ``allow_patterns`` says
    otherwise: a note or a private file that shares the folder stays local."""
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
        upload_kwargs.setdefault("allow_patterns", list(ZOO_FILES))
        with tempfile.TemporaryDirectory() as staged:  # the pushed card names the repo; the local folder is left as it is
            folder = Path(staged) / "model"
            shutil.copytree(directory, folder, ignore=lambda src, names: [n for n in names if Path(src) == Path(directory) and n not in ZOO_FILES])
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
        hparams = cls.migrate_config({k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")})
        checkpoint["state_dict"] = cls.migrate_state_dict(checkpoint["state_dict"], hparams)
        with saved_weights_follow():
            model = cls(**hparams)
    except (KeyError, TypeError, ValueError) as e:  # unknown method, args this version does not take
        raise PretrainedLoadError(f"{path}: cannot rebuild the model ({type(e).__name__}: {e.args[0] if e.args else e})") from None
    problems = state_dict_problems(model, {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()})
    if problems:
        raise PretrainedLoadError(f"{path}: cannot rebuild the model: its weights do not match its hyper-parameters: {problems}")
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.on_load_checkpoint(checkpoint)
    run = checkpoint.get("zoo_run")  # the command, machine, seed and wall time `zoo fit` recorded (zoo/cli/lightning.py)
    if isinstance(run, dict):
        try:
            model.update_record(**{k: v for k, v in run.items() if k in RECORD_FIELDS})
        except ResultsError as e:
            raise PretrainedLoadError(f"{path}: unreadable 'zoo_run' record: {e}") from None
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
