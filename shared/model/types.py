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
    """Consecutive decoded frames, uint8 **RGB**, already rotated upright: `frames` is one (N, H, W, 3)
    array, or a tuple of N (H, W, 3) arrays where the converter wrote each picture (the engine's
    reader: `VideoReader(stacked=False)`), or an (N, 3, H, W) tensor where the frames were decoded
    on a device. `stacked_frames` gives any of them as one array or tensor.

    `indices` are source-video frame indices (decode order, 0-based); `times_s` presentation times
    in seconds from the stream's start, taken from the stream's timestamps (correct for VFR).
    """

    indices: np.ndarray
    times_s: np.ndarray
    frames: np.ndarray | tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def stacked_frames(frames, positions: list[int] | None = None):
    """A batch's `frames` (any form FrameBatch allows, or a device batch's tensor) at `positions`
    (all: None) as one (M, H, W, 3) array, or as an (M, 3, H, W) tensor where they were decoded."""
    if isinstance(frames, tuple):
        return np.stack(frames if positions is None else [frames[i] for i in positions])
    return frames if positions is None else frames[positions]


def frame_size(frames) -> tuple[int, int]:
    """(height, width) of a batch's `frames`, in any form FrameBatch allows or a device tensor."""
    if isinstance(frames, tuple):
        return tuple(frames[0].shape[:2])
    if isinstance(frames, np.ndarray):
        return tuple(frames.shape[1:3])
    return tuple(frames.shape[2:4])  # (N, 3, H, W) on a device


@dataclass(frozen=True)
class WindowScore:
    """The FAKE probability of one window of `sequence_length` analysed frames of one track.

    Frame indices are source-video indices, `end_frame` inclusive.
    """

    track_id: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    fake_probability: float

    def to_dict(self) -> dict:
        return {
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "fake_probability": self.fake_probability,
        }


@dataclass(frozen=True)
class Progress:
    """Reported by the pipeline after each batch: frames decoded so far, the estimated total,
    and the windows scored since the previous report (so a job can show a partial timeline)."""

    frames_done: int
    frames_total: int
    windows: tuple[WindowScore, ...] = ()
