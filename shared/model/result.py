"""The analysis result and its JSON form (the contract of `deepfake analyze --json` and the API)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.model.track_boxes import BoxSample
from shared.model.types import Reason, WindowScore


@dataclass(frozen=True)
class Artifact:
    """A file produced by the analysis: a picture in memory (heatmap or thumbnail of a suspicious
    window), or a video on disk (the preview), too large to hold in memory.

    Exactly one of `data` and `path` is set. A `path` is a temporary file that whoever stores the
    result moves into place (`shared.db.artifacts.write_artifacts`) or deletes.
    """

    name: str
    media_type: str
    data: bytes | None
    track_id: int | None
    description: str
    path: Path | None = None


@dataclass
class TrackResult:
    """One person's face track: its verdict, span, scored windows and where the face was.

    `boxes` are detected boxes sampled evenly over the track (at most a few hundred, see
    `track_boxes`), in the pixels of the upright frame (`video.width` × `video.height`).
    """

    id: int
    fake_probability: float | None
    verdict: str
    first_frame: int
    last_frame: int
    frames: int
    windows: list[WindowScore]
    boxes: list[BoxSample] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verdict": self.verdict,
            "fake_probability": self.fake_probability,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "windows": [w.to_dict() for w in self.windows],
            "boxes": [b.to_dict() for b in self.boxes],
        }


@dataclass
class AnalysisResult:
    verdict: str
    fake_probability: float | None
    reasons: list[Reason]
    warnings: list[Reason]
    video: dict[str, Any]
    frames_analyzed: int
    model: dict[str, Any]
    params: dict[str, Any]
    tracks: list[TrackResult]
    timings: dict[str, float]
    artifacts: list[Artifact] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "fake_probability": self.fake_probability,
            "reasons": [r.to_dict() for r in self.reasons],
            "warnings": [w.to_dict() for w in self.warnings],
            "video": self.video,
            "frames_analyzed": self.frames_analyzed,
            "model": self.model,
            "params": self.params,
            "tracks": [t.to_dict() for t in self.tracks],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "artifacts": [
                {"name": a.name, "media_type": a.media_type, "track_id": a.track_id, "description": a.description}
                for a in self.artifacts
            ],
        }
