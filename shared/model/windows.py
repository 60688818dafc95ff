"""Windows over one track's analysed frames.

A window is `length` consecutive analysed frames of one track; windows start every `stride` frames.
Only the last `length` frames of a track are kept, so memory does not grow with the video.
A track shorter than one window is scored as one window of all its frames; when the last regular
window stops short of the track's end, one more window is aligned to the end so every frame is covered.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Window:
    track_id: int
    frame_indices: list[int]
    times_s: list[float]
    features: torch.Tensor  # (T, D)
    key_crop: np.ndarray | None  # the middle frame's face crop (uint8 RGB), for thumbnails and heatmaps

    @property
    def start_frame(self) -> int:
        return self.frame_indices[0]

    @property
    def end_frame(self) -> int:
        return self.frame_indices[-1]


class TrackWindower:
    """Feeds one track's frames in order; returns a `Window` whenever one is complete."""

    def __init__(self, *, track_id: int, length: int, stride: int) -> None:
        if length < 1 or stride < 1:
            raise ValueError("window length and stride must be positive")
        self.track_id = track_id
        self.length = length
        self.stride = stride
        self.count = 0
        self.first_frame: int | None = None
        self.last_frame: int | None = None
        self._emitted_at: int | None = None
        self._items: deque[tuple[int, float, torch.Tensor, np.ndarray | None]] = deque(maxlen=length)

    def push(self, *, frame_index: int, time_s: float, feature: torch.Tensor, crop: np.ndarray | None) -> Window | None:
        self._items.append((frame_index, time_s, feature, crop))
        self.count += 1
        if self.first_frame is None:
            self.first_frame = frame_index
        self.last_frame = frame_index
        if self.count >= self.length and (self.count - self.length) % self.stride == 0:
            return self._emit()
        return None

    def finish(self) -> Window | None:
        """The closing window: the whole track if it never filled one, or one aligned to its end."""
        if self.count == 0 or self._emitted_at == self.count:
            return None
        return self._emit()

    @property
    def windows_emitted(self) -> bool:
        return self._emitted_at is not None

    def _emit(self) -> Window:
        self._emitted_at = self.count
        items = list(self._items)
        middle = items[len(items) // 2][3]
        return Window(
            track_id=self.track_id,
            frame_indices=[item[0] for item in items],
            times_s=[item[1] for item in items],
            features=torch.stack([item[2] for item in items]),
            key_crop=middle,
        )
