"""A small H.264 MP4 of the video that a browser can play and seek, and the writer it shares with `annotate`.

Uploads are deleted when their job ends, so the job page plays this preview instead: upright, its
short side at most `PREVIEW_SHORT_SIDE`, at most `PREVIEW_MAX_FPS` frames a second, no audio, the
index at the front (`+faststart`) so playback starts while it downloads. Frames keep the source's
timestamps, so the preview's time is the result's time (window `start_s`, box `t`).

The analysis makes it from the frames it decodes anyway (`PreviewRecorder.tap` around its reader:
every k-th frame, scaled, into the encoder, which writes to disk), so the preview costs a resize and
an encode, not a second decode; `write_preview` makes one from a file on its own. Either way frames
stream to disk: memory does not grow with the video's length.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Iterator

import av
import numpy as np

from shared.errors import AnalysisCancelled
from shared.model.result import Artifact
from shared.model.types import FrameBatch

PREVIEW_NAME = "preview.mp4"
PREVIEW_MEDIA_TYPE = "video/mp4"
# 480p: the page shows the video at most ~850 px wide; boxes are drawn by the page, not burnt in.
PREVIEW_SHORT_SIDE = 480
# Enough to follow faces and seek to a window, with half the frames of 30 fps video to encode.
PREVIEW_MAX_FPS = 15.0
# Fixed-rate timestamps in microseconds: fine enough for any source frame rate, VFR included.
_TIME_BASE = Fraction(1, 1_000_000)
# Frames per decode batch: a few frames in memory, whatever the video's length.
_DECODE_BATCH = 4
# Measured per 852×480 frame on this machine's Xeon (AVX-512): x264 veryfast 3.3 ms, superfast 2.3 ms
# (files ~1.5× larger, ~2 MB a minute), ultrafast 1.5 ms (8× larger); OpenCV's area resize from 720p
# 3.7 ms, bilinear 0.9 ms (a 1.5× reduction: bilinear is sharp enough for a preview).
PREVIEW_PRESET = "superfast"


class PreviewFailed(Exception):
    """The preview could not be encoded or written (the analysis itself is unaffected)."""


@dataclass(frozen=True)
class EncodedVideo:
    """What a writer produced: the file, its frame size, frame count and nominal frame rate."""

    path: Path
    width: int
    height: int
    frames: int
    fps: float


class H264Writer:
    """Encodes upright RGB frames with their times into an H.264 MP4 (yuv420p, no audio, +faststart).

    Odd sizes lose their last row or column (yuv420p needs even sizes): no rescaling, so pixel
    positions stay those of the frames given.
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: float, crf: int = 28,
                 preset: str = "veryfast", threads: int = 0) -> None:
        self.path = Path(path)
        self.width, self.height = max(2, width - width % 2), max(2, height - height % 2)
        self.fps = float(fps)
        self.frames = 0
        self._last_pts = -1
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(self.fps).limit_denominator(1001) if self.fps > 0 else Fraction(30)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = _TIME_BASE
        # A keyframe every 2 s: the page seeks to windows, and a seek decodes from the keyframe before.
        stream.codec_context.gop_size = max(1, round(2 * self.fps)) if self.fps > 0 else 60
        stream.codec_context.thread_count = max(0, int(threads))
        stream.options = {"crf": str(crf), "preset": preset}
        self._stream = stream

    def write(self, rgb: np.ndarray, *, t: float) -> None:
        """Encode one (H, W, 3) uint8 RGB frame shown at `t` seconds (times must not go back)."""
        import cv2

        # OpenCV's RGB → I420 (BT.601, as FFmpeg's default): 0.4 ms a 480p frame where FFmpeg's
        # scaler from an RGB frame takes 1.0 ms.
        yuv = cv2.cvtColor(np.ascontiguousarray(rgb[: self.height, : self.width]), cv2.COLOR_RGB2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        pts = max(int(round(t / _TIME_BASE)), self._last_pts + 1)
        frame.pts, frame.time_base, self._last_pts = pts, _TIME_BASE, pts
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> EncodedVideo:
        """Flush the encoder and finish the file (moving its index to the front)."""
        if self._container is not None:
            try:
                self._container.mux(self._stream.encode(None))
            finally:
                self._container.close()
                self._container = None
        return EncodedVideo(self.path, self.width, self.height, self.frames, self.fps)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        finally:
            self.path.unlink(missing_ok=True)  # no half-written video is left behind


def _host_frames(frames, *, size: tuple[int, int]) -> np.ndarray:
    """(N, 3, H, W) uint8 tensors on a device → (N, height, width, 3) uint8 host frames at `size`
    (width, height): antialiased on the device, so a 1080p frame crosses the bus at 480p."""
    import torch
    import torch.nn.functional as F

    width, height = size
    pixels = frames.float()
    if tuple(pixels.shape[-2:]) != (height, width):
        pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(pixels.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def scaled_size(width: int, height: int, *, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side`, aspect kept, both even (yuv420p)."""
    scale = min(1.0, short_side / max(1, min(width, height)))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def frame_stride_for(fps: float, *, max_fps: float) -> int:
    """Keep every k-th frame so that the rate is at most about `max_fps` (1 for unknown rates)."""
    return max(1, math.ceil(fps / max_fps - 1e-6)) if fps and fps > 0 else 1


class PreviewRecorder:
    """Encodes the preview from frames decoded for something else (the analysis): every k-th frame given,
    scaled to the preview's size. An encoder failure stops the recording, not the caller: `finish`
    then raises PreviewFailed. `busy_s` is the time spent here."""

    def __init__(self, target: Path, *, info, frame_stride: int = 1, threads: int = 0,
                 short_side: int = PREVIEW_SHORT_SIDE, max_fps: float = PREVIEW_MAX_FPS) -> None:
        self.busy_s = 0.0
        given_fps = info.fps / frame_stride if info.fps else 0.0
        self._every = frame_stride_for(given_fps, max_fps=max_fps)
        self._size = scaled_size(info.width, info.height, short_side=short_side)
        self._seen = 0
        self._error: Exception | None = None
        self._writer: H264Writer | None = None
        try:
            self._writer = H264Writer(Path(target), width=self._size[0], height=self._size[1],
                                      fps=given_fps / self._every, preset=PREVIEW_PRESET, threads=threads)
        except Exception as exc:  # no encoder, a full or read-only disk: no preview, the analysis goes on
            self._error = exc
            with contextlib.suppress(OSError):  # the temporary file, if one was made
                Path(target).unlink()

    def tap(self, batches: Iterable[FrameBatch]) -> Iterator[FrameBatch]:
        """The batches, unchanged, recording each on its way through."""
        for batch in batches:
            self.add(batch)
            yield batch

    def add(self, batch: FrameBatch) -> None:
        """Record the batch's every k-th frame. Frames decoded on the GPU are scaled there and only
        the preview-sized ones cross to the host."""
        start = time.perf_counter()
        kept = [i for i in range(len(batch.times_s)) if (self._seen + i) % self._every == 0]
        self._seen += len(batch.times_s)
        if kept and self._writer is not None:
            frames = batch.frames
            if not isinstance(frames, (np.ndarray, tuple)):  # decoded on a device
                frames = _host_frames(frames[kept], size=self._size)
                kept_frames = zip(frames, batch.times_s[kept])
            else:
                kept_frames = ((frames[i], batch.times_s[i]) for i in kept)
            for frame, t in kept_frames:
                if self._writer is None:
                    break
                self._write(frame, float(t))
        self.busy_s += time.perf_counter() - start

    def _write(self, frame: np.ndarray, t: float) -> None:
        import cv2

        width, height = self._size
        if frame.shape[:2] != (height, width):
            # Bilinear aliases past a 2× reduction (1080p and up): average the source pixels there instead.
            area = frame.shape[0] > 2 * height and frame.shape[1] > 2 * width
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        try:
            self._writer.write(frame, t=t)
        except (av.error.FFmpegError, OSError) as exc:
            self._error = exc
            self.discard()

    def finish(self) -> EncodedVideo:
        """Close the file; PreviewFailed if encoding failed or no frame came."""
        if self._writer is None or self._writer.frames == 0:
            self.discard()
            raise PreviewFailed(f"the preview video could not be made ({self._error or 'no frames'}); "
                                "the result is complete without it")
        writer, self._writer = self._writer, None
        start = time.perf_counter()
        try:
            return writer.close()
        except (av.error.FFmpegError, OSError) as exc:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                writer.path.unlink()
            raise PreviewFailed(f"the preview video could not be written ({exc}); "
                                "the result is complete without it") from exc
        finally:
            self.busy_s += time.perf_counter() - start

    def discard(self) -> None:
        """Stop and remove the file (the analysis failed or was cancelled)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):  # the file goes anyway
                writer.close()
            with contextlib.suppress(OSError):
                writer.path.unlink()


def temporary_preview_path(directory: Path) -> Path:
    """A new empty file for a preview in `directory` (on the artifacts' file system: storing it is a rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=".preview-", suffix=".mp4")
    os.close(handle)
    return Path(name)


def as_artifact(video: EncodedVideo) -> Artifact:
    """The preview as the job's `preview.mp4` artifact (its file to be moved into place)."""
    description = f"preview video, {video.width}×{video.height}, {video.fps:.3g} fps, {video.frames} frames"
    return Artifact(PREVIEW_NAME, PREVIEW_MEDIA_TYPE, None, None, description, path=video.path)


def preview_artifact(source: Path, *, directory: Path, info=None, threads: int = 0,
                     should_cancel: Callable[[], bool] | None = None) -> Artifact:
    """The preview of `source` as an artifact whose file is a temporary file in `directory` (put it on
    the artifacts' file system: storing it is then a rename), from a decode of its own. Raises
    PreviewFailed or AnalysisCancelled."""
    target = temporary_preview_path(directory)
    try:
        video = write_preview(source, target, info=info, threads=threads, should_cancel=should_cancel)
    except (av.error.FFmpegError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise PreviewFailed(f"the preview video could not be made ({exc}); the result is complete without it") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return as_artifact(video)


def write_preview(source: Path, target: Path, *, info=None, threads: int = 0,
                  short_side: int = PREVIEW_SHORT_SIDE, max_fps: float = PREVIEW_MAX_FPS,
                  should_cancel: Callable[[], bool] | None = None) -> EncodedVideo:
    """Transcode `source` into a small seekable preview at `target`; streams, one few-frame batch at a time.

    `should_cancel` is asked between batches; a yes raises AnalysisCancelled and removes the file."""
    from shared.media import probe_video
    from shared.model.video import VideoReader

    info = info if info is not None else probe_video(source)
    width, height = scaled_size(info.width, info.height, short_side=short_side)
    stride = frame_stride_for(info.fps, max_fps=max_fps)
    reader = VideoReader(source, batch_size=_DECODE_BATCH, frame_stride=stride, info=info,
                         max_side=max(width, height), threads=threads)
    out_width, out_height = reader.output_size()
    with reader, H264Writer(Path(target), width=out_width, height=out_height, fps=info.fps / stride,
                            preset=PREVIEW_PRESET, threads=threads) as writer:
        for batch in reader:
            if should_cancel is not None and should_cancel():
                raise AnalysisCancelled("the analysis was cancelled")
            for rgb, t in zip(batch.frames, batch.times_s):
                writer.write(rgb, t=float(t))
    return EncodedVideo(writer.path, writer.width, writer.height, writer.frames, writer.fps)
