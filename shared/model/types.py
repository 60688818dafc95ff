"""Small value types passed between the engine's stages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reason:
    """Why a result is INCONCLUSIVE, or a warning about how it was obtained."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Detection:
    """One face in one frame. `box` is (x1, y1, x2, y2) in the frame's pixel coordinates."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None


@dataclass
class FrameBatch:
    """Consecutive decoded frames. `frames` is (N, H, W, 3) uint8 **RGB**, already rotated upright.

    `indices` are source-video frame indices (decode order, 0-based); `times_s` presentation times
    in seconds from the stream's start, taken from the stream's timestamps (correct for VFR).
    """

    indices: np.ndarray
    times_s: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])
