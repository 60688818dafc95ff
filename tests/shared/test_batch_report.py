"""shared.batch_report: one row format for the CLI's and the web's batch reports."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from shared.batch_report import REPORT_COLUMNS, report_json, report_row, summarize, write_csv
from tests.conftest import REPO_ROOT


def engine_result(verdict: str = "FAKE", probability: float | None = 0.875, faces: int = 2) -> dict:
    return {"verdict": verdict, "fake_probability": probability,
            "reasons": [{"code": "short_track", "message": "m"}, {"code": "truncated", "message": "m"}],
            "tracks": [{"id": i, "windows": [], "boxes": []} for i in range(faces)], "warnings": []}


def read_csv(rows) -> list[list[str]]:
    stream = io.StringIO(newline="")
    write_csv(rows, stream)
    return list(csv.reader(io.StringIO(stream.getvalue(), newline="")))


def test_a_succeeded_row_takes_verdict_probability_faces_and_reason_codes():
    row = report_row(position=1, file="sub/a.mp4", sha256="ab" * 32, status="succeeded", result=engine_result(),
                     job_id="j1")

    assert tuple(row) == REPORT_COLUMNS
    assert row["verdict"] == "FAKE" and row["fake_probability"] == 0.875
    assert row["faces"] == 2
    assert row["reasons"] == "short_track; truncated"
    assert (row["error_code"], row["error_message"], row["reused_from"]) == (None, None, None)


def test_a_failed_row_has_its_error_and_no_verdict():
    row = report_row(position=2, file="b.mp4", sha256=None, status="failed", result=None,
                     error_code="not_a_video", error_message="b.mp4 holds no video")

    assert (row["verdict"], row["fake_probability"], row["faces"], row["reasons"]) == (None, None, None, None)
    assert (row["error_code"], row["error_message"]) == ("not_a_video", "b.mp4 holds no video")


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        report_row(position=1, file="a.mp4", sha256=None, status="done", result=None)


def test_csv_has_the_header_and_empty_cells_for_none():
    rows = [report_row(position=1, file="a.mp4", sha256="00", status="succeeded",
                       result=engine_result("INCONCLUSIVE", None, 0))]

    header, line = read_csv(rows)

    assert tuple(header) == REPORT_COLUMNS
    assert dict(zip(header, line)) == {
        "position": "1", "file": "a.mp4", "sha256": "00", "status": "succeeded", "verdict": "INCONCLUSIVE",
        "fake_probability": "", "faces": "0", "reasons": "short_track; truncated", "error_code": "",
        "error_message": "", "job_id": "", "reused_from": ""}


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\")", "+1.mp4", "-2.mp4", "@SUM(A1).mp4", "\tx.mp4",
                                  "\rx.mp4"])
def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe(name):
    rows = [report_row(position=1, file=name, sha256=None, status="failed", result=None, error_code="not_a_video",
                       error_message=f"{name} holds no video", reused_from=name)]

    _, line = read_csv(rows)
    cells = dict(zip(REPORT_COLUMNS, line))

    assert cells["file"] == "'" + name
    assert cells["reused_from"] == "'" + name
    assert cells["error_message"] == "'" + f"{name} holds no video"


def test_csv_leaves_ordinary_text_and_numbers_alone():
    rows = [report_row(position=3, file="a=b, \"quoted\"\nname.mp4", sha256=None, status="succeeded",
                       result=engine_result(probability=0.25))]

    _, line = read_csv(rows)

    assert line[1] == "a=b, \"quoted\"\nname.mp4"  # quoted by the csv module, read back exactly
    assert line[0] == "3" and float(line[5]) == 0.25


def test_summary_counts_verdicts_of_succeeded_rows_and_failures():
    rows = [
        report_row(position=1, file="a", sha256=None, status="succeeded", result=engine_result("FAKE")),
        report_row(position=2, file="b", sha256=None, status="succeeded", result=engine_result("REAL", 0.1)),
        report_row(position=3, file="c", sha256=None, status="succeeded", result=engine_result("REAL", 0.2)),
        report_row(position=4, file="d", sha256=None, status="failed", result=None, error_code="x"),
        report_row(position=5, file="e", sha256=None, status="queued", result=None),
    ]

    summary = summarize(rows)

    assert summary["total"] == 5 and summary["failed"] == 1
    assert summary["verdicts"] == {"FAKE": 1, "REAL": 2, "INCONCLUSIVE": 0}
    assert summary["statuses"] == {"queued": 1, "running": 0, "succeeded": 3, "failed": 1, "cancelled": 0}


def test_report_json_keeps_exactly_the_columns_and_is_json():
    row = report_row(position=1, file="=a.mp4", sha256=None, status="succeeded", result=engine_result())
    extra = dict(row, secret="not exported")

    report = json.loads(json.dumps(report_json([extra])))

    assert report["columns"] == list(REPORT_COLUMNS)
    assert report["rows"] == [row]  # JSON is data, not a spreadsheet: no apostrophe
    assert report["summary"] == summarize([row])


def test_importing_it_loads_no_torch_flask_or_celery():
    code = ("import sys, shared.batch_report; "
            "print(*(name in sys.modules for name in ('torch', 'flask', 'celery', 'shared.model')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 4
