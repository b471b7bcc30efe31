"""Crash-safe file writes for the cache and the checkpoint state: a reader sees the old file or the new one, never a
partial one (``verl_ext/cache/checkpoint.py`` relies on it: whenever verl's tracker names step N, step N's cache
files are whole)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s directory, flush and fsync it, rename it over ``path`` and
    fsync the directory (without that, a power loss may bring back the old directory entry). On any error the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
