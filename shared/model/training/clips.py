"""Face-only clips on disk: MJPG in AVI (intra-only, so any window decodes cheaply), as the
seed's training data was. Written to a temporary name and renamed, so a clip that exists is whole.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from shared.model.training.errors import ManifestError

CLIP_SUFFIX = ".avi"


class ClipWriter:
    """Streams RGB uint8 frames (H, W, 3) into `path`; `commit()` renames the finished file into
    place, `discard()` removes it. Nothing exists at `path` until `commit()`."""

    def __init__(self, path: Path, *, size: int, fps: float) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.stem}.partial{CLIP_SUFFIX}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        self._writer = cv2.VideoWriter(str(self.partial), fourcc, float(fps), (size, size))
        if not self._writer.isOpened():
            raise OSError(f"cannot write clip {self.partial}")
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        self._writer.write(np.ascontiguousarray(frame_rgb[:, :, ::-1]))
        self.frames += 1

    def commit(self) -> Path:
        self._writer.release()
        os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        self._writer.release()
        self.partial.unlink(missing_ok=True)


def write_clip(path: Path, frames_rgb: np.ndarray, *, fps: float = 30.0) -> Path:
    """Write a whole clip (T, S, S, 3) RGB uint8 atomically."""
    writer = ClipWriter(path, size=int(frames_rgb.shape[1]), fps=fps)
    try:
        for frame in frames_rgb:
            writer.write(frame)
    except BaseException:
        writer.discard()
        raise
    return writer.commit()


def read_clip(path: Path, *, start: int = 0, count: int | None = None) -> np.ndarray:
    """Decode frames [start, start+count) of a clip as RGB uint8 (T, H, W, 3); fewer if it ends."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ManifestError(f"cannot open clip {path}")
    frames = []
    try:
        index = 0
        while count is None or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start:
                frames.append(frame[:, :, ::-1])
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ManifestError(f"no frames in clip {path} from frame {start}")
    return np.stack(frames)
