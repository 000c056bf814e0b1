"""Checkpoints that are either the old file or the new one, never a torn mix.

Lightning 2.6 serialises a checkpoint in memory and writes it through an fsspec transaction, whose local temp file
is made by ``tempfile.mkstemp()`` in the *system* temp directory: when that is another filesystem than the checkpoint
folder, the commit's ``shutil.move`` copies into the final path (a kill or a full disk mid-copy leaves a truncated
``last.ckpt``), and nothing is fsynced. :class:`AtomicCheckpointIO` writes a temp file next to the target, fsyncs it,
and ``os.replace``\\ s it in (atomic on POSIX within one filesystem). ``zoo fit`` uses it unless a config sets its own
``CheckpointIO`` plugin.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go to a sibling temp file, then ``os.replace`` onto the target.
    Remote paths (``s3://`` …) keep Lightning's own writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file what a plain open() would
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_directory(target.parent)


def _fsync_directory(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is on disk; not every OS/filesystem allows it
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
