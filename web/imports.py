"""Server-side import for batches: videos already on the server, under the operator's BATCH_IMPORT_ROOT.

Clients name files relative to that root. Nothing outside it is ever opened: every path is resolved
(symbolic links included) and must stay inside the root; folders are walked without following links.
Each file is copied (hard-linked where the filesystem allows) into the uploads folder under a server
name and hashed, so the job owns its copy exactly as it owns an upload and retention treats both alike.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from web.errors import ApiError
from web.uploads import RECEIVING_SUFFIX, StoredUpload

MAX_IMPORT_FILES = 10_000
HASH_CHUNK = 4 * 1024 * 1024


class ImportDisabledError(ApiError):
    status = 403
    code = "import_disabled"


class ImportPathError(ApiError):
    status = 422
    code = "invalid_import_path"


@dataclass(frozen=True)
class ImportCandidate:
    """One file a batch import names: its label (relative to the root) and where it is, if it is."""

    label: str
    path: Path | None  # None: absent or not a regular file


def import_root(configured: Path | None) -> Path:
    """The resolved import root, or 403 import_disabled when the operator set none."""
    if configured is None:
        raise ImportDisabledError("importing server-side files is disabled: the operator sets BATCH_IMPORT_ROOT")
    root = configured.resolve()
    if not root.is_dir():
        raise ImportDisabledError("BATCH_IMPORT_ROOT is not a folder on this server")
    return root


def candidates_from_paths(root: Path, paths: Iterable[str]) -> list[ImportCandidate]:
    """The named files, each checked to stay inside `root`; one path leaving it refuses the request."""
    found = []
    for raw in paths:
        label = _relative(raw)
        path = (root / label).resolve()
        if not path.is_relative_to(root):
            raise ImportPathError(f"{raw!r} is outside the import folder")
        found.append(ImportCandidate(label=label, path=path if path.is_file() else None))
    return _capped(found)


def candidates_from_folder(root: Path, folder: str, *, recursive: bool, extensions: frozenset[str]) -> list[ImportCandidate]:
    """The video files (by extension) in a folder under `root`, sorted; links leaving the root are skipped."""
    start = (root / _relative(folder, allow_empty=True)).resolve()
    if not start.is_relative_to(root):
        raise ImportPathError(f"{folder!r} is outside the import folder")
    if not start.is_dir():
        raise ImportPathError(f"{folder!r} is not a folder under the import folder")
    found = []
    for directory, subdirs, files in os.walk(start, followlinks=False):
        subdirs.sort()
        if not recursive:
            subdirs.clear()
        for name in sorted(files):
            path = (Path(directory) / name).resolve()
            if path.suffix.lower().lstrip(".") in extensions and path.is_relative_to(root) and path.is_file():
                found.append(ImportCandidate(label=(Path(directory) / name).relative_to(root).as_posix(), path=path))
    return _capped(sorted(found, key=lambda c: c.label))


def copy_into_uploads(source: Path, *, uploads_dir: Path, label: str) -> StoredUpload:
    """The file as an upload: hard link (or copy) to a server-named file, hashed; the caller probes it."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / f"{uuid.uuid4()}.{RECEIVING_SUFFIX}"
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return StoredUpload(path=target, original_name=label[:500], size=target.stat().st_size, sha256=digest.hexdigest())


def _relative(raw: object, *, allow_empty: bool = False) -> str:
    if not isinstance(raw, str) or ("\x00" in raw) or (not raw.strip() and not allow_empty):
        raise ImportPathError(f"import paths are non-empty strings relative to the import folder; got {raw!r}")
    if raw.startswith("/") or raw.startswith("\\"):
        raise ImportPathError(f"{raw!r} is absolute; name files relative to the import folder")
    return raw.strip()


def _capped(found: list[ImportCandidate]) -> list[ImportCandidate]:
    if len(found) > MAX_IMPORT_FILES:
        raise ImportPathError(f"{len(found)} files named; one batch imports at most {MAX_IMPORT_FILES}")
    return found
