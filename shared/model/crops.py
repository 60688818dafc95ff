"""Square face crops resized to the classifier's input size.

Resizing uses PIL's bilinear filter, which antialiases when shrinking: exactly what the seed's
torchvision `Resize((112, 112))` did to its PIL images. Crops stay RGB uint8; channel order for the
network is the embedder's business.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image


def square_box(box: np.ndarray, *, margin: float, frame_w: int, frame_h: int) -> np.ndarray:
    """An integer (x1, y1, x2, y2) square (x2, y2 exclusive) around the centre of `box`.

    Side = max(w, h) × (1 + margin), at least 1 px. At a border the square is shifted back inside
    the frame, keeping its size; a side larger than the frame's shorter side is capped to it, so
    the result is always a square fully inside the frame.

    With margin 0 a square face box (the seed's face_recognition boxes were square) is cropped
    tightly, as the seed's training data was; non-square boxes are squared rather than stretched.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64)[:4])
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    side = int(min(max(round(side), 1), frame_w, frame_h))
    left = int(round((x1 + x2) / 2.0 - side / 2.0))
    top = int(round((y1 + y2) / 2.0 - side / 2.0))
    left = min(max(left, 0), frame_w - side)
    top = min(max(top, 0), frame_h - side)
    return np.array([left, top, left + side, top + side], dtype=np.int64)


def resize_rgb(image: np.ndarray, *, size: int) -> np.ndarray:
    """(H, W, 3) uint8 → (size, size, 3) uint8 with PIL bilinear (antialiased) resampling."""
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR)
    return np.asarray(resized)


def crop_faces(frame: np.ndarray, boxes: Sequence[np.ndarray], *, size: int, margin: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame and M boxes → (M, size, size, 3) uint8 RGB square crops."""
    h, w = frame.shape[:2]
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        left, top, right, bottom = square_box(box, margin=margin, frame_w=w, frame_h=h)
        out[i] = resize_rgb(frame[top:bottom, left:right], size=size)
    return out


def whole_frames(frames: np.ndarray, *, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames → (N, size, size, 3): detector `none`, the whole frame resized
    (not squared first, as the seed resized its face-only clips' frames)."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_rgb(frame, size=size)
    return out
