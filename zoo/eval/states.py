"""Reading a torchmetrics list state: a list of per-batch tensors on one process, but one concatenated Tensor inside
``compute()`` once the states have been gathered across ranks (``dist_reduce_fx="cat"``). Code that tests such a
state with ``if not state`` works on one process and fails ("Boolean value of Tensor ... is ambiguous") on two."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.utilities import dim_zero_cat


def concatenated(state: list[Tensor] | Tensor) -> Tensor | None:
    """The rows of a ``cat`` list state as one tensor, whether or not it has been synced; None when it has none."""
    if isinstance(state, Tensor):
        return state if state.numel() else None
    return dim_zero_cat(state) if state else None
