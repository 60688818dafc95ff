"""The format matrix: every accepted container with the codecs it carries, probed and decoded.

Each clip is tiny (176x144, the size H.263 requires, 12 frames at 10 fps) and made from real
face photos, so the decoded pixels can be compared with what was encoded.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from shared.media import probe_video
from shared.model.video import VideoReader
from tests.media import animated_frames, write_video

WIDTH, HEIGHT, FPS, COUNT = 176, 144, 10.0, 12

# (file extension, ffmpeg encoder, pixel format, expected container, expected codec, extra args)
MATRIX = [
    ("mp4", "libx264", "yuv420p", "mp4", "h264", ()),
    ("mp4", "libx265", "yuv420p", "mp4", "hevc", ("-x265-params", "log-level=error")),
    ("mp4", "mpeg4", "yuv420p", "mp4", "mpeg4", ()),
    ("mov", "libx264", "yuv420p", "mov", "h264", ()),
    ("mov", "mjpeg", "yuvj420p", "mov", "mjpeg", ()),
    ("mkv", "libx264", "yuv420p", "matroska", "h264", ()),
    ("mkv", "libx265", "yuv420p", "matroska", "hevc", ("-x265-params", "log-level=error")),
    ("mkv", "libvpx-vp9", "yuv420p", "matroska", "vp9", ("-deadline", "realtime")),
    ("webm", "libvpx-vp9", "yuv420p", "matroska", "vp9", ("-deadline", "realtime")),
    ("webm", "libvpx", "yuv420p", "matroska", "vp8", ("-deadline", "realtime")),
    ("avi", "mpeg4", "yuv420p", "avi", "mpeg4", ()),
    ("avi", "mjpeg", "yuvj420p", "avi", "mjpeg", ()),
    ("3gp", "h263", "yuv420p", "3gp", "h263", ()),
    ("3gp", "libx264", "yuv420p", "3gp", "h264", ()),
    ("wmv", "wmv2", "yuv420p", "asf", "wmv2", ()),
    ("flv", "flv", "yuv420p", "flv", "flv", ()),
    ("gif", "gif", "pal8", "gif", "gif", ("-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse")),
    ("ts", "libx264", "yuv420p", "mpegts", "h264", ()),
]


@lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True)
    names = set()
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


@pytest.fixture(scope="module")
def source_frames() -> np.ndarray:
    return animated_frames(photos=("astronaut",), width=WIDTH, height=HEIGHT, count=COUNT)


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(
    ("ext", "encoder", "pix_fmt", "container", "codec", "extra"),
    MATRIX,
    ids=[f"{row[0]}-{row[4]}" for row in MATRIX],
)
def test_container_codec_pair_probes_and_decodes(
    tmp_path: Path, source_frames: np.ndarray, ext: str, encoder: str, pix_fmt: str,
    container: str, codec: str, extra: tuple[str, ...],
) -> None:
    if encoder not in _encoders():
        pytest.skip(f"this ffmpeg has no {encoder} encoder, so no {ext}/{codec} clip can be made")
    clip = write_video(tmp_path / f"clip.{ext}", source_frames, fps=FPS, codec=encoder, pix_fmt=pix_fmt,
                       extra_args=extra)

    info = probe_video(clip)
    assert (info.container, info.codec) == (container, codec)
    assert (info.width, info.height, info.rotation) == (WIDTH, HEIGHT, 0)
    assert info.fps == pytest.approx(FPS, rel=0.02)
    assert abs(info.frames - COUNT) <= (0 if info.frames_exact else 1)
    assert info.duration_s == pytest.approx(COUNT / FPS, abs=1.5 / FPS)

    with VideoReader(clip, batch_size=5) as reader:
        batches = list(reader)
    frames = np.concatenate([b.frames for b in batches])
    indices = np.concatenate([b.indices for b in batches])
    times = np.concatenate([b.times_s for b in batches])
    assert [len(b) for b in batches] == [5, 5, 2]
    assert frames.shape == (COUNT, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(indices, np.arange(COUNT))
    np.testing.assert_allclose(times, np.arange(COUNT) / FPS, atol=2e-3)
    assert reader.problems == [] and reader.frames_decoded == COUNT
    # Decoded pixels are the encoded picture in RGB order (a BGR mix-up would be far off).
    error = _mean_abs_diff(frames, source_frames)
    assert error < 8, f"mean abs error {error:.1f} against the encoded frames"
    assert error < _mean_abs_diff(frames[..., ::-1], source_frames) / 2
