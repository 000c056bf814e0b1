"""Renamed init args and config keys: an old name keeps loading (shipped config.json files, checkpoints' hparams,
users' configs) under its new name, with a FutureWarning that names both. A primitive: no zoo imports."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any


def renamed(kwargs: Mapping[str, Any] | None, renames: Mapping[str, str], where: str) -> dict[str, Any]:
    """A copy of ``kwargs`` with each key ``old`` of ``renames`` moved to ``renames[old]``, warning
    ``"<where>: 'old' is now 'new'"`` (FutureWarning) for each; an old name given together with its new one is an
    error. None gives ``{}``."""
    out = dict(kwargs or {})
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"{where}: {old!r} and {new!r} are one setting ({old!r} is its old name); give only {new!r}")
        warnings.warn(f"{where}: {old!r} is now {new!r}", FutureWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out
