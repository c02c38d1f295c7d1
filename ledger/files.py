"""Durable file writes: a crash (SIGKILL, power loss) at any moment leaves the old file or the
new one, never a missing or torn one.  Used for everything a node keeps outside LMDB: the
genesis and devnet files, key files and the signer's state."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_durably(path: str | Path, data: bytes, mode: int = 0o644,
                  before_replace: Callable[[], None] | None = None) -> None:
    """Temp file, fsync, rename, fsync of the directory.  `before_replace` runs between the
    fsync and the rename (the signer's crash tests kill the process there)."""
    path = Path(path)
    tmp = _written(path, data, mode)
    if before_replace is not None:
        before_replace()
    os.replace(tmp, path)
    _sync_dir(path.parent)


def create_durably(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Like write_durably, but for a file that must not exist yet (a key): FileExistsError if
    it does, and the file appears whole or not at all (link(2) refuses an existing name)."""
    path = Path(path)
    tmp = _written(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    _sync_dir(path.parent)


def _written(path: Path, data: bytes, mode: int) -> Path:
    """`data` in a fresh temp file beside `path`, on disk (fsync'd)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:  # a write cut short by the last free bytes: the next one raises ENOSPC
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
