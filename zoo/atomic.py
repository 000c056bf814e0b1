"""Files that are either the old version or the new one, never a torn mix; folders checked before a long run.

Used by every zoo writer of a single file (checkpoints, embeddings, MODEL_CARD.md, results JSON). A write goes to a
temp file next to the target, is fsynced, and ``os.replace``\\ s the target (atomic on POSIX within one filesystem).
On failure — a full disk, a quota, a kill — the temp file is removed and the error is an ``OSError`` whose filename is
the target, so the ``zoo`` command reports it as one line ("PATH: No space left on device").
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check that a file can be created in it (``OSError`` naming it otherwise).

    Called before a long run whose output goes there, so that an unwritable folder fails in a second, not after
    the run."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write there: {e.strerror}", str(folder)) from e
    return folder


def write_atomic(path: str | Path, data: bytes | memoryview | str) -> Path:
    """Write ``data`` to ``path`` through a fsynced sibling temp file and an atomic rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file what a plain open() would
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            size = f"{payload.nbytes / 1e6:.1f} MB" if payload.nbytes >= 1e5 else f"{payload.nbytes} bytes"
            raise OSError(e.errno, f"{e.strerror} (writing {size}; nothing was written)", str(target)) from e
        raise
    fsync_directory(target.parent)
    return target


def fsync_directory(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is on disk; not every OS/filesystem allows it
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
