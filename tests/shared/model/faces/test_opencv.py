"""The OpenCV Haar fallback finds the real faces in the bundled photos and nothing on plain frames."""
from __future__ import annotations

import numpy as np
import pytest

from shared.model.faces.opencv import HaarFaceDetector
from shared.model.tracking import iou_matrix
from shared.model.video import VideoReader
from tests.media import animated_frames, face_photo, make_face_clip

# Face regions labelled by hand on the photos (x1, y1, x2, y2).
FACES = {"astronaut": (180, 60, 270, 165), "grace_hopper": (160, 130, 365, 340)}


@pytest.fixture(scope="module")
def detector() -> HaarFaceDetector:
    return HaarFaceDetector()


@pytest.mark.parametrize("photo", sorted(FACES))
def test_finds_the_one_real_face_in_each_photo(detector, photo):
    [found] = detector.detect(face_photo(photo)[None])
    assert len(found) == 1
    assert iou_matrix(found[0].box, np.array(FACES[photo]))[0, 0] > 0.5


def test_two_people_side_by_side_give_two_detections(detector):
    frames = animated_frames(photos=("astronaut", "grace_hopper"), width=640, height=360, count=6)
    for faces in detector.detect(frames):
        assert len(faces) == 2
        centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
        assert centres[0] < 320 < centres[1]


def test_boxes_are_in_the_input_frames_coordinates(detector):
    photo = face_photo("grace_hopper")
    large = np.ascontiguousarray(photo.repeat(2, axis=0).repeat(2, axis=1))  # 1200×1024, detected downscaled
    [found] = detector.detect(large[None])
    assert len(found) == 1
    assert iou_matrix(found[0].box, np.array(FACES["grace_hopper"]) * 2)[0, 0] > 0.5


def test_no_detection_on_plain_or_noisy_frames(detector):
    plain = np.full((2, 360, 640, 3), 40, dtype=np.uint8)
    noise = np.random.default_rng(0).integers(0, 255, size=(2, 360, 640, 3), dtype=np.uint8)
    assert detector.detect(plain) == [[], []]
    assert detector.detect(noise) == [[], []]


@pytest.mark.parametrize("photos, width, height", [
    (("grace_hopper",), 640, 360),
    (("grace_hopper",), 853, 481),  # odd sizes, as phones and web exports give
    (("astronaut",), 1280, 720),
    (("astronaut", "grace_hopper"), 1280, 720),
])
def test_finds_each_face_in_nearly_every_frame_of_an_encoded_clip(detector, tmp_path, photos, width, height):
    # Equalising the whole frame's histogram found Grace Hopper in 6 to 18 of these 30 frames.
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=2, fps=15, width=width, height=height, photos=photos,
                          pix_fmt="yuv444p")
    with VideoReader(clip, batch_size=16) as reader:
        frames = np.concatenate([batch.frames for batch in reader])
    tile = width / len(photos)  # animated_frames puts photo k in the k-th vertical strip
    hits = 0
    for faces in detector.detect(frames):
        strips = sorted(int((face.box[0] + face.box[2]) / 2 // tile) for face in faces)
        hits += strips == list(range(len(photos)))
    assert hits >= 0.95 * len(frames), f"every face found in only {hits} of {len(frames)} frames"


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_no_detection_in_natural_photos_without_a_face(detector, name):
    from skimage import data

    image = np.ascontiguousarray(getattr(data, name)()[..., :3])
    assert detector.detect(image[None]) == [[]]


def test_detect_near_finds_a_tracked_face_where_a_full_search_does(detector):
    frames = animated_frames(photos=("astronaut", "grace_hopper"), width=640, height=360, count=6)
    first = detector.detect(frames[:1])[0]
    for frame in frames[1:]:
        full = detector.detect(frame[None])[0]
        near = detector.detect_near(frame, [d.box for d in first])
        assert len(near) == len(full) == 2
        matched = iou_matrix(np.stack([d.box for d in near]), np.stack([d.box for d in full]))
        assert (matched.max(axis=1) > 0.7).all()


def test_detect_near_looks_only_near_the_given_boxes(detector):
    frame = animated_frames(photos=("astronaut", "grace_hopper"), width=640, height=360, count=1)[0]
    left, right = sorted(detector.detect(frame[None])[0], key=lambda d: d.box[0])
    near = detector.detect_near(frame, [left.box])
    assert len(near) == 1 and iou_matrix(near[0].box, left.box)[0, 0] > 0.7
    # an empty patch of the frame, and a box hanging over the frame's edge, find nothing
    assert detector.detect_near(frame, [np.array([0, 300, 40, 340], dtype=np.float32)]) == []
    assert detector.detect_near(frame, [np.array([-80, -80, 2, 2], dtype=np.float32)]) == []
    # two boxes on the same face give it once
    assert len(detector.detect_near(frame, [right.box, right.box + 6])) == 1
