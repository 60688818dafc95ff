from pathlib import Path

import pytest

from shared.model.training.errors import LabelFileError
from shared.model.training.labels import parse_labels, read_labels


def test_seed_format_without_header(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("000_003.mp4,FAKE\n001.mp4,real\n\nsub/002.mp4, Fake \n", encoding="utf-8")
    entries = read_labels(path)
    assert [(e.file, e.label, e.line) for e in entries] == [
        ("000_003.mp4", "FAKE", 1),
        ("001.mp4", "REAL", 2),
        ("sub/002.mp4", "FAKE", 4),
    ]


def test_header_with_extra_columns_in_any_order() -> None:
    entries = parse_labels(["split,Label,File,notes", "train,REAL,a.mp4,x", "val,fake,b.mp4,"])
    assert [(e.file, e.label, e.line) for e in entries] == [("a.mp4", "REAL", 2), ("b.mp4", "FAKE", 3)]


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufefffile,label\r\na.mp4,REAL\r\n".encode("utf-8"))
    assert [(e.file, e.label) for e in read_labels(path)] == [("a.mp4", "REAL")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["a.mp4,REAL", "b.mp4,MAYBE"], "<labels>:2: label must be REAL or FAKE, got 'MAYBE'"),
        (["a.mp4,REAL", "b.mp4"], "<labels>:2: expected `file,label`"),
        (["file,kind", "a.mp4,REAL"], "<labels>:1: header lacks column(s) label"),
        (["a.mp4,REAL", "", "a.mp4,FAKE"], "<labels>:3: 'a.mp4' is already labelled on line 1"),
        (["../etc/passwd,REAL"], "<labels>:1: file must be relative"),
        (["/abs/a.mp4,REAL"], "<labels>:1: file must be relative"),
        ([",REAL"], "<labels>:1: empty file name"),
        (["file,label"], "a header but no labelled videos"),
        (["", "  "], "no labelled videos"),
    ],
)
def test_errors_name_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(LabelFileError) as raised:
        parse_labels(lines)
    assert message in raised.value.message
    assert raised.value.code == "invalid_labels"


def test_missing_file_is_a_label_error(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="not found"):
        read_labels(tmp_path / "nope.csv")
