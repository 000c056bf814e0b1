"""zoo: a PyTorch Lightning model zoo for self-supervised representation learning across modalities.

The public names are loaded on first use (PEP 562), so that ``import zoo`` — and ``zoo list``/``zoo --help`` — do not
import torch and Lightning.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "from_pretrained": "zoo.hub",
    "create_model": "zoo.registry",
    "list_models": "zoo.registry",
    "register_method": "zoo.registry",
}

__all__ = ["__version__", "create_model", "from_pretrained", "list_models", "register_method"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
