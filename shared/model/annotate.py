"""The job page's overlay burnt into a copy of the video: each track's box, "track N" and its percentage.

Frames stream decode → draw → encode (a few frames in memory, whatever the video's length). Boxes
are the result's sampled boxes (`TrackResult.boxes`), linearly interpolated in time between
samples, as the page does; colours follow the page's probability scale (web/static/job.js
`PROBABILITY_STOPS`), green for real through yellow to red for fake.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shared.model.preview import EncodedVideo, H264Writer
from shared.model.report import percent, track_name

# 720p: the longest side of a landscape 720p frame; larger videos are scaled down to it.
ANNOTATE_MAX_SIDE = 1280
# Fake probability → RGB, linear between stops; the same stops as the job page's.
PROBABILITY_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (22, 163, 74)), (0.5, (234, 179, 8)), (1.0, (220, 38, 38)))
UNSCORED_COLOUR = (148, 163, 184)  # a track with no probability (never scored)
_DECODE_BATCH = 4
ProgressCallback = Callable[[int, int], None]


def probability_colour(probability: float | None) -> tuple[int, int, int]:
    """The RGB colour of a fake probability on the page's scale."""
    if probability is None:
        return UNSCORED_COLOUR
    p = min(max(float(probability), 0.0), 1.0)
    for (p0, c0), (p1, c1) in zip(PROBABILITY_STOPS, PROBABILITY_STOPS[1:]):
        if p <= p1:
            f = (p - p0) / (p1 - p0)
            return tuple(int(round(a + (b - a) * f)) for a, b in zip(c0, c1))
    return PROBABILITY_STOPS[-1][1]


@dataclass(frozen=True)
class TrackPath:
    """One track's sampled boxes in time order; `box_at(t)` interpolates between them."""

    track_id: int
    probability: float | None
    times: tuple[float, ...]
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2 in the result's frame pixels

    @classmethod
    def of(cls, track: dict[str, Any]) -> TrackPath | None:
        samples = sorted(track.get("boxes") or [], key=lambda b: b["t"])
        if not samples:
            return None
        return cls(track_id=int(track["id"]), probability=track.get("fake_probability"),
                   times=tuple(float(b["t"]) for b in samples),
                   boxes=np.array([b["box"] for b in samples], dtype=np.float64))

    def box_at(self, t: float, *, tolerance: float) -> np.ndarray | None:
        """The box at `t` seconds, or None outside the track's span (± tolerance)."""
        times = self.times
        if t < times[0] - tolerance or t > times[-1] + tolerance:
            return None
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.boxes[0]
        if i == len(times):
            return self.boxes[-1]
        t0, t1 = times[i - 1], times[i]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return self.boxes[i - 1] + (self.boxes[i] - self.boxes[i - 1]) * f

    def label(self) -> str:
        name = track_name(self.track_id)
        return name if self.probability is None else f"{name} {percent(self.probability)}"


def track_paths(result: dict[str, Any]) -> list[TrackPath]:
    """The drawable tracks of a result JSON (`AnalysisResult.to_dict()`)."""
    return [path for path in (TrackPath.of(t) for t in result.get("tracks", [])) if path is not None]


def draw_tracks(frame: np.ndarray, paths: Sequence[TrackPath], *, t: float, scale: float, tolerance: float) -> None:
    """Draw every track present at `t` onto the RGB frame, in place (boxes scaled by `scale`)."""
    import cv2

    height = frame.shape[0]
    thickness = max(2, round(height / 240))
    font_scale = max(0.4, height / 900)
    for path in paths:
        box = path.box_at(t, tolerance=tolerance)
        if box is None:
            continue
        colour = probability_colour(path.probability)
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thickness)
        text = path.label()
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - h - base - 4 if y1 - h - base - 4 >= 0 else y2  # above the box, or below it at the top edge
        cv2.rectangle(frame, (x1, top), (x1 + w + 6, top + h + base + 4), colour, cv2.FILLED)
        cv2.putText(frame, text, (x1 + 3, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                    cv2.LINE_AA)


def annotate_video(source: Path, target: Path, *, result: dict[str, Any], threads: int = 0,
                   max_side: int = ANNOTATE_MAX_SIDE, on_progress: ProgressCallback | None = None) -> EncodedVideo:
    """Write `source` with the result's tracks drawn on to `target` (H.264 MP4, no audio, at most `max_side`).

    `on_progress(frames_done, frames_total)` is called after each few frames.
    """
    from shared.media import probe_video
    from shared.model.video import VideoReader

    info = probe_video(source)
    reader = VideoReader(source, batch_size=_DECODE_BATCH, info=info, threads=threads,
                         max_side=max_side if max(info.width, info.height) > max_side else None)
    width, height = reader.output_size()
    scale = width / max(1, result.get("video", {}).get("width") or info.width)
    paths = track_paths(result)
    # One frame either side of a track's first and last sampled boxes, so rounding never hides them.
    tolerance = 1.0 / info.fps if info.fps else 0.05
    done = 0
    with reader, H264Writer(Path(target), width=width, height=height, fps=info.fps, crf=20,
                            threads=threads) as writer:
        for batch in reader:
            for frame, t in zip(batch.frames, batch.times_s):
                draw_tracks(frame, paths, t=float(t), scale=scale, tolerance=tolerance)
                writer.write(frame, t=float(t))
            done += len(batch.frames)
            if on_progress is not None:
                on_progress(done, max(done, info.frames))
    return EncodedVideo(writer.path, writer.width, writer.height, writer.frames, writer.fps)
