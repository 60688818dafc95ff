"""The frame reader: batches, strides, rotation, variable frame rate, odd sizes, cut files, memory.

The probe alone (shared.media) is tested in tests/shared/media/.
"""
from __future__ import annotations

import gc
import hashlib
import subprocess
import weakref
from pathlib import Path

import numpy as np
import psutil
import pytest

from shared.errors import InvalidOptionsError, NoDecodableFramesError
from shared.files import sha256_file
from shared.media import probe_video
from shared.model.types import frame_size, stacked_frames
from shared.model.video import VideoReader
from tests.media import animated_frames, make_face_clip, write_video
from tests.memory import PeakAnonymousMemory

FPS = 10.0


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def _ffprobe(path: Path, *entries: str) -> list[str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", *entries,
         "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True, text=True, check=True,
    )
    return [line for line in out.stdout.split() if line]


def _read(path: Path, **kwargs) -> tuple[VideoReader, np.ndarray, np.ndarray, np.ndarray]:
    reader = VideoReader(path, **kwargs)
    batches = list(reader)
    return (reader, np.concatenate([b.indices for b in batches]), np.concatenate([b.times_s for b in batches]),
            np.concatenate([b.frames for b in batches]))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return animated_frames(photos=("astronaut", "grace_hopper"), width=320, height=240, count=20)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, source: np.ndarray) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", source, fps=FPS)


# --- reader basics --------------------------------------------------------------------------------
def test_reader_yields_every_frame_in_batches(clip: Path, source: np.ndarray) -> None:
    reader = VideoReader(clip, batch_size=8)
    batches = list(reader)
    assert [len(b) for b in batches] == [8, 8, 4]
    for batch in batches:
        assert batch.frames.flags.c_contiguous and batch.frames.dtype == np.uint8
        assert batch.indices.dtype == np.int64 and batch.times_s.dtype == np.float64
    frames = np.concatenate([b.frames for b in batches])
    assert _mean_abs_diff(frames, source) < 6
    assert reader.frames_decoded == 20 and reader.problems == []


@pytest.mark.parametrize("max_side", [None, 100])
def test_the_thread_budget_changes_no_pixel(clip: Path, max_side: int | None) -> None:
    """The engine decodes and converts to RGB on its share of the cores (one thread on two cores);
    FFmpeg's own choice (a thread per core) gives the same frames, shrunk or not."""
    *_, capped = _read(clip, threads=1, max_side=max_side)
    *_, free = _read(clip, threads=0, max_side=max_side)
    np.testing.assert_array_equal(capped, free)


@pytest.mark.parametrize("kwargs", [{}, {"max_side": 100}, {"frame_stride": 3}])
def test_unstacked_batches_hold_the_same_frames(clip: Path, kwargs: dict) -> None:
    """The engine's reader hands over each converted picture as it is (no copy into one array)."""
    _, indices, times, frames = _read(clip, batch_size=8, **kwargs)
    batches = list(VideoReader(clip, batch_size=8, stacked=False, **kwargs))
    assert all(isinstance(b.frames, tuple) and len(b.frames) == len(b) for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), indices)
    np.testing.assert_array_equal(np.concatenate([b.times_s for b in batches]), times)
    np.testing.assert_array_equal(np.concatenate([stacked_frames(b.frames) for b in batches]), frames)
    assert frame_size(batches[0].frames) == frames.shape[1:3]
    np.testing.assert_array_equal(stacked_frames(batches[0].frames, [1, 3]), frames[[1, 3]])


def test_frame_stride_keeps_every_kth_frame(clip: Path) -> None:
    _, _, _, every = _read(clip)
    reader, indices, times, strided = _read(clip, frame_stride=3, batch_size=4)
    np.testing.assert_array_equal(indices, np.arange(0, 20, 3))
    np.testing.assert_allclose(times, indices / FPS, atol=1e-6)
    np.testing.assert_array_equal(strided, every[indices])
    assert reader.frames_decoded == 20  # all decoded, only every third kept


def test_iterating_again_starts_over(clip: Path) -> None:
    reader = VideoReader(clip, batch_size=16)
    first = [b.indices.tolist() for b in reader]
    second = [b.indices.tolist() for b in reader]
    assert first == second == [list(range(16)), list(range(16, 20))]
    assert reader.frames_decoded == 20


def test_close_midway_releases_the_file(clip: Path) -> None:
    process = psutil.Process()
    open_before = {f.path for f in process.open_files()}
    with VideoReader(clip, batch_size=4) as reader:
        batches = iter(reader)
        next(batches)
        assert str(clip) in {f.path for f in process.open_files()} - open_before
    assert str(clip) not in {f.path for f in process.open_files()}
    assert next(batches, None) is None


def test_max_side_downscales_in_the_conversion(clip: Path, source: np.ndarray) -> None:
    _, _, _, small = _read(clip, max_side=160)
    assert small.shape == (20, 120, 160, 3)
    reference = source.reshape(20, 120, 2, 160, 2, 3).mean(axis=(2, 4))  # a 2x2 box filter
    assert _mean_abs_diff(small, reference) < 6
    _, _, _, same = _read(clip, max_side=1000)
    assert same.shape == (20, 240, 320, 3)


# --- rotation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(tmp_path: Path, clip: Path, tag: int) -> None:
    rotated = tmp_path / "rotated.mp4"
    _ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", str(rotated))
    matrix_angle = _ffprobe(rotated, "stream_side_data=rotation")  # counter-clockwise, as FFmpeg reports it
    assert matrix_angle, "this ffmpeg wrote no display matrix"
    clockwise = -int(float(matrix_angle[0])) % 360

    info = probe_video(rotated)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((240, 320) if clockwise in (90, 270) else (320, 240))
    _, _, _, upright = _read(rotated)
    assert upright.shape == (20, info.height, info.width, 3)
    # Exactly the unrotated file's pixels turned clockwise by that angle...
    _, _, _, stored = _read(clip)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-clockwise // 90, axes=(1, 2)))
    unstacked = [f for b in VideoReader(rotated, stacked=False) for f in b.frames]  # as the engine reads
    assert all(f.flags.c_contiguous for f in unstacked)
    np.testing.assert_array_equal(np.stack(unstacked), upright)
    # ...and what ffmpeg itself shows (it applies the display matrix on its own).
    shown = subprocess.run(["ffmpeg", "-v", "error", "-i", str(rotated), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           capture_output=True, check=True).stdout
    assert _mean_abs_diff(upright, np.frombuffer(shown, np.uint8).reshape(upright.shape)) < 2


def test_rotation_with_max_side(tmp_path: Path, clip: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    _ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    reader, _, _, frames = _read(rotated, max_side=160)
    assert frames.shape == (20, 160, 120, 3) and reader.output_size() == (120, 160)


# --- variable frame rate and odd sizes ----------------------------------------------------------
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_times_come_from_pts(tmp_path: Path, source: np.ndarray, ext: str) -> None:
    # 10 frames 100 ms apart, then 10 frames 263 ms apart (milliseconds, time base 1/1000).
    vfr = write_video(
        tmp_path / f"vfr.{ext}", source, fps=FPS,
        extra_args=("-vf", "settb=1/1000,setpts='if(lt(N,10),N*100,1000+(N-10)*263)'",
                    "-fps_mode", "passthrough", "-enc_time_base", "1/1000"),
    )
    expected = np.array([n * 0.1 if n < 10 else 1.0 + (n - 10) * 0.263 for n in range(20)])
    reader, indices, times, _ = _read(vfr, batch_size=6)
    np.testing.assert_array_equal(indices, np.arange(20))
    np.testing.assert_allclose(times, expected, atol=1e-6)
    start = float(_ffprobe(vfr, "stream=start_time")[0])
    np.testing.assert_allclose(times, np.array([float(t) for t in _ffprobe(vfr, "frame=pts_time")]) - start,
                               atol=1e-6)
    assert reader.problems == []  # the uneven spacing is not mistaken for a gap or a cut
    info = probe_video(vfr)
    if info.frames_exact:  # with an index the average rate is frames / duration
        assert info.frames == 20 and info.fps == pytest.approx(20 / info.duration_s, rel=0.1)
    else:  # Matroska has no frame count; FFmpeg's rate guess is all a cheap probe has
        assert info.duration_s == pytest.approx(expected[-1] + 0.263, abs=0.3)


@pytest.mark.parametrize(("ext", "codec", "pix_fmt", "tolerance"), [
    ("mkv", "ffv1", "yuv444p", 2.0),
    ("avi", "mjpeg", "yuvj444p", 6.0),
    ("mp4", "libx264", "yuv444p", 6.0),
])
def test_odd_frame_size(tmp_path: Path, ext: str, codec: str, pix_fmt: str, tolerance: float) -> None:
    odd = animated_frames(photos=("astronaut",), width=321, height=239, count=5)
    path = write_video(tmp_path / f"odd.{ext}", odd, fps=FPS, codec=codec, pix_fmt=pix_fmt)
    info = probe_video(path)
    assert (info.width, info.height) == (321, 239)
    _, _, _, frames = _read(path)
    assert frames.shape == (5, 239, 321, 3) and frames.flags.c_contiguous
    assert _mean_abs_diff(frames, odd) < tolerance


def test_resolution_change_midway_keeps_the_first_size(tmp_path: Path) -> None:
    small = animated_frames(photos=("astronaut",), width=176, height=144, count=6)
    large = animated_frames(photos=("astronaut",), width=352, height=288, count=6)
    parts = [
        write_video(tmp_path / f"part{i}.webm", frames, fps=FPS, codec="libvpx", extra_args=("-deadline", "realtime"))
        for i, frames in enumerate((small, large))
    ]
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    joined = tmp_path / "joined.webm"  # as WebRTC recordings do: the size changes within one stream
    _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(joined))
    reader, indices, _, frames = _read(joined, batch_size=4)
    assert frames.shape == (12, 144, 176, 3) and reader.problems == []
    np.testing.assert_array_equal(indices, np.arange(12))
    assert _mean_abs_diff(frames[:6], small) < 6
    assert _mean_abs_diff(frames[6:], large.reshape(6, 144, 2, 176, 2, 3).mean(axis=(2, 4))) < 8


# --- truncated and undecodable ----------------------------------------------------------------
@pytest.fixture(scope="module")
def long_source() -> np.ndarray:
    return animated_frames(photos=("astronaut",), width=160, height=120, count=40)


def _cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _read_all(path: Path) -> tuple[VideoReader, np.ndarray, np.ndarray]:
    reader = VideoReader(path, batch_size=8)
    batches = list(reader)
    return reader, np.concatenate([b.indices for b in batches]), np.concatenate([b.frames for b in batches])


# A keyframe every 10 frames, so a cut in the middle leaves whole groups of pictures before it.
@pytest.mark.parametrize(("ext", "extra", "approx"), [
    ("mp4", ("-g", "10", "-movflags", "+faststart"), ""),  # the index survives the cut: an exact count
    ("mkv", ("-g", "10"), "~"),  # no index: the count is estimated from the stated duration
])
def test_file_cut_midway_yields_what_decodes_and_says_so(
    tmp_path: Path, long_source: np.ndarray, ext: str, extra: tuple[str, ...], approx: str
) -> None:
    whole = write_video(tmp_path / f"whole.{ext}", long_source, fps=10.0, extra_args=extra)
    cut = _cut(whole, tmp_path / f"cut.{ext}", 0.55)
    reader, indices, frames = _read_all(cut)
    decoded = reader.frames_decoded
    assert 0 < decoded < 40
    np.testing.assert_array_equal(indices, np.arange(decoded))
    assert np.abs(frames.astype(np.int16) - long_source[:decoded]).mean() < 8
    truncated = [p for p in reader.problems if p.code == "truncated"]
    assert len(truncated) == 1
    assert truncated[0].message.startswith(f"decoding stopped at frame {decoded} of {approx}40: ")
    assert truncated[0].message.endswith("the rest was not analysed")


def test_complete_file_reports_no_problem(tmp_path: Path, long_source: np.ndarray) -> None:
    for ext in ("mp4", "mkv"):
        reader, indices, _ = _read_all(write_video(tmp_path / f"whole.{ext}", long_source, fps=10.0))
        assert reader.problems == [] and len(indices) == 40


@pytest.mark.parametrize("ext", ["flv", "mkv", "mp4"])
def test_audio_outlasting_the_video_is_not_a_cut(tmp_path: Path, clip: Path, ext: str) -> None:
    longer_audio = tmp_path / f"longer_audio.{ext}"
    _ffmpeg("-i", str(clip), "-f", "lavfi", "-i", "sine=duration=4", "-c:v", "copy", "-c:a", "aac",
            str(longer_audio))
    reader, indices, _ = _read_all(longer_audio)
    assert len(indices) == 20 and reader.problems == []


def test_nothing_decodable_is_a_typed_error(tmp_path: Path, long_source: np.ndarray) -> None:
    whole = write_video(tmp_path / "whole.mp4", long_source, fps=10.0, extra_args=("-movflags", "+faststart"))
    info = probe_video(whole)
    header_only = _cut(whole, tmp_path / "header_only.mp4", 0.0)
    header_only.write_bytes(whole.read_bytes()[:_mdat_offset(whole) + 16])
    with pytest.raises(NoDecodableFramesError, match="h264 video stream but no frame of it could be decoded"):
        probe_video(header_only)
    # A reader given an earlier probe of the same path finds nothing either and says so.
    whole.write_bytes(header_only.read_bytes())
    with pytest.raises(NoDecodableFramesError, match="no frame of .* could be decoded"):
        list(VideoReader(whole, info=info))


def _mdat_offset(path: Path) -> int:
    """Where the media data box starts in an MP4 (after the index with +faststart)."""
    data = path.read_bytes()
    return data.index(b"mdat") - 4


def test_invalid_reader_options(clip: Path) -> None:
    for kwargs in ({"batch_size": 0}, {"frame_stride": 0}, {"max_side": -1}, {"batch_size": 2.5}):
        with pytest.raises(InvalidOptionsError):
            VideoReader(clip, **kwargs)


# --- memory ---------------------------------------------------------------------------------------
def _peak_growth(path: Path) -> tuple[int, int, int]:
    """(peak anonymous-memory growth, frames decoded, bytes of one RGB frame) over reading the whole file,
    each batch dropped as a consumer would."""
    gc.collect()
    reader = VideoReader(path, batch_size=8)
    frame_bytes = 0
    with PeakAnonymousMemory() as memory:
        for batch in reader:
            memory.sample()  # with the batch alive: the most a consumer holds at once
            frame_bytes = batch.frames[0].nbytes
    return memory.growth, reader.frames_decoded, frame_bytes


def test_memory_does_not_grow_with_video_length(tmp_path: Path) -> None:
    short = make_face_clip(tmp_path / "short.mp4", seconds=2.0, fps=25.0, width=320, height=240)
    long = tmp_path / "long.mp4"  # the same 2 s looped to 20 s: 500 frames, 115 MB of RGB if kept
    _ffmpeg("-stream_loop", "9", "-i", str(short), "-c", "copy", str(long))
    _peak_growth(short)  # warm up: libraries, decoder pools
    short_growth, short_frames, frame_bytes = _peak_growth(short)
    long_growth, long_frames, _ = _peak_growth(long)
    assert (short_frames, long_frames) == (50, 500)
    # Keeping the 450 extra frames would add 450 frames' bytes; reading them one batch at a time adds none.
    # A quarter of that leaves room for allocator noise; keeping the frames, or every other one, exceeds it.
    extra_frames_bytes = (long_frames - short_frames) * frame_bytes
    assert long_growth - short_growth < extra_frames_bytes / 4, \
        f"{long_growth / 2**20:.1f} MB for 500 frames vs {short_growth / 2**20:.1f} MB for 50"


def test_only_the_current_batch_is_alive(clip: Path) -> None:
    alive_counts = []
    owners: list[weakref.ref] = []
    for batch in VideoReader(clip, batch_size=4):
        owners.append(weakref.ref(batch.frames if batch.frames.base is None else batch.frames.base))
        del batch
        gc.collect()
        alive_counts.append(sum(ref() is not None for ref in owners))
    assert len(owners) == 5
    assert alive_counts == [1] * 5  # the reader keeps only what it is filling, never past batches


# --- checksum -------------------------------------------------------------------------------------
def test_sha256_file_streams_in_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 256, 3 * 2**20 + 17, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=65_537) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.touch()
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(ValueError):
        sha256_file(path, chunk_size=0)
