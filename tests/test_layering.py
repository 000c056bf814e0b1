"""Imports only point down: cli → downstream → methods → {losses, encoders, eval} → nn → primitives (no zoo imports); data beside, importing only nn and primitives.

Every ``import`` / ``from ... import`` of every module under zoo/ is read with :mod:`ast` (imports inside functions and
under ``TYPE_CHECKING`` included; relative imports resolved), and each zoo import must go to the module's own layer or
to one its layer may use (:data:`MAY_IMPORT`). A module of a layer may import any module of the same layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]

# module prefix -> layer; the longest matching prefix decides
LAYERS: dict[str, str] = {
    "zoo.cli": "cli",
    # users of trained models: evaluation protocols, fine-tuning, embedding, export, cards, demos
    "zoo.downstream": "downstream",
    "zoo.embed": "downstream",
    "zoo.export": "downstream",
    "zoo.cards": "downstream",
    "zoo.methods": "methods",
    "zoo.hub": "methods",  # HubMixin, a base of SSLMethod (save/load a method)
    "zoo.losses": "losses",
    "zoo.encoders": "encoders",
    "zoo.eval": "eval",  # metrics (kNN, probe, RankMe, collapse, retrieval) that methods log
    "zoo.nn": "nn",
    "zoo.data": "data",
    # primitives: no imports from any other layer
    "zoo": "primitives",  # the package root: __version__; its lazy exports are resolved by name below
    "zoo.errors": "primitives",
    "zoo.atomic": "primitives",
    "zoo.validation": "primitives",
    "zoo.network": "primitives",
    "zoo.registry": "primitives",
    "zoo.rundir": "primitives",
    "zoo.checkpoint_io": "primitives",
    "zoo.schedules": "primitives",
    "zoo.deprecation": "primitives",
    "zoo.speed": "primitives",  # a Lightning precision plugin the trainer presets name
}

_BELOW_METHODS = {"losses", "encoders", "eval", "nn", "primitives"}
MAY_IMPORT: dict[str, set[str]] = {
    "cli": {"cli", "downstream", "methods", "data", *_BELOW_METHODS},
    "downstream": {"downstream", "methods", "data", *_BELOW_METHODS},
    "methods": {"methods", *_BELOW_METHODS},
    "losses": {"losses", "nn", "primitives"},
    "encoders": {"encoders", "nn", "primitives"},
    "eval": {"eval", "nn", "primitives"},
    "nn": {"nn", "primitives"},
    "data": {"data", "nn", "primitives"},
    "primitives": {"primitives"},
}

def layer_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 1 if len(parts) > 1 else 0, -1):  # the root "zoo" matches itself only
        layer = LAYERS.get(".".join(parts[:n]))
        if layer is not None:
            return layer
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def zoo_imports(module: str, source: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(imported zoo module, line) for every import in ``source``; ``from zoo import name`` resolves the root
    package's lazy exports to the module that defines ``name``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "zoo":
                found += [(zoo._LAZY.get(alias.name, "zoo"), node.lineno) for alias in node.names]
            else:
                found.append((target, node.lineno))
    return [(name, line) for name, line in found if name == "zoo" or name.startswith("zoo.")]


def violations(module: str, source: str, is_package: bool = False) -> list[tuple[str, str, int]]:
    """(module, imported module, line) for each import that points up or sideways out of the module's layer."""
    layer = layer_of(module)
    if layer is None:
        raise KeyError(f"{module} has no layer: add its package or module to LAYERS in tests/test_layering.py")
    bad = []
    for target, line in zoo_imports(module, source, is_package):
        target_layer = layer_of(target)
        if target_layer is None or target_layer not in MAY_IMPORT[layer]:
            bad.append((module, target, line))
    return bad


def all_violations() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((ROOT / "zoo").rglob("*.py")):
        module = module_name(path)
        if module == "zoo":  # lazy exports through importlib, by design
            continue
        found += violations(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
    return found


def test_imports_point_down():
    found = all_violations()
    crossing = [f"{m}:{line} imports {t} ({layer_of(m)} → {layer_of(t)})" for m, t, line in found]
    assert not crossing, "imports against the layering:\n" + "\n".join(crossing)


@pytest.mark.parametrize(
    ("module", "source", "crossing"),
    [
        ("zoo.nn.fake", "import torch\n\ndef f():\n    from zoo.data.images import ImageDataModule\n", ["zoo.data.images"]),
        ("zoo.nn.fake", "from ..encoders import vit\n", ["zoo.encoders"]),
        ("zoo.encoders.fake", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import zoo.methods.base\n", ["zoo.methods.base"]),
        ("zoo.methods.fake", "from zoo import from_pretrained, create_model\nfrom zoo.data import views\n", ["zoo.data"]),
        ("zoo.data.fake", "from zoo.nn.views import ImageViews\nfrom zoo.errors import DataError\nfrom . import base\n", []),
        ("zoo.losses.fake", "from zoo.nn.distributed import gather\nfrom zoo.validation import check_tensor\n", []),
        ("zoo.errors", "from zoo import from_pretrained\n", ["zoo.hub"]),
        ("zoo.cli.fake", "from zoo.downstream.pretrained import Pretrained\nfrom zoo.data.images import X\n", []),
    ],
)
def test_checker_finds_crossing_imports(module, source, crossing):
    assert [t for _, t, _ in violations(module, source)] == crossing


def test_checker_refuses_a_module_without_layer():
    with pytest.raises(KeyError, match="zoo.fresh has no layer"):
        violations("zoo.fresh", "import os\n")
