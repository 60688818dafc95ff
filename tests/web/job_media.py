"""A finished job's result with face boxes and a real preview video, for the job page's tests."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from shared.model.preview import as_artifact, write_preview
from shared.model.result import AnalysisResult
from shared.model.track_boxes import BoxSample
from tests.web.conftest import engine_result

# Track 0 from 0.8 s to 1.9 s, moving right; track 1 from 0.8 s on, still. In the clip's 160×120 pixels.
TRACK0_BOXES = ((0.8, (20.0, 10.0, 60.0, 50.0)), (1.9, (42.0, 10.0, 82.0, 50.0)))
TRACK1_BOXES = ((0.8, (100.0, 60.0, 140.0, 100.0)), (1.9, (100.0, 60.0, 140.0, 100.0)))


def result_with_preview(clip: Path, folder: Path) -> AnalysisResult:
    """engine_result() with boxes on both tracks and a preview.mp4 of `clip` (a file in `folder`)."""
    base = engine_result()
    tracks = [replace(track, boxes=[BoxSample.of(frame=round(t * 10), t=t, box=box) for t, box in samples])
              for track, samples in zip(base.tracks, (TRACK0_BOXES, TRACK1_BOXES))]
    folder.mkdir(parents=True, exist_ok=True)
    preview = as_artifact(write_preview(clip, folder / "preview.mp4"))
    return replace(base, tracks=tracks, artifacts=[*base.artifacts, preview])
