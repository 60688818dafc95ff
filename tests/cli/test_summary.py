"""The CLI's readable summary says what the job page says (shared.model.report's words)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from cli.analyze import summary
from shared.model.types import Reason
from tests.web.conftest import engine_result


@pytest.mark.parametrize(("verdict", "probability", "line"), [
    ("FAKE", 0.91, "Fake probability: 91% (threshold 50%; confidence 91%)"),
    ("REAL", 0.12, "Fake probability: 12% (threshold 50%; confidence 88%)"),
    ("INCONCLUSIVE", 0.539, "Fake probability: 54% (threshold 50%; too close to call)"),
])
def test_the_probability_line_speaks_as_the_page(verdict, probability, line):
    text = summary(engine_result(verdict=verdict, probability=probability).to_dict())

    assert line in text.splitlines()


def test_tracks_are_tracks_not_faces():
    text = summary(engine_result().to_dict())

    assert "  track 0: FAKE          91% fake  frames 0–19" in text and "track 1:" in text
    assert "face 0" not in text


def test_nothing_scored_says_why_and_no_probability():
    result = replace(engine_result(verdict="INCONCLUSIVE"), fake_probability=None, tracks=[],
                     reasons=[Reason("no_faces", "no face was found in any of the 20 analysed frames")])

    text = summary(result.to_dict())

    assert "Fake probability" not in text and "confidence" not in text
    assert "Why the result is inconclusive: [no_faces] no face was found" in text
