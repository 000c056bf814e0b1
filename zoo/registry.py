"""Registry of self-supervised methods, by name.

``@register_method("simclr")`` makes a LightningModule reachable from ``zoo.create_model``, the CLI (``zoo list``) and
``zoo.from_pretrained`` (which dispatches on the ``method`` key of a Hub ``config.json``).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: register a method class under ``name`` and record the name on the class."""

    def decorator(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered by {_METHODS[name].__qualname__}")
        cls.method_name = name  # type: ignore[attr-defined]
        _METHODS[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> type:
    """The class registered under ``name``; a clear error listing the known names otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(list_models()) or "(none registered)"
        raise KeyError(f"unknown method {name!r}; known methods: {known}") from None


def create_model(name: str, **hparams: Any) -> Any:
    """Instantiate the method registered under ``name`` with ``hparams`` as init args."""
    return get_method(name)(**hparams)
