"""CropProducer: crops with their owners, and each track's end announced once with its boxes."""
from __future__ import annotations

import numpy as np

from shared.model.stages.producer import CropProducer, PreparedBatch
from shared.model.types import Detection, FrameBatch

FACE = np.array([20, 10, 60, 50], dtype=np.float32)


class _FaceInFramesMarked:
    """Finds one face in frames whose first pixel is bright (the test paints the marker)."""

    name = "scripted"

    def detect(self, frames):
        return [[Detection(box=FACE.copy(), score=0.9)] if frame[0, 0, 0] > 127 else [] for frame in frames]


def _batches(present: list[bool], *, size: int = 4) -> list[FrameBatch]:
    frames = np.zeros((len(present), 64, 80, 3), dtype=np.uint8)
    frames[np.array(present), 0, 0, 0] = 255
    indices = np.arange(len(present))
    return [FrameBatch(indices=indices[i : i + size], times_s=indices[i : i + size] / 10.0,
                       frames=frames[i : i + size]) for i in range(0, len(present), size)]


def _run(producer: CropProducer, batches: list[FrameBatch]) -> list[PreparedBatch]:
    try:
        return list(producer.batches(batches))
    finally:
        producer.close()


def test_a_track_that_ends_is_announced_once_after_its_last_crops():
    present = [True] * 10 + [False] * 40
    producer = CropProducer(detector=_FaceInFramesMarked(), detect_every=1, full_detect_every=1, input_size=16,
                            crop_margin=0.0, frame_s=0.1)
    prepared = _run(producer, _batches(present))
    owners = [o for p in prepared for o in p.owners]
    assert [o.frame_index for o in owners] == list(range(10))
    assert {o.track_id for o in owners} == {0}
    ended = [(i, e) for i, p in enumerate(prepared) for e in p.ended]
    assert len(ended) == 1
    at, track = ended[0]
    assert not prepared[at].end_of_video  # ended by the tracker mid-video, not at the close
    assert track.track_id == 0 and track.best_score == 0.9
    assert [b.frame for b in track.boxes] == list(range(10))
    assert track.boxes[0].box == tuple(float(v) for v in FACE)
    assert prepared[-1].end_of_video and prepared[-1].ended == () and prepared[-1].count == 0
    assert sum(p.count for p in prepared) == 50
    assert all(p.crops is None or p.crops.shape == (len(p.owners), 16, 16, 3) for p in prepared)


def test_a_face_missing_for_less_than_the_patience_keeps_its_track():
    # 10 fps and detection every frame: the tracker waits TRACK_PATIENCE_S (10 frames) for a face
    present = [True] * 10 + [False] * 8 + [True] * 10 + [False] * 12 + [True] * 5
    producer = CropProducer(detector=_FaceInFramesMarked(), detect_every=1, full_detect_every=1, input_size=16,
                            crop_margin=0.0, frame_s=0.1)
    prepared = _run(producer, _batches(present))
    owners = [o for p in prepared for o in p.owners]
    assert [o.track_id for o in owners] == [0] * 20 + [1] * 5
    assert [[e.track_id for e in p.ended] for p in prepared if p.ended] == [[0], [1]]


def test_tracks_open_at_the_end_are_closed_by_the_closing_batch():
    producer = CropProducer(detector=_FaceInFramesMarked(), detect_every=5, full_detect_every=1, input_size=16,
                            crop_margin=0.0, frame_s=0.1)
    prepared = _run(producer, _batches([True] * 12))
    assert [e.track_id for p in prepared[:-1] for e in p.ended] == []
    [track] = prepared[-1].ended
    assert [b.frame for b in track.boxes] == [0, 5, 10]  # detected boxes only, not the carried ones
    assert len([o for p in prepared for o in p.owners]) == 12


def test_without_a_detector_the_whole_frame_is_one_track():
    producer = CropProducer(detector=None, detect_every=5, full_detect_every=1, input_size=16, crop_margin=0.0,
                            frame_s=0.1)
    prepared = _run(producer, _batches([False] * 6))
    assert [o.track_id for p in prepared for o in p.owners] == [0] * 6
    [track] = prepared[-1].ended
    assert track.boxes[0].box == (0.0, 0.0, 80.0, 64.0)
