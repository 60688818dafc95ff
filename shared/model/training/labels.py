"""Label files: which video is REAL and which is FAKE.

Two layouts are accepted:
- the seed's: `file,label` on every line, no header (e.g. `000_003.mp4,FAKE`);
- with a header naming at least the columns `file` and `label`, in any order, other columns ignored.
Labels are REAL or FAKE in any letter case. Errors name the line so a person can fix the file.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared.model.training.errors import LabelFileError

LABELS = ("FAKE", "REAL")


@dataclass(frozen=True)
class LabelEntry:
    """One labelled video: `file` is relative to the source directory (POSIX separators)."""

    file: str
    label: str
    line: int


def read_labels(path: Path) -> list[LabelEntry]:
    """Parse a label file in either layout; raise LabelFileError naming the offending line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise LabelFileError(f"label file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not a UTF-8 text file") from exc
    return parse_labels(text.splitlines(), source=str(path))


def parse_labels(lines: list[str], *, source: str = "<labels>") -> list[LabelEntry]:
    """Parse the lines of a label file (see the module docstring for the layouts)."""
    rows = [(number, row) for number, row in enumerate(csv.reader(lines), start=1) if _has_content(row)]
    if not rows:
        raise LabelFileError(f"{source}: no labelled videos")
    file_col, label_col = 0, 1
    first_number, first_row = rows[0]
    if _is_header(first_row):
        file_col, label_col = _header_columns(first_row, source=source, line=first_number)
        rows = rows[1:]
    entries = [_entry(row, number, file_col=file_col, label_col=label_col, source=source) for number, row in rows]
    _check_duplicates(entries, source=source)
    if not entries:
        raise LabelFileError(f"{source}: a header but no labelled videos")
    return entries


def _has_content(row: list[str]) -> bool:
    return any(cell.strip() for cell in row)


def _is_header(row: list[str]) -> bool:
    cells = [cell.strip().lower() for cell in row]
    return "file" in cells or "label" in cells


def _header_columns(row: list[str], *, source: str, line: int) -> tuple[int, int]:
    cells = [cell.strip().lower() for cell in row]
    missing = [name for name in ("file", "label") if name not in cells]
    if missing:
        raise LabelFileError(f"{source}:{line}: header lacks column(s) {', '.join(missing)}; found {', '.join(cells)}")
    return cells.index("file"), cells.index("label")


def _entry(row: list[str], number: int, *, file_col: int, label_col: int, source: str) -> LabelEntry:
    if len(row) <= max(file_col, label_col):
        raise LabelFileError(f"{source}:{number}: expected `file,label`, got {','.join(row)!r}")
    file = row[file_col].strip()
    label = row[label_col].strip().upper()
    if not file:
        raise LabelFileError(f"{source}:{number}: empty file name")
    if label not in LABELS:
        raise LabelFileError(f"{source}:{number}: label must be REAL or FAKE, got {row[label_col].strip()!r}")
    return LabelEntry(file=_safe_relative(file, number=number, source=source), label=label, line=number)


def _safe_relative(file: str, *, number: int, source: str) -> str:
    """Keep every video inside the source directory: no absolute paths, no `..`."""
    posix = PurePosixPath(file.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and posix.parts[0].endswith(":")):
        raise LabelFileError(f"{source}:{number}: file must be relative to the source directory, got {file!r}")
    return posix.as_posix()


def _check_duplicates(entries: list[LabelEntry], *, source: str) -> None:
    seen: dict[str, LabelEntry] = {}
    for entry in entries:
        earlier = seen.get(entry.file)
        if earlier is not None:
            raise LabelFileError(
                f"{source}:{entry.line}: {entry.file!r} is already labelled on line {earlier.line}"
            )
        seen[entry.file] = entry
