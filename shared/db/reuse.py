"""Result reuse: the same file with the same model and settings is analysed once.

A job that succeeds stores a `reuse_key`: the sha256 of the upload's sha256, the checkpoint's sha256,
the device type it ran on and every option that can change the result. A later job of the same owner
with the same key gets a copy of that result (and of its artifact files) instead of a new analysis,
marked with `reused_from`. Options that cannot change the result (batch size) are left out of the key;
the checkpoint is identified by its content, not by its file name.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.artifacts import StoredArtifact, attempt_dir
from shared.db.models import Artifact, Job, JobStatus
from shared.storage import ARTIFACTS, FileStore, StoredFileMissingError

# Options that only change how fast the answer comes, or name what the key already identifies.
RESULT_NEUTRAL_OPTIONS = frozenset({"batch_size", "weights", "device"})


def reuse_key(*, upload_sha256: str, model_sha256: str, device_type: str, options: Mapping[str, Any]) -> str:
    """The identity of an analysis' answer: file, checkpoint, device type and result-affecting options."""
    settings = {name: value for name, value in options.items() if name not in RESULT_NEUTRAL_OPTIONS}
    identity = {"upload": upload_sha256, "model": model_sha256, "device": device_type, "options": settings}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find_reusable(*, session: Session, owner: str, key: str, exclude_job_id: str | None = None) -> Job | None:
    """The owner's most recent succeeded job with this key, or None."""
    query = select(Job).where(Job.owner == owner, Job.reuse_key == key, Job.status == JobStatus.SUCCEEDED.value)
    if exclude_job_id is not None:
        query = query.where(Job.id != exclude_job_id)
    return session.scalar(query.order_by(Job.finished_at.desc()).limit(1))


def copy_artifacts(
    *, session: Session, store: FileStore, artifacts_dir: Path, source_job_id: str, job_id: str, attempt: int
) -> list[StoredArtifact] | None:
    """Copy the source job's artifact files (fetched from the store) into this job's attempt folder;
    None if any file is gone (then the result is computed again rather than reused without its pictures)."""
    rows = list(session.scalars(select(Artifact).where(Artifact.job_id == source_job_id).order_by(Artifact.name)))
    try:
        sources = [(row, store.fetch(f"{ARTIFACTS}/{row.path}")) for row in rows]
    except (StoredFileMissingError, ValueError):
        return None
    folder = attempt_dir(artifacts_dir=artifacts_dir, job_id=job_id, attempt=attempt)
    folder.mkdir(parents=True, exist_ok=True)
    stored = []
    for row, path in sources:
        target = folder / row.name
        shutil.copyfile(path, target)
        if store.remote:  # the fetched source is not this machine's to keep; the copy is published by the caller
            store.evict(f"{ARTIFACTS}/{row.path}")
        stored.append(StoredArtifact(name=row.name, media_type=row.media_type, size=row.size,
                                     path=target.relative_to(artifacts_dir).as_posix(), track_id=row.track_id,
                                     description=row.description))
    return stored


def reused_result(source: Job) -> dict[str, Any]:
    """The source's result JSON, saying where it came from (its timings are the source's)."""
    result = dict(source.result or {})
    finished = source.finished_at.isoformat() if source.finished_at else None
    result["reused_from"] = {"job_id": str(source.id), "finished_at": finished}
    return result
