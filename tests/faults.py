"""Fault injection for the reliability tests: callbacks a `zoo fit` subprocess loads by class path."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL this process once ``global_step`` reaches ``step``: no cleanup, no final checkpoint, like an OOM kill
    or a pre-empted node. Lightning orders ModelCheckpoint after user callbacks, so a checkpoint due at the same step
    is never written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
