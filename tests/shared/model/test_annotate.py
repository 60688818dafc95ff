"""`--annotate`: the result's boxes burnt into a copy of a real clip, checked in the decoded output."""
from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from shared.model.annotate import PROBABILITY_STOPS, TrackPath, annotate_video, probability_colour
from tests.media import make_face_clip

W, H, FPS = 320, 240, 10.0
RED_TRACK = {"id": 3, "fake_probability": 0.9, "boxes": [
    {"frame": 0, "t": 0.0, "box": [40.0, 40.0, 140.0, 140.0]},
    {"frame": 19, "t": 1.9, "box": [80.0, 40.0, 180.0, 140.0]}]}
# Appears half-way: not drawn before its first box.
GREEN_TRACK = {"id": 7, "fake_probability": 0.1, "boxes": [
    {"frame": 10, "t": 1.0, "box": [200.0, 60.0, 300.0, 200.0]},
    {"frame": 19, "t": 1.9, "box": [200.0, 60.0, 300.0, 200.0]}]}
RESULT = {"video": {"width": W, "height": H}, "tracks": [RED_TRACK, GREEN_TRACK]}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("clips") / "face.mp4", seconds=2.0, fps=FPS, width=W, height=H)


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _distance(pixels: np.ndarray, colour: tuple[int, int, int]) -> float:
    """Mean absolute difference per channel between pixels (N, 3) and a colour."""
    return float(np.abs(pixels.astype(int) - np.array(colour)).mean())


def test_each_tracks_box_is_drawn_in_its_colour_where_the_track_is(clip, tmp_path):
    progress = []
    encoded = annotate_video(clip, tmp_path / "out.mp4", result=RESULT, on_progress=lambda d, t: progress.append(d))

    frames, source = _frames(encoded.path), _frames(clip)
    assert len(frames) == encoded.frames == 20 and frames[0].shape == (H, W, 3)
    assert progress[-1] == 20
    red, green = probability_colour(0.9), probability_colour(0.1)
    # frame 0: the red box's left edge at x=40, between its corners (the label sits above it)
    edge = frames[0][60:130, 40]
    assert _distance(edge, red) < 40 < _distance(source[0][60:130, 40], red)
    # frame 10 (t=1.0): interpolated half-way, the left edge at x=40+40*1.0/1.9
    x = round(40 + 40 * 1.0 / 1.9)
    assert _distance(frames[10][60:130, x], red) < 40
    assert _distance(frames[10][60:130, 40], red) > 40  # no longer at the first box
    # the green track shows only from its first box on
    assert _distance(frames[10][80:190, 200], green) < 40
    assert _distance(frames[5][80:190, 200], green) > 40
    # inside the boxes the picture is the video's own
    assert np.abs(frames[0][70:110, 60:120].astype(int) - source[0][70:110, 60:120].astype(int)).mean() < 10


def test_large_videos_are_capped_at_720p_with_the_boxes_scaled(tmp_path):
    big = make_face_clip(tmp_path / "big.mp4", seconds=0.5, fps=FPS, width=1600, height=1200)
    result = {"video": {"width": 1600, "height": 1200}, "tracks": [
        {"id": 0, "fake_probability": 0.9, "boxes": [{"frame": 0, "t": 0.0, "box": [400.0, 400.0, 800.0, 800.0]},
                                                     {"frame": 4, "t": 0.4, "box": [400.0, 400.0, 800.0, 800.0]}]}]}

    encoded = annotate_video(big, tmp_path / "out.mp4", result=result)

    first = _frames(encoded.path)[0]
    assert (encoded.width, encoded.height) == (1280, 960) and first.shape == (960, 1280, 3)
    assert _distance(first[360:620, 320], probability_colour(0.9)) < 40  # 400 px × 0.8


def test_box_interpolation_and_span():
    path = TrackPath.of(RED_TRACK)

    assert path.box_at(0.95, tolerance=0.1) == pytest.approx([60, 40, 160, 140])
    assert path.box_at(-0.05, tolerance=0.1) == pytest.approx([40, 40, 140, 140])
    assert path.box_at(2.1, tolerance=0.1) is None and path.label() == "track 3 90%"


def test_the_colour_scale_is_the_job_pages():
    script = (Path(__file__).parents[3] / "web" / "static" / "job.js").read_text()
    stops = re.search(r"PROBABILITY_STOPS = (\[.*?\]);", script, re.S).group(1)
    page = [(float(p), tuple(int(c) for c in rgb.split(","))) for p, rgb in
            re.findall(r"\[([0-9.]+), \[([0-9, ]+)\]\]", stops)]
    assert page == [(p, tuple(c)) for p, c in PROBABILITY_STOPS]
    assert probability_colour(0.5) == (234, 179, 8) and probability_colour(0.25) == (128, 171, 41)


def _annotate_growth(source: Path, target: Path) -> int:
    import gc

    from tests.memory import PeakAnonymousMemory

    result = {"video": {"width": W, "height": H}, "tracks": [RED_TRACK]}
    gc.collect()
    with PeakAnonymousMemory() as memory:
        annotate_video(source, target, result=result)
    return memory.growth


def test_memory_does_not_grow_with_video_length(clip, tmp_path):
    import subprocess

    long = tmp_path / "long.mp4"  # the 2 s clip looped to 60 s: 600 frames, 138 MB of RGB if kept
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "29", "-i", str(clip), "-c", "copy", str(long)],
                   check=True)
    _annotate_growth(clip, tmp_path / "warm.mp4")  # libraries, encoder and decoder pools
    short_growth = _annotate_growth(clip, tmp_path / "short-out.mp4")
    long_growth = _annotate_growth(long, tmp_path / "long-out.mp4")

    extra_frames_bytes = (600 - 20) * W * H * 3
    # Streaming adds nothing per frame; keeping the decoded (or drawn) frames would add them all.
    assert long_growth - short_growth < extra_frames_bytes / 4, \
        f"{long_growth / 2**20:.1f} MB for 600 frames vs {short_growth / 2**20:.1f} MB for 20"
