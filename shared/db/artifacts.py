"""Artifact files on disk: DATA_DIR/artifacts/<job_id>/<attempt>/<name>; rows hold the relative path.

Files are written before the rows (shared.db.jobs.complete_job), each atomically, so a row never
points at a half-written file. Each attempt writes its own folder: a worker that lost its job to
another never overwrites the winner's files, and removes its own.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from shared.files import write_atomically

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class ArtifactData(Protocol):
    """Bytes in `data`, or a finished file at `path` (a video) that is moved, not copied, into place."""

    name: str
    media_type: str
    data: bytes | None
    track_id: int | None
    description: str


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact file written to disk, ready to become an `Artifact` row."""

    name: str
    media_type: str
    size: int
    path: str
    track_id: int | None
    description: str


class UnsafeArtifactNameError(ValueError):
    """An artifact name that could escape its folder or is not a plain file name."""


def write_artifacts(
    *, artifacts_dir: Path, job_id: str, attempt: int, artifacts: Iterable[ArtifactData]
) -> list[StoredArtifact]:
    """Write each artifact's bytes (or move its file) to its own file, atomically, and describe it for
    the database."""
    folder = attempt_dir(artifacts_dir=artifacts_dir, job_id=job_id, attempt=attempt)
    folder.mkdir(parents=True, exist_ok=True)
    stored = []
    for artifact in artifacts:
        _check_name(artifact.name)
        source = getattr(artifact, "path", None)
        if source is not None:
            size = _move_atomically(Path(source), folder / artifact.name)
        else:
            write_atomically(folder / artifact.name, lambda temporary: Path(temporary).write_bytes(artifact.data))
            size = len(artifact.data)
        stored.append(StoredArtifact(
            name=artifact.name, media_type=artifact.media_type, size=size,
            path=(folder / artifact.name).relative_to(artifacts_dir).as_posix(),
            track_id=artifact.track_id, description=artifact.description,
        ))
    return stored


def attempt_dir(*, artifacts_dir: Path, job_id: str, attempt: int) -> Path:
    _check_name(job_id)
    return artifacts_dir / job_id / str(int(attempt))


def remove_attempt(*, artifacts_dir: Path, job_id: str, attempt: int) -> None:
    """Delete the files one attempt wrote (its job finished elsewhere, or storing failed)."""
    shutil.rmtree(attempt_dir(artifacts_dir=artifacts_dir, job_id=job_id, attempt=attempt), ignore_errors=True)


def _check_name(name: str) -> None:
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise UnsafeArtifactNameError(f"not a plain file name: {name!r}")


def _move_atomically(source: Path, path: Path) -> int:
    """Move a finished file into place (a rename; across file systems, a copy beside it first); its size."""
    size = source.stat().st_size
    try:
        os.replace(source, path)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(handle)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)
    return size
