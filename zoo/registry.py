"""Registry of self-supervised methods, by name.

``@register_method("simclr")`` makes a LightningModule reachable from ``zoo.create_model``, the CLI (``zoo list``) and
``zoo.from_pretrained`` (which dispatches on the ``method`` key of a Hub ``config.json``).

The methods shipped with zoo are also listed in :data:`BUILTIN_METHODS` (module, class, one-sentence summary), so that
``zoo list`` and ``--help`` answer without importing torch and Lightning; ``tests/test_registry.py`` checks that table
against the registered classes. A built-in method's module is imported the first time the method is asked for.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T", bound=type)

_METHODS: dict[str, type] = {}


class MethodInfo(NamedTuple):
    module: str
    qualname: str
    summary: str  # first sentence of the class docstring (first_sentence)

    @property
    def class_path(self) -> str:
        return f"{self.module}.{self.qualname}"


BUILTIN_METHODS: dict[str, MethodInfo] = {
    "byol": MethodInfo(
        "zoo.methods.byol", "BYOL",
        "BYOL (Grill et al. 2020, arXiv 2006.07733): an online network (encoder, projector, predictor) regresses the "
        "projection that an EMA target network (encoder, projector) gives for another view; no negatives.",
    ),
    "dmt_jepa": MethodInfo(
        "zoo.methods.dmt_jepa", "DMTJEPA",
        "DMT-JEPA (Mo & Yun 2024, arXiv 2405.17995): I-JEPA whose targets are class-attention aggregates of each masked "
        "patch's semantically similar neighbours.",
    ),
    "ijepa": MethodInfo(
        "zoo.methods.ijepa", "IJEPA",
        "I-JEPA (Assran et al. 2023, arXiv 2301.08243): from one context block of an image, predict the representations "
        "of several target blocks of the same image, in representation space; no views to compare.",
    ),
    "simclr": MethodInfo(
        "zoo.methods.simclr", "SimCLR",
        "SimCLR (Chen et al. 2020, arXiv 2002.05709): two augmented views of each image, a ResNet encoder, an MLP "
        "projector and the NT-Xent contrastive loss over the global batch.",
    ),
    "skeleton_mae": MethodInfo(
        "zoo.methods.skeleton_mae", "SkeletonMAE",
        "SkeletonMAE (Yan et al., ICCV 2023): body parts of every frame's skeleton graph are replaced by a learnable "
        "[MASK] token, a GIN encoder embeds the graph, and a GIN + MLP decoder reconstructs the masked joints under the "
        "scaled cosine error.",
    ),
    "slap": MethodInfo(
        "zoo.methods.slap", "SLAP",
        "SLAP (Guinot et al. 2025, arXiv 2506.17815): audio–text BYOL without negatives.",
    ),
    "swav": MethodInfo(
        "zoo.methods.swav", "SwAV",
        "SwAV (Caron et al. 2020, arXiv 2006.09882): the code of one view, obtained by an equipartitioned "
        "(Sinkhorn-Knopp) assignment of the batch to K prototypes, is predicted from every other view.",
    ),
    "tjepa": MethodInfo(
        "zoo.methods.tjepa", "TJEPA",
        "T-JEPA (Thimonier et al. 2025, arXiv 2410.05016): a context encoder sees a random subset of a row's feature "
        "tokens, an I-JEPA-style predictor regresses what an EMA target encoder computes for held-out features; no "
        "augmentations.",
    ),
}

# a sentence ends at . ! ? followed by a capitalised word, except after the abbreviations of citations
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bvs)[.!?](?=\s+[A-Z\[(])")


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((inspect.cleandoc(doc or "").split("\n\n") or [""])[0].split())
    match = _SENTENCE_END.search(paragraph)
    return paragraph[: match.end()] if match else paragraph


def method_info(name: str) -> MethodInfo:
    """Module, class and summary of a method, without importing a built-in one."""
    if name in _METHODS:
        cls = _METHODS[name]
        return MethodInfo(cls.__module__, cls.__qualname__, first_sentence(cls.__doc__))
    if name in BUILTIN_METHODS:
        return BUILTIN_METHODS[name]
    raise KeyError(f"unknown method {name!r}; known methods: {', '.join(list_models()) or '(none registered)'}")


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
    """Names of all registered methods (the built-in ones whether imported yet or not), sorted."""
    return sorted(set(_METHODS) | set(BUILTIN_METHODS))


def get_method(name: str) -> type:
    """The class registered under ``name``; a clear error listing the known names otherwise."""
    if name not in _METHODS and name in BUILTIN_METHODS:
        importlib.import_module(BUILTIN_METHODS[name].module)  # registers it
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(list_models()) or "(none registered)"
        raise KeyError(f"unknown method {name!r}; known methods: {known}") from None


def create_model(name: str, **hparams: Any) -> Any:
    """Instantiate the method registered under ``name`` with ``hparams`` as init args."""
    return get_method(name)(**hparams)
