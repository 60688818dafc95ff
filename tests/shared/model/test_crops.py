from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.model.crops import crop_faces, square_box, whole_frames


def test_square_box_centred_with_margin() -> None:
    box = square_box(np.array([100, 100, 140, 180]), margin=0.5, frame_w=640, frame_h=480)
    assert box.tolist() == [60, 80, 180, 200]  # side 80 × 1.5 = 120 around centre (120, 140)


def test_square_box_margin_zero_keeps_square_box() -> None:
    assert square_box(np.array([10.0, 20.0, 60.0, 70.0]), margin=0.0, frame_w=100, frame_h=100).tolist() == [10, 20, 60, 70]


@pytest.mark.parametrize("box", [[-30, -20, 40, 50], [600, 430, 660, 490], [0, 0, 640, 480], [5, 200, 1000, 260]])
def test_square_box_stays_inside_and_square(box) -> None:
    x1, y1, x2, y2 = square_box(np.array(box), margin=0.3, frame_w=640, frame_h=480)
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert x2 - x1 == y2 - y1


def test_square_box_at_border_is_shifted_not_shrunk() -> None:
    assert square_box(np.array([0, 0, 40, 40]), margin=0.5, frame_w=640, frame_h=480).tolist() == [0, 0, 60, 60]


def test_crop_faces_matches_pil_bilinear_resize() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    boxes = [np.array([50, 40, 150, 140]), np.array([200, 100, 260, 160])]
    crops = crop_faces(frame, boxes, size=112, margin=0.0)
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frame[40:140, 50:150]).resize((112, 112), Image.BILINEAR))
    np.testing.assert_array_equal(crops[0], expected)
    assert crop_faces(frame, [], size=112, margin=0.2).shape == (0, 112, 112, 3)


def test_whole_frames_resizes_each_frame() -> None:
    frames = np.zeros((3, 90, 160, 3), dtype=np.uint8)
    frames[1] = 255
    out = whole_frames(frames, size=112)
    assert out.shape == (3, 112, 112, 3)
    assert out[0].max() == 0 and out[1].min() == 255
