"""The clip manifest: one face-only clip per row, with its source video, track, frame count and label.

Written by `dataset prepare` as CSV (`clip,source,track,frames,label`); JSON Lines with the same keys
is read too. Clip paths are stored relative to the manifest's folder so a data set can be moved.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from shared.model.training.errors import ManifestError
from shared.model.training.labels import LABELS

COLUMNS = ("clip", "source", "track", "frames", "label")


@dataclass(frozen=True)
class ClipRecord:
    """One face-only clip. `clip` is absolute once read; `source` identifies the original video."""

    clip: Path
    source: str
    track: int
    frames: int
    label: str

    @property
    def is_fake(self) -> bool:
        return self.label == "FAKE"


def read_manifest(path: Path) -> list[ClipRecord]:
    """Read a CSV or JSONL manifest; relative clip paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    rows = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _read_csv(path)
    records = [_record(row, base=path.parent, where=f"{path}:{line}") for line, row in rows]
    if not records:
        raise ManifestError(f"{path}: no clips")
    return records


def write_manifest(path: Path, records: Iterable[ClipRecord]) -> Path:
    """Write records as CSV atomically; clip paths become relative to the manifest's folder."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for record in records:
            clip = os.path.relpath(record.clip, path.parent.resolve())
            writer.writerow([Path(clip).as_posix(), record.source, record.track, record.frames, record.label])
    os.replace(tmp, path)
    return path


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
        return [(number, row) for number, row in enumerate(reader, start=2)]


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{number}: not JSON ({exc.msg})") from exc
    return rows


def _record(row: dict, *, base: Path, where: str) -> ClipRecord:
    try:
        label = str(row["label"]).strip().upper()
        clip = Path(str(row["clip"]))
        record = ClipRecord(
            clip=(clip if clip.is_absolute() else base / clip).resolve(),
            source=str(row["source"]),
            track=int(row["track"]),
            frames=int(row["frames"]),
            label=label,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: bad row ({exc})") from exc
    if label not in LABELS:
        raise ManifestError(f"{where}: label must be REAL or FAKE, got {row['label']!r}")
    return record
