"""The offline fallback detector: OpenCV's frontal-face Haar cascade (ships with opencv 4.x).

It misses profile and small faces and has no calibrated score, so it is used only when no RetinaFace
weights are installed (and every result says so) or when asked for by name.
"""
from __future__ import annotations

import numpy as np

from shared.errors import EngineError
from shared.model.tracking import iou_matrix
from shared.model.types import Detection

CASCADE_FILE = "haarcascade_frontalface_default.xml"
NEAR_GROWTH = 0.5  # detect_near searches each tracked box grown by this fraction of its side, each side
NEAR_SIZE_RANGE = 1.5  # ... for faces up to this factor smaller or larger than the box
# Contrast is equalised per tile (CLAHE), not over the whole frame: with cv2.equalizeHist the flat
# background and the rest of the picture set the mapping for the face too. On encoded clips of the
# test photos (320×240 to 1280×720, 120 frames each) the cascade found every face in 1166 of 1440
# frames that way (6 of 120 for Grace Hopper alone at 853×481); with CLAHE in all 1440, with 11
# spurious boxes; with no equalisation also in all 1440, but with 300 spurious boxes.
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)


class FaceDetectorUnavailableError(EngineError):
    """The installed OpenCV has no Haar cascades (OpenCV 5 dropped them) and no RetinaFace weights exist."""

    code = "face_detector_unavailable"


class HaarFaceDetector:
    """Frontal faces on a downscaled, locally contrast-equalised grey frame; boxes in the input frame's pixels.

    The defaults were tuned on the bundled photos, alone and side by side at 640×360, with no hit on
    face-free images, and checked on encoded clips from 320×240 to 1280×720. Haar returns no
    probability; `score` is the fraction of the cascade's overlapping hits that support the box,
    capped at 1 (at least `min_neighbors` hits by construction).
    """

    name = "opencv-haar"

    def __init__(
        self,
        *,
        max_side: int = 640,
        min_neighbors: int = 4,
        min_face_fraction: float = 0.08,
        scale_factor: float = 1.1,
    ) -> None:
        import cv2

        self._cv2 = cv2
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise FaceDetectorUnavailableError(
                f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them): install "
                "opencv-python-headless 4.x, or run `deepfake weights fetch` to use RetinaFace"
            )
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE_FILE)
        if self._cascade.empty():
            raise FaceDetectorUnavailableError(f"OpenCV {cv2.__version__} could not load {CASCADE_FILE}")
        self.max_side = max_side
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction
        self.scale_factor = scale_factor

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Faces per frame; `frames` is (N, H, W, 3) uint8 RGB."""
        return [self._detect_one(frame) for frame in np.asarray(frames)]

    def detect_near(self, frame: np.ndarray, boxes: list[np.ndarray]) -> list[Detection]:
        """Faces in one (H, W, 3) RGB frame, searched only around `boxes` (faces tracked before).

        Each box's neighbourhood (the box grown by `NEAR_GROWTH` of its side on every side) is
        searched at the full-frame scale, for faces between 1/`NEAR_SIZE_RANGE` and `NEAR_SIZE_RANGE`
        times the box's size: a fraction of a full search's cost. Faces elsewhere are not found, so
        the caller still runs `detect` on whole frames regularly.
        """
        height, width = frame.shape[:2]
        scale = self._scale(height, width)
        floor = self._min_side(height, width, scale)
        found: list[Detection] = []
        for box in boxes:
            x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float32).reshape(4))
            side = max(x2 - x1, y2 - y1, 1.0)
            grow = NEAR_GROWTH * side
            left, top = max(0, int(x1 - grow)), max(0, int(y1 - grow))
            right, bottom = min(width, int(np.ceil(x2 + grow))), min(height, int(np.ceil(y2 + grow)))
            if right - left < 2 or bottom - top < 2:
                continue
            smallest = max(floor, int(side * scale / NEAR_SIZE_RANGE))
            largest = max(smallest + 1, int(np.ceil(side * scale * NEAR_SIZE_RANGE)))
            found += self._search(frame[top:bottom, left:right], scale=scale, min_side=smallest,
                                  max_side=largest, offset=(left, top), frame_size=(height, width))
        return _unique(found)

    def _scale(self, height: int, width: int) -> float:
        return min(1.0, self.max_side / max(height, width))

    def _min_side(self, height: int, width: int, scale: float) -> int:
        """The smallest face searched for, in detection pixels (a fraction of the scaled frame)."""
        return max(12, int(min(round(height * scale), round(width * scale)) * self.min_face_fraction))

    def _detect_one(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = self._scale(height, width)
        found = self._search(frame, scale=scale, min_side=self._min_side(height, width, scale), max_side=None,
                             offset=(0, 0), frame_size=(height, width))
        found.sort(key=lambda d: -d.score)
        return found

    def _search(self, region: np.ndarray, *, scale: float, min_side: int, max_side: int | None,
                offset: tuple[int, int], frame_size: tuple[int, int]) -> list[Detection]:
        """Run the cascade on `region` (a part of the frame at `offset`) scaled by `scale`."""
        cv2 = self._cv2
        height, width = region.shape[:2]
        grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        if min(grey.shape) < min_side:
            return []
        # a CLAHE object keeps working buffers, so each search makes its own (microseconds)
        grey = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES).apply(grey)
        limits = {} if max_side is None else {"maxSize": (max_side, max_side)}
        rects, hits = self._cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_side, min_side),
            **limits,
        )
        out = []
        frame_height, frame_width = frame_size
        for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(hits).reshape(-1)):
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / scale
            box += np.array([offset[0], offset[1], offset[0], offset[1]], dtype=np.float32)
            box[[0, 2]] = box[[0, 2]].clip(0, frame_width)
            box[[1, 3]] = box[[1, 3]].clip(0, frame_height)
            out.append(Detection(box=box, score=min(1.0, float(n) / (4 * self.min_neighbors))))
        return out


def _unique(detections: list[Detection], *, iou: float = 0.5) -> list[Detection]:
    """Best-scoring first, dropping any that overlaps a kept one (neighbourhoods of close faces overlap)."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if not kept or iou_matrix(detection.box, np.stack([k.box for k in kept])).max() < iou:
            kept.append(detection)
    return kept
