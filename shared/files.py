"""File helpers used across layers: streaming digests and atomic writes (stdlib only)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in `chunk_size` pieces so memory stays flat."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(temp_path)` on a temporary file beside `path`, then rename it into place.

    Readers never see a half-written file; on failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
