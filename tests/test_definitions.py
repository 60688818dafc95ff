"""Each list of values is declared once (shared.options, shared.db.models.JobStatus, shared.lanes) and
everything else is derived from it: a second literal copy, or a derived list that differs, fails here."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint

from cli.main import build_parser
from shared import lanes, options
from shared.db.models import TERMINAL_STATUSES, Job, JobStatus
from web.schemas import JOB_STATUSES, OPTION_PROPERTIES

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("shared", "web", "worker", "cli", "bench")
# Each list, with the one file allowed to spell it out.
CANONICAL = {
    "face detectors": (options.FACE_DETECTORS, "shared/options.py"),
    "devices": (options.DEVICES, "shared/options.py"),
    "precisions": (options.PRECISIONS, "shared/options.py"),
    "aggregations": (options.AGGREGATIONS, "shared/options.py"),
    "job statuses": (tuple(status.value for status in JobStatus), "shared/db/models.py"),
    "terminal statuses": (tuple(status.value for status in TERMINAL_STATUSES), "shared/db/models.py"),
}


def _literal_lists(tree: ast.AST):
    """(line, set of strings) of every tuple, list or set literal made only of string constants."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                isinstance(item, ast.Constant) and isinstance(item.value, str) for item in node.elts):
            yield node.lineno, {item.value for item in node.elts}


def _source_files():
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:  # a migration keeps the literal of its day
                yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def test_no_list_is_spelled_out_outside_its_definition():
    copies = []
    for relative, tree in _source_files():
        for line, values in _literal_lists(tree):
            for name, (canonical, home) in CANONICAL.items():
                if values == set(canonical) and relative != home:
                    copies.append(f"{relative}:{line} re-declares the {name}")
    assert not copies, "; ".join(copies)


def test_the_task_name_is_written_once():
    places = [relative for relative, tree in _source_files() for node in ast.walk(tree)
              if isinstance(node, ast.Constant) and node.value == lanes.ANALYZE_TASK]
    assert places == ["shared/lanes.py"]


def test_the_api_schema_is_the_options_declaration():
    assert OPTION_PROPERTIES["face_detector"]["enum"] == list(options.FACE_DETECTORS)
    assert OPTION_PROPERTIES["precision"]["enum"] == list(options.PRECISIONS)
    assert tuple(OPTION_PROPERTIES) == options.CLIENT_OPTIONS
    for name, schema in OPTION_PROPERTIES.items():
        if name in options.INT_RANGES:
            assert (schema["minimum"], schema["maximum"]) == options.INT_RANGES[name]


@pytest.mark.parametrize("name", sorted(options.INT_RANGES))
def test_each_declared_range_is_the_one_validation_enforces(name):
    low, high = options.INT_RANGES[name]
    assert getattr(options.AnalysisOptions(**{name: low}), name) == low
    assert getattr(options.AnalysisOptions(**{name: high}), name) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(options.InvalidOptionsError, match=name):
            options.AnalysisOptions(**{name: outside})


def test_job_statuses_of_the_api_and_the_database_are_the_enum():
    values = [status.value for status in JobStatus]
    check = next(c for c in Job.__table__.constraints if isinstance(c, CheckConstraint))

    assert JOB_STATUSES == values
    assert str(check.sqltext) == "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"
    assert {status for status in JobStatus if status.is_terminal} == TERMINAL_STATUSES


def _choices(command: list[str], flag: str) -> tuple[str, ...]:
    """The choices of `flag` of the (sub)command `command` of the `deepfake` parser."""
    parser = build_parser()
    for name in command:
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subcommands.choices[name]
    return tuple(next(action for action in parser._actions if flag in action.option_strings).choices)


@pytest.mark.parametrize("command, flag, canonical", [
    (["submit"], "--face-detector", options.FACE_DETECTORS),
    (["submit"], "--precision", options.PRECISIONS),
    (["batch"], "--face-detector", options.FACE_DETECTORS),
    (["batch"], "--device", options.DEVICES),
    (["analyze"], "--face-detector", options.FACE_DETECTORS),
    (["analyze"], "--precision", options.PRECISIONS),
    (["analyze"], "--aggregation", options.AGGREGATIONS),
    (["dataset", "prepare"], "--face-detector", options.FACE_DETECTORS),
    (["train"], "--device", options.DEVICES),
])
def test_cli_choices_are_the_options_lists(command, flag, canonical):
    assert _choices(command, flag) == canonical
