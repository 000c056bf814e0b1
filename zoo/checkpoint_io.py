"""Checkpoints that are either the old file or the new one, never a torn mix.

Lightning 2.6 serialises a checkpoint in memory and writes it through an fsspec transaction, whose local temp file
is made by ``tempfile.mkstemp()`` in the *system* temp directory: when that is another filesystem than the checkpoint
folder, the commit's ``shutil.move`` copies into the final path (a kill or a full disk mid-copy leaves a truncated
``last.ckpt``), and nothing is fsynced. :class:`AtomicCheckpointIO` writes a temp file next to the target, fsyncs it,
and ``os.replace``\\ s it in (atomic on POSIX within one filesystem). ``zoo fit`` uses it unless a config sets its own
``CheckpointIO`` plugin.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.atomic import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go to a sibling temp file, then ``os.replace`` onto the target.
    Remote paths (``s3://`` …) keep Lightning's own writer.

    A save that fails (a full disk) removes its temp file, leaves the previous checkpoint as it was and raises an
    ``OSError`` naming the checkpoint, which ``zoo fit`` reports as one line."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        # serialised in memory first (as Lightning's own writer does): the file is then written with plain file I/O,
        # whose errors are OSErrors with their errno rather than torch's opaque "file write failed"
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(path, buffer.getbuffer())
