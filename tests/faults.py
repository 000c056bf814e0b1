"""Fault injection for the reliability tests: a callback and methods that `zoo fit` loads by class path."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
from torch import Tensor

from zoo.methods.base import SSLOutput
from zoo.methods.simclr import SimCLR


class KillAtStep(L.Callback):
    """SIGKILL this process once ``global_step`` reaches ``step``: no cleanup, no final checkpoint, like an OOM kill
    or a pre-empted node. Lightning orders ModelCheckpoint after user callbacks, so a checkpoint due at the same step
    is never written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class NonFiniteLossSimCLR(SimCLR):
    """SimCLR whose loss is replaced by ``value`` (NaN or inf) from optimizer step ``bad_step`` on, as a diverging
    run's would be."""

    def __init__(self, bad_step: int = 2, value: str = "nan", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad_step = bad_step
        self.value = float(value)  # a string: the CLI's float type does not parse "nan"/"inf"

    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        out = super().ssl_step(batch)
        if self.global_step >= self.bad_step:
            out.loss = out.loss * 0 + self.value
        return out


class CollapsedSimCLR(SimCLR):
    """SimCLR whose embedding is the same vector for every input: complete collapse."""

    def embed(self, images: Tensor) -> Tensor:
        return super().embed(images) * 0 + 1
