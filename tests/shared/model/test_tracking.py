"""FaceTracker: one stable track per person, new ids for new people, carried boxes, crossing paths."""
from __future__ import annotations

import numpy as np

from shared.model.tracking import MIN_PATIENCE_ROUNDS, TRACK_PATIENCE_S, FaceTracker, iou_matrix, patience_rounds
from shared.model.types import Detection


def _det(x: float, y: float, size: float = 60, score: float = 0.9) -> Detection:
    return Detection(box=np.array([x, y, x + size, y + size], dtype=np.float32), score=score)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_two_people_keep_two_stable_tracks():
    tracker = FaceTracker()
    ids_per_frame = []
    for frame in range(0, 50, 5):
        # Detector order flips every frame: ids must follow the people, not the list order.
        dets = [_det(100 + frame, 100), _det(400 - frame, 120)]
        tracked = tracker.update(frame, dets[::-1] if frame % 10 else dets)
        ids_per_frame.append({t.track_id: round(float(t.box[0])) for t in tracked})
    assert all(set(ids) == {0, 1} for ids in ids_per_frame)
    assert all(ids[0] < ids[1] for ids in ids_per_frame)  # id 0 is the left person throughout


def test_person_leaving_and_new_one_appearing_gets_a_new_id():
    tracker = FaceTracker(max_missed=2)
    for frame in range(0, 20, 5):
        assert [t.track_id for t in tracker.update(frame, [_det(100, 100)])] == [0]
    for frame in range(20, 35, 5):  # gone for three detection rounds: the track ends
        assert tracker.update(frame, []) == []
    assert tracker.take_ended() == [0]
    tracked = tracker.update(35, [_det(105, 100)])
    assert [t.track_id for t in tracked] == [1]


def test_short_miss_keeps_the_id():
    tracker = FaceTracker(max_missed=2)
    tracker.update(0, [_det(100, 100)])
    assert tracker.update(5, []) == []
    assert [t.track_id for t in tracker.update(10, [_det(104, 100)])] == [0]


def test_boxes_are_carried_between_detection_frames():
    tracker = FaceTracker()
    tracker.update(0, [_det(100, 100), _det(300, 100)])
    carried = tracker.carry(1)
    assert [t.track_id for t in carried] == [0, 1]
    assert not any(t.detected for t in carried)
    np.testing.assert_array_equal(carried[0].box, [100, 100, 160, 160])
    tracker.update(5, [_det(110, 100)])
    assert [t.track_id for t in tracker.carry(6)] == [0]  # the unseen person is not carried


def test_crossing_paths_keep_identities():
    tracker = FaceTracker()
    left_id = right_id = None
    for step, frame in enumerate(range(0, 100, 5)):
        a = _det(100 + 20 * step, 100)  # moves right
        b = _det(480 - 20 * step, 110)  # moves left; they cross around step 9-10
        dets = [b, a] if step % 2 else [a, b]
        tracked = {round(float(t.box[0])): t.track_id for t in tracker.update(frame, dets)}
        if step == 0:
            left_id, right_id = tracked[100], tracked[480]
        else:
            assert tracked[100 + 20 * step] == left_id
            assert tracked[480 - 20 * step] == right_id


def test_fast_motion_without_overlap_is_matched_by_centre_distance():
    tracker = FaceTracker()
    tracker.update(0, [_det(100, 100)])
    # Moved 45 px (most of a face) between detection frames: IoU is about 0.14, below the threshold.
    assert [t.track_id for t in tracker.update(5, [_det(145, 100)])] == [0]


def test_min_hits_confirms_before_assigning_ids():
    tracker = FaceTracker(min_hits=2)
    assert tracker.update(0, [_det(100, 100)]) == []
    assert [t.track_id for t in tracker.update(5, [_det(102, 100)])] == [0]


def test_the_tracker_reports_each_ended_track_once():
    tracker = FaceTracker(max_missed=1)
    tracker.update(0, [_det(100, 100), _det(300, 100)])
    tracker.update(5, [_det(100, 100)])
    assert tracker.take_ended() == []  # one missed round is within patience
    tracker.update(10, [_det(100, 100)])
    assert tracker.take_ended() == [1]
    assert tracker.take_ended() == []
    assert tracker.finish() == [0]
    assert tracker.finish() == []  # nothing is left alive


def test_unconfirmed_tracks_end_without_an_id():
    tracker = FaceTracker(min_hits=2, max_missed=0)
    tracker.update(0, [_det(100, 100)])
    tracker.update(5, [])
    assert tracker.take_ended() == []


def test_patience_is_a_time_turned_into_detection_rounds():
    assert patience_rounds(round_s=1 / 30) == 30  # detection every frame at 30 fps: 30 rounds
    assert patience_rounds(round_s=5 / 30) == 6
    assert patience_rounds(round_s=2.0) == MIN_PATIENCE_ROUNDS  # one miss never ends a track
    assert patience_rounds(round_s=0.0) == MIN_PATIENCE_ROUNDS  # a stream without a frame rate
    assert TRACK_PATIENCE_S == 1.0


def test_carried_boxes_move_on_with_the_face():
    tracker = FaceTracker()
    tracker.update(0, [_det(100, 100)])
    tracker.update(5, [_det(120, 100)])  # 4 px a frame to the right
    [carried] = tracker.carry(7)
    np.testing.assert_allclose(carried.box, [128, 100, 188, 160])
    assert not carried.detected


def test_a_face_hidden_while_it_moves_is_found_again_where_it_went():
    tracker = FaceTracker(max_missed=30)
    for frame in range(0, 10):
        tracker.update(frame, [_det(100 + 4 * frame, 100)])
    # Half hidden behind something: the box shrinks on its right side, as a detector boxes what it sees.
    for frame in range(10, 14):
        x = 100 + 4 * frame
        tracker.update(frame, [Detection(box=np.array([x, 100, x + 30, 160], dtype=np.float32), score=0.9)])
    for frame in range(14, 40):  # fully hidden for a second (26 frames)
        assert tracker.update(frame, []) == []
    [found] = tracker.update(40, [_det(260, 100)])
    assert found.track_id == 0
    assert tracker.take_ended() == []
