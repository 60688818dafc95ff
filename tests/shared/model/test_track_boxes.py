"""BoxSampler: evenly spaced boxes over a whole track, bounded whatever the track's length."""
from __future__ import annotations

import numpy as np
import pytest

from shared.model.result import TrackResult
from shared.model.track_boxes import BoxSample, BoxSampler


def _sample(frame: int) -> BoxSample:
    return BoxSample.of(frame=frame, t=frame / 30, box=np.array([frame, 1, frame + 10, 11], dtype=np.float32))


def test_a_short_track_keeps_every_box():
    sampler = BoxSampler(capacity=8)
    for frame in range(0, 30, 5):
        sampler.offer(_sample(frame))
    assert [s.frame for s in sampler.samples()] == [0, 5, 10, 15, 20, 25]


@pytest.mark.parametrize("count", [9, 100, 1001, 5000])
def test_a_long_track_keeps_a_bounded_evenly_spaced_subset_ending_with_its_last_box(count):
    sampler = BoxSampler(capacity=8)
    for frame in range(count):
        sampler.offer(_sample(frame))
    frames = [s.frame for s in sampler.samples()]
    assert 4 <= len(frames) <= 9
    assert frames[0] == 0 and frames[-1] == count - 1
    gaps = np.diff(frames).tolist()
    assert len(set(gaps[:-1])) == 1  # evenly spaced, over the whole track ...
    assert 0 < gaps[-1] <= gaps[0]  # ... up to the last box, kept as it is


def test_capacity_must_be_even():
    with pytest.raises(ValueError):
        BoxSampler(capacity=7)


def test_boxes_are_part_of_the_track_json():
    track = TrackResult(id=3, fake_probability=0.2, verdict="REAL", first_frame=0, last_frame=4, frames=5,
                        windows=[], boxes=[BoxSample.of(frame=4, t=0.13333, box=np.array([1.26, 2, 3, 4.04]))])
    assert track.to_dict()["boxes"] == [{"frame": 4, "t": 0.1333, "box": [1.3, 2.0, 3.0, 4.0]}]
