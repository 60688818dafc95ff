"""Probe-time limits on real files made by ffmpeg: frame size, duration, frame rate, stream count."""
from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from shared.errors import (FrameRateTooHighError, InputError, TooManyStreamsError, VideoTooLargeError,
                           VideoTooLongError)
from shared.media import probe_video
from shared.media.limits import VideoLimits
from shared.settings import Settings
from tests.media import make_face_clip

DEFAULTS = VideoLimits.from_settings(Settings())


def _solid_clip(path: Path, *, width: int, height: int, fps: int = 5, frames: int = 2) -> Path:
    """A few frames of one colour: cheap to encode even at 8K."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c=gray:s={width}x{height}:r={fps}",
                    "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, 10 fps, 160×120."""
    return make_face_clip(tmp_path_factory.mktemp("limits") / "clip.mp4", width=160, height=120)


def test_the_default_allows_4k_and_refuses_8k(tmp_path):
    uhd = probe_video(_solid_clip(tmp_path / "uhd.mp4", width=3840, height=2160), limits=DEFAULTS)
    assert (uhd.width, uhd.height) == (3840, 2160)
    portrait = probe_video(_solid_clip(tmp_path / "portrait.mp4", width=2160, height=3840), limits=DEFAULTS)
    assert (portrait.width, portrait.height) == (2160, 3840)
    with pytest.raises(VideoTooLargeError) as refused:
        probe_video(_solid_clip(tmp_path / "8k.mp4", width=7680, height=4320), limits=DEFAULTS)
    assert refused.value.code == "video_too_large"
    assert "7680×4320" in refused.value.message and "MAX_VIDEO_PIXELS" in refused.value.message


def test_frame_size_limit_is_inclusive(clip):
    assert probe_video(clip, limits=VideoLimits(max_pixels=160 * 120)).width == 160
    with pytest.raises(VideoTooLargeError, match="at most 19,199 pixels"):
        probe_video(clip, limits=VideoLimits(max_pixels=160 * 120 - 1))


def test_duration_limit(clip):
    assert probe_video(clip, limits=VideoLimits(max_duration_s=2)).duration_s == pytest.approx(2.0)
    with pytest.raises(VideoTooLongError) as refused:
        probe_video(clip, limits=VideoLimits(max_duration_s=1))
    assert refused.value.code == "video_too_long"
    assert "0:00:02.0" in refused.value.message and "MAX_VIDEO_DURATION_S=1" in refused.value.message


def test_frame_rate_limit_refuses_300_fps_by_default(tmp_path, clip):
    fast = make_face_clip(tmp_path / "fast.mp4", seconds=0.2, fps=300, width=64, height=48)
    with pytest.raises(FrameRateTooHighError) as refused:
        probe_video(fast, limits=DEFAULTS)
    assert refused.value.code == "frame_rate_too_high"
    assert "300" in refused.value.message and "MAX_VIDEO_FPS" in refused.value.message
    assert probe_video(clip, limits=DEFAULTS).fps == pytest.approx(10.0)


def test_stream_count_limit(tmp_path, clip):
    many = tmp_path / "many.mkv"
    audio = [arg for _ in range(17) for arg in ("-map", "1:a")]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-map", "0:v", *audio, "-c:v", "copy", "-c:a", "pcm_s16le", "-shortest", str(many)], check=True)
    with pytest.raises(TooManyStreamsError) as refused:
        probe_video(many, limits=DEFAULTS)
    assert refused.value.code == "too_many_streams"
    assert "18 streams" in refused.value.message and "MAX_VIDEO_STREAMS" in refused.value.message
    assert probe_video(many, limits=VideoLimits(max_streams=18)).has_audio


def test_zero_is_no_limit_and_limit_errors_are_input_errors(clip):
    assert probe_video(clip, limits=VideoLimits()).frames == 20
    assert issubclass(VideoTooLargeError, InputError)


def test_limits_come_from_the_environment():
    settings = Settings.from_env({"MAX_VIDEO_PIXELS": "100", "MAX_VIDEO_DURATION_S": "7", "MAX_VIDEO_FPS": "0",
                                  "MAX_VIDEO_STREAMS": "3"})
    assert VideoLimits.from_settings(settings) == VideoLimits(max_pixels=100, max_duration_s=7, max_fps=0,
                                                              max_streams=3)


def test_the_engine_applies_the_configured_limits_before_loading_a_model(tmp_path, clip):
    """`deepfake analyze`, batches without a server and the worker all go through analyze_video."""
    from shared.model.pipeline import EngineCache, analyze_video
    from shared.options import AnalysisOptions

    settings = replace(Settings(), weights_dir=tmp_path / "no-weights", data_dir=tmp_path, max_video_pixels=1000)
    with pytest.raises(VideoTooLargeError, match="MAX_VIDEO_PIXELS"):
        analyze_video(clip, options=AnalysisOptions(device="cpu"), cache=EngineCache(settings))
