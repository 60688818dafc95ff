"""The report of a batch: one row per file, the same columns from `deepfake batch` and the web export.

A row is small (no tracks, no artifacts), so a report of thousands of files stays cheap to hold.
Torch-, Flask- and Celery-free: the web app and the CLI both import it.
"""
from __future__ import annotations

import csv
from collections import Counter
from typing import IO, Any, Iterable, Mapping

from shared.db.models import JobStatus

REPORT_COLUMNS = ("position", "file", "sha256", "status", "verdict", "fake_probability", "faces", "reasons",
                  "error_code", "error_message", "job_id", "reused_from")
STATUSES = tuple(status.value for status in JobStatus)
# The video verdicts of shared.model.aggregation, named here because the web may not import the engine.
VERDICTS = ("FAKE", "REAL", "INCONCLUSIVE")
REASON_SEPARATOR = "; "
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def report_row(*, position: int, file: str, sha256: str | None, status: str, result: Mapping | None,
               error_code: str | None = None, error_message: str | None = None, job_id: str | None = None,
               reused_from: str | None = None) -> dict[str, Any]:
    """One file's row; `result` is the engine's result JSON (AnalysisResult.to_dict()) or None."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    return {
        "position": position,
        "file": file,
        "sha256": sha256,
        "status": status,
        "verdict": result.get("verdict") if result else None,
        "fake_probability": result.get("fake_probability") if result else None,
        "faces": len(result.get("tracks") or ()) if result else None,
        "reasons": REASON_SEPARATOR.join(reason["code"] for reason in result.get("reasons") or ()) if result else None,
        "error_code": error_code,
        "error_message": error_message,
        "job_id": job_id,
        "reused_from": reused_from,
    }


def write_csv(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> None:
    """The rows as CSV with a REPORT_COLUMNS header; open `stream` with newline="" (the csv module's rule)."""
    writer = csv.writer(stream)
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in REPORT_COLUMNS])


def _cell(value: Any) -> Any:
    """Empty for None; text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def report_json(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`{"columns", "rows", "summary"}`: the rows with exactly the report's columns, and their counts."""
    kept = [{column: row.get(column) for column in REPORT_COLUMNS} for row in rows]
    return {"columns": list(REPORT_COLUMNS), "rows": kept, "summary": summarize(kept)}


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts: `total`, `failed`, `verdicts` (succeeded rows by verdict) and `statuses` (rows by status)."""
    rows = list(rows)
    statuses = Counter(row.get("status") for row in rows)
    verdicts = Counter(row.get("verdict") for row in rows if row.get("status") == JobStatus.SUCCEEDED.value)
    return {
        "total": len(rows),
        "failed": statuses[JobStatus.FAILED.value],
        "verdicts": {verdict: verdicts[verdict] for verdict in VERDICTS},
        "statuses": {status: statuses[status] for status in STATUSES},
    }
