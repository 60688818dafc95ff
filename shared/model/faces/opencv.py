"""The offline fallback detector: OpenCV's frontal-face Haar cascade (ships with opencv 4.x).

It misses profile and small faces and has no calibrated score, so it is used only when no RetinaFace
weights are installed (and every result says so) or when asked for by name.
"""
from __future__ import annotations

import numpy as np

from shared.model.errors import EngineError
from shared.model.types import Detection

CASCADE_FILE = "haarcascade_frontalface_default.xml"


class FaceDetectorUnavailableError(EngineError):
    """The installed OpenCV has no Haar cascades (OpenCV 5 dropped them) and no RetinaFace weights exist."""

    code = "face_detector_unavailable"


class HaarFaceDetector:
    """Frontal faces on a downscaled, histogram-equalised grey frame; boxes in the input frame's pixels.

    The defaults were tuned on the bundled photos, alone and side by side at 640×360, with no hit on
    face-free images. Haar returns no probability; `score` is the fraction of the cascade's overlapping hits that support
    the box, capped at 1 (at least `min_neighbors` hits by construction).
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

    def _detect_one(self, frame: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        side = max(12, int(min(grey.shape) * self.min_face_fraction))
        rects, hits = self._cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        out = []
        for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(hits).reshape(-1)):
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / scale
            box[[0, 2]] = box[[0, 2]].clip(0, width)
            box[[1, 3]] = box[[1, 3]].clip(0, height)
            out.append(Detection(box=box, score=min(1.0, float(n) / (4 * self.min_neighbors))))
        out.sort(key=lambda d: -d.score)
        return out
