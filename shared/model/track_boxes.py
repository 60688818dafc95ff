"""Where each track's face was: boxes sampled evenly over the track, a bounded number per track.

Results carry them so pages and plots can draw the tracks. A long track keeps no more boxes than
a short one: when the sampler is full it drops every other box and from then on keeps every
second box it is offered (then every fourth, ...), so the samples stay evenly spaced over the
whole track. The track's last box is always kept as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Enough to draw a face's path on a frame or a timeline (one every ~0.8 s of a 10-minute track
# detected every 5th frame at 30 fps) while a track's boxes stay around 15 KB of JSON.
MAX_BOX_SAMPLES = 256


@dataclass(frozen=True)
class BoxSample:
    """A track's detected box in one frame: (x1, y1, x2, y2) in the upright frame's pixels."""

    frame: int
    t: float
    box: tuple[float, float, float, float]

    @classmethod
    def of(cls, *, frame: int, t: float, box: np.ndarray) -> "BoxSample":
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        return cls(frame=int(frame), t=float(t), box=(x1, y1, x2, y2))

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "t": round(self.t, 4), "box": [round(v, 1) for v in self.box]}


class BoxSampler:
    """Keeps an evenly spaced subset of the boxes offered, at most `capacity` (+ the last one)."""

    def __init__(self, capacity: int = MAX_BOX_SAMPLES) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number of at least 2")
        self._capacity = capacity
        self._step = 1
        self._offered = 0
        self._samples: list[BoxSample] = []
        self._last: BoxSample | None = None

    def offer(self, sample: BoxSample) -> None:
        index = self._offered
        self._offered += 1
        self._last = sample
        if index % self._step:
            return
        if len(self._samples) == self._capacity:
            self._samples = self._samples[::2]
            self._step *= 2
            if index % self._step:
                return
        self._samples.append(sample)

    def samples(self) -> tuple[BoxSample, ...]:
        """The kept boxes in frame order, ending with the last box offered."""
        if self._last is None or (self._samples and self._samples[-1] is self._last):
            return tuple(self._samples)
        return (*self._samples, self._last)
