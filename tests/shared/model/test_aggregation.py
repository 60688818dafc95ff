import pytest

from shared.model.aggregation import (FAKE, INCONCLUSIVE, REAL, aggregate_probabilities, combine_tracks,
                                      verdict_for)


@pytest.mark.parametrize("method, expected", [
    ("mean", 0.45), ("median", 0.4), ("max", 0.9), ("top_quartile", 0.9),
])
def test_aggregations(method, expected):
    assert aggregate_probabilities([0.1, 0.4, 0.4, 0.9], method=method) == pytest.approx(expected)


def test_top_quartile_averages_the_highest_quarter():
    values = [0.0] * 6 + [0.8, 1.0]
    assert aggregate_probabilities(values, method="top_quartile") == pytest.approx(0.9)


def test_empty_and_unknown_aggregations_are_errors():
    with pytest.raises(ValueError):
        aggregate_probabilities([], method="mean")
    with pytest.raises(ValueError):
        aggregate_probabilities([0.2], method="mode")


@pytest.mark.parametrize("p, expected", [(0.9, FAKE), (0.56, FAKE), (0.52, INCONCLUSIVE), (0.47, INCONCLUSIVE),
                                         (0.44, REAL), (0.0, REAL)])
def test_verdict_band_around_threshold(p, expected):
    assert verdict_for(p, threshold=0.5, band=0.05) == expected


def test_one_fake_face_makes_the_video_fake():
    verdict = combine_tracks([0.1, 0.95], threshold=0.5, band=0.05)
    assert verdict.verdict == FAKE and verdict.fake_probability == pytest.approx(0.95)


def test_all_real_faces_make_the_video_real():
    assert combine_tracks([0.1, 0.2], threshold=0.5, band=0.05).verdict == REAL


def test_a_borderline_face_without_fake_ones_is_inconclusive():
    assert combine_tracks([0.1, 0.5], threshold=0.5, band=0.05).verdict == INCONCLUSIVE


def test_no_tracks_is_inconclusive_without_a_probability():
    verdict = combine_tracks([], threshold=0.5, band=0.05)
    assert verdict.verdict == INCONCLUSIVE and verdict.fake_probability is None
