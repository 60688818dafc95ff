import numpy as np
import pytest
import torch

from shared.model.windows import TrackWindower


def _feed(windower, count, start=0):
    windows = []
    for i in range(start, start + count):
        window = windower.push(frame_index=i, time_s=i / 10, feature=torch.full((4,), float(i)), crop=None)
        if window is not None:
            windows.append(window)
    return windows


def test_windows_start_every_stride_and_cover_consecutive_frames():
    windower = TrackWindower(track_id=3, length=4, stride=2)
    windows = _feed(windower, 10)
    assert [(w.start_frame, w.end_frame) for w in windows] == [(0, 3), (2, 5), (4, 7), (6, 9)]
    assert windows[1].frame_indices == [2, 3, 4, 5]
    assert torch.equal(windows[1].features[:, 0], torch.tensor([2.0, 3.0, 4.0, 5.0]))
    assert windower.finish() is None  # the last window already ends at the last frame


def test_a_tail_window_is_aligned_to_the_end():
    windower = TrackWindower(track_id=0, length=4, stride=4)
    windows = _feed(windower, 10)
    assert [(w.start_frame, w.end_frame) for w in windows] == [(0, 3), (4, 7)]
    tail = windower.finish()
    assert (tail.start_frame, tail.end_frame) == (6, 9)


def test_a_track_shorter_than_one_window_is_one_window():
    windower = TrackWindower(track_id=0, length=20, stride=10)
    assert _feed(windower, 7) == []
    window = windower.finish()
    assert window.frame_indices == list(range(7))
    assert torch.equal(window.features[:, 0], torch.arange(7, dtype=torch.float32))
    assert windower.windows_emitted and windower.count == 7
    assert windower.finish() is None  # scored once, not again on a second finish


def test_only_one_window_of_frames_is_kept():
    windower = TrackWindower(track_id=0, length=5, stride=1)
    _feed(windower, 1000)
    assert len(windower._items) == 5


def test_key_crop_is_the_middle_frame():
    windower = TrackWindower(track_id=0, length=3, stride=3)
    crops = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(3)]
    window = None
    for i, crop in enumerate(crops):
        window = windower.push(frame_index=i, time_s=0.0, feature=torch.zeros(1), crop=crop)
    assert int(window.key_crop[0, 0, 0]) == 1


def test_rejects_nonpositive_sizes():
    with pytest.raises(ValueError):
        TrackWindower(track_id=0, length=0, stride=1)
