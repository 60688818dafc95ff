"""Where `dataset prepare` writes (OUT_DIR/clips, OUT_DIR/records, manifest.csv, skipped.csv) and
the options it cuts faces with; shared by the coordinating process and its workers."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InvalidOptionsError

MANIFEST_FILE = "manifest.csv"
SKIPPED_FILE = "skipped.csv"
RECORDS_DIR = "records"
CLIPS_DIR = "clips"


@dataclass(frozen=True)
class PrepareOptions:
    """How faces are found and cut (the engine's analysis defaults unless said otherwise)."""

    size: int = 112
    margin: float = 0.0
    face_detector: str = "auto"
    detect_every: int = 5
    detect_max_side: int = 640
    max_frames: int | None = None
    min_track_frames: int = 8
    device: str = "cpu"
    weights_dir: str = "weights"

    def __post_init__(self) -> None:
        for name in ("size", "detect_every", "min_track_frames", "detect_max_side"):
            if getattr(self, name) < 1:
                raise InvalidOptionsError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InvalidOptionsError(f"max frames must be at least 1, got {self.max_frames}")


def video_key(file: str) -> str:
    """A flat, unique name for a video's records and clip folder (`a/b.mp4` → `a__b.mp4`)."""
    return file.replace("/", "__")


def write_record(path: Path, record: dict) -> None:
    """Write a video's record atomically: its presence means the video is finished."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)

