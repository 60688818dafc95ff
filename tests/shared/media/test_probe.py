"""shared.media's probe: container, codec, size, rotation, frame count and duration without decoding the file."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shared.media import probe_video
from tests.media import animated_frames, write_video

FPS = 10.0


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = animated_frames(photos=("astronaut", "grace_hopper"), width=320, height=240, count=20)
    return write_video(tmp_path_factory.mktemp("probe") / "clip.mp4", source, fps=FPS)


def test_probe_reads_the_index_of_an_mp4(clip: Path) -> None:
    info = probe_video(clip)
    assert (info.container, info.codec, info.width, info.height, info.rotation) == ("mp4", "h264", 320, 240, 0)
    assert (info.frames, info.frames_exact) == (20, True)
    assert info.fps == pytest.approx(FPS)
    assert info.duration_s == pytest.approx(2.0, abs=0.01)
    assert info.has_audio is False and info.path == clip


def test_probe_estimates_the_count_without_an_index(tmp_path: Path, clip: Path) -> None:
    mkv = tmp_path / "clip.mkv"
    _ffmpeg("-i", str(clip), "-c", "copy", str(mkv))
    info = probe_video(mkv)
    assert (info.container, info.frames, info.frames_exact) == ("matroska", 20, False)
    assert info.duration_s == pytest.approx(2.0, abs=0.01)


def test_video_info_to_dict_is_json_ready(clip: Path) -> None:
    data = json.loads(json.dumps(probe_video(clip).to_dict()))
    assert data["path"] == str(clip) and data["frames"] == 20 and data["frames_exact"] is True
    assert set(data) == {"path", "container", "codec", "width", "height", "rotation", "fps", "frames",
                         "frames_exact", "duration_s", "has_audio"}
