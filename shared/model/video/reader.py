"""Streaming decode: frames in batches, upright RGB, with stream timestamps. Memory stays flat.

PyAV was chosen over OpenCV by measurement (bench/decode_bench.py): with frame threading it
decodes 720p h264 to RGB faster here, and it exposes timestamps and the display matrix.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from shared.errors import InvalidOptionsError, NoDecodableFramesError
from shared.model.types import FrameBatch, Reason
from shared.media.probe import VideoInfo, probe_video, stream_duration_s
from shared.media.source import check_local_file, open_container, video_stream

# A count from the container's index may exceed the decoded frames by a little without the file
# being cut (edit lists drop a leading frame or two); below that slack nothing is reported.
INDEX_SLACK_FRAMES = 2
# Without an index, the stream counts as cut when it ends this much before its stated duration.
DURATION_SLACK_S = 0.5


class StreamingReader:
    """What every reader shares: iteration that starts over, closing, and the account of what went
    wrong (`problems`: a `truncated` file, `decode_errors`; `frames_decoded`), with one rule for when a
    stream ended early. Subclasses set `path`, `info`, `batch_size` and `frame_stride`, call
    `_reset()` in `__init__`, and implement `_batches()` (which ends by calling `_finish`) and
    `_stated_end_s()`."""

    path: Path
    info: VideoInfo
    _decode_error_unit = "packet(s)"  # what a decode error lost, in the decoder's own terms

    def _reset(self) -> None:
        self.problems: list[Reason] = []
        self.frames_decoded = 0
        self._decode_errors: list[str] = []

    def __iter__(self) -> Iterator:
        """Decode from the start; a second iteration starts over."""
        self.close()
        self._reset()
        self._active = self._batches()
        return self._active

    def _batches(self) -> Iterator:
        raise NotImplementedError

    def _stated_end_s(self) -> float | None:
        """The video's own stated length (None: unknown), against which a stream without an index is judged."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop decoding and release the file and the decoder."""
        active, self._active = getattr(self, "_active", None), None
        if active is not None:
            active.close()  # runs the generator's cleanup: the decoder and the file close

    def __enter__(self):
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _finish(self, last_time: float | None) -> None:
        """Note decode errors and a stream that ended early; raise when nothing decoded."""
        if self._decode_errors:
            self.problems.append(Reason(
                "decode_errors",
                f"{len(self._decode_errors)} {self._decode_error_unit} could not be decoded and were skipped "
                f"(last: {self._decode_errors[-1]})",
            ))
        if not any(p.code == "truncated" for p in self.problems):
            self._check_complete(last_time)
        if self.frames_decoded == 0:
            details = "; ".join(p.message for p in self.problems) or "the stream holds no frames"
            raise NoDecodableFramesError(f"no frame of {self.path} could be decoded: {details}")

    def _check_complete(self, last_time: float | None) -> None:
        info = self.info
        if info.frames_exact:
            if self.frames_decoded < info.frames - INDEX_SLACK_FRAMES:
                self._note_truncated(self._last_error() or f"the container's index lists {info.frames} frames")
            return
        stated = self._stated_end_s()
        end = (last_time or 0.0) + 1.0 / info.fps
        if stated is not None and stated - end > max(DURATION_SLACK_S, 3.0 / info.fps):
            self._note_truncated(self._last_error() or f"the stream ended at {end:.2f} s of its stated {stated:.2f} s")

    def _stated_length(self, stream: av.video.stream.VideoStream) -> float | None:
        """The video's own stated length; the container's only when no audio track could stretch it."""
        own = stream_duration_s(stream)
        if own is not None:
            return own
        return None if self.info.has_audio else self.info.duration_s

    def _last_error(self) -> str | None:
        return self._decode_errors[-1] if self._decode_errors else None

    def _note_truncated(self, message: str) -> None:
        approx = "" if self.info.frames_exact else "~"
        self.problems.append(Reason(
            "truncated",
            f"decoding stopped at frame {self.frames_decoded} of {approx}{self.info.frames}: {message}; "
            "the rest was not analysed",
        ))


class VideoReader(StreamingReader):
    """Streams frames in batches; never holds more than one batch (plus the decoder's buffers).

    Iterating yields FrameBatch objects: source frame indices (0-based, presentation order),
    times in seconds from the stream's start (from each frame's pts, so variable frame rate is
    right), and (N, H, W, 3) uint8 RGB frames, upright and contiguous. With `frame_stride=k` only
    every k-th source frame is yielded (all are still decoded: they depend on each other).
    `max_side` downscales frames (in the same pass as the RGB conversion) so that their longest
    side is at most that; None keeps the source size. Frames keep the first frame's size if the
    stream changes resolution midway.

    `threads` caps the decoder's and the RGB conversion's own threads (0: FFmpeg picks, one per
    core and more), so decoding keeps to its share of the process's thread budget.

    `stacked=False` yields each batch's frames as a tuple of (H, W, 3) arrays, each where the RGB
    conversion wrote it, instead of copied into one (N, H, W, 3) array: 0.25–0.33 ms less a 720p
    frame here (a tenth of the engine's decode → detect → crop stage), the same pixels.

    `problems` collects what went wrong while decoding (a `truncated` file, `decode_errors`);
    `frames_decoded` counts source frames decoded so far. Zero decodable frames raises
    NoDecodableFramesError at the end of iteration.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 32,
        frame_stride: int = 1,
        info: VideoInfo | None = None,
        max_side: int | None = None,
        threads: int = 0,
        stacked: bool = True,
    ) -> None:
        require_positive(batch_size=batch_size, frame_stride=frame_stride, max_side=max_side)
        self.stacked = stacked
        self.threads = max(0, int(threads))
        self.path = check_local_file(path)
        self.info = info if info is not None else probe_video(self.path)
        self.batch_size = batch_size
        self.frame_stride = frame_stride
        self.max_side = max_side
        self._reset()
        self._active: Iterator[FrameBatch] | None = None
        self._stated_end: float | None = None

    def output_size(self) -> tuple[int, int]:
        """(width, height) of the yielded frames: the display size, downscaled to `max_side` if set."""
        width, height = self.info.width, self.info.height
        if self.max_side is None or max(width, height) <= self.max_side:
            return width, height
        scale = self.max_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _batches(self) -> Iterator[FrameBatch]:
        with open_container(self.path) as container:
            stream = video_stream(container, name=self.path)
            stream.thread_type = "AUTO"  # frame threading: measured faster in bench/decode_bench.py
            stream.codec_context.thread_count = self.threads
            self._stated_end = self._stated_length(stream)
            builder = _BatchBuilder(self, stream)
            last_time = None
            for frame in self._decoded_frames(container, stream):
                index = self.frames_decoded
                self.frames_decoded += 1
                last_time = builder.time_of(frame)
                if index % self.frame_stride:
                    continue
                batch = builder.add(frame, index=index, time_s=last_time)
                if batch is not None:
                    yield batch
            batch = builder.flush()
            if batch is not None:
                yield batch
        self._finish(last_time)

    def _decoded_frames(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Every decodable frame; a corrupt packet is skipped and noted, a read error ends the stream."""
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    self._decode_errors.append(str(exc))
                    continue
                yield from frames
        except (av.error.FFmpegError, OSError) as exc:
            self._note_truncated(f"reading the file failed: {exc}")

    def _stated_end_s(self) -> float | None:
        return self._stated_end


class _BatchBuilder:
    """Fills one freshly allocated batch at a time (a consumer may keep earlier batches safely)."""

    def __init__(self, reader: VideoReader, stream: av.video.stream.VideoStream) -> None:
        self._capacity = reader.batch_size
        width, height = reader.output_size()
        self._quarter_turns = (360 - reader.info.rotation) % 360 // 90  # counter-clockwise, for np.rot90
        # The decoder's picture is the unrotated one: convert to that size, then turn.
        self._decode_size = (height, width) if self._quarter_turns % 2 else (width, height)
        self._shape = (height, width, 3)
        self._time_base = stream.time_base or Fraction(1, 1)
        self._start = stream.start_time
        self._step = 1.0 / reader.info.fps
        self._previous: float | None = None
        self._count = 0
        # One reformatter for the stream: it keeps its scaler context between frames, where each
        # frame's own to_ndarray() builds a new one (measured: 690 vs 405 frames/s at 720p).
        self._reformatter = VideoReformatter()
        self._stacked = reader.stacked
        # The conversion keeps to the decoder's share too: left at 0, swscale starts a thread per core
        # (same pixels either way; one thread measured 0.44 against 0.52 CPU ms a 720p frame here).
        self._threads = reader.threads

    def _new_batch(self) -> None:
        """Allocate the next batch's arrays (called lazily, so no empty batch outlives the last)."""
        self._frames = np.empty((self._capacity, *self._shape), dtype=np.uint8) if self._stacked else []
        self._indices = np.empty(self._capacity, dtype=np.int64)
        self._times = np.empty(self._capacity, dtype=np.float64)

    def time_of(self, frame: av.VideoFrame) -> float:
        """Seconds since the stream's start, from the pts (extrapolated when a frame has none)."""
        if frame.pts is None:
            time_s = 0.0 if self._previous is None else self._previous + self._step
        else:
            if self._start is None:
                self._start = frame.pts
            time_s = float((frame.pts - self._start) * (frame.time_base or self._time_base))
        self._previous = time_s
        return time_s

    def add(self, frame: av.VideoFrame, *, index: int, time_s: float) -> FrameBatch | None:
        """Convert and store one frame; return the batch when it is full."""
        if self._count == 0:
            self._new_batch()
        width, height = self._decode_size
        rgb = self._reformatter.reformat(frame, format="rgb24", width=width, height=height,
                                         interpolation="AREA", threads=self._threads).to_ndarray()
        slot = self._count
        upright = np.rot90(rgb, self._quarter_turns) if self._quarter_turns else rgb
        if self._stacked:
            self._frames[slot] = upright
        else:  # the converter's own picture (a view that keeps it alive), made contiguous only when turned
            self._frames.append(np.ascontiguousarray(upright) if self._quarter_turns else upright)
        self._indices[slot] = index
        self._times[slot] = time_s
        self._count += 1
        return self.flush() if self._count == self._capacity else None

    def flush(self) -> FrameBatch | None:
        """The partly or wholly filled batch (None when empty); the next add() starts a new one."""
        if self._count == 0:
            return None
        count = self._count
        if not self._stacked:
            batch = FrameBatch(indices=self._indices[:count].copy(), times_s=self._times[:count].copy(),
                               frames=tuple(self._frames))
        elif count == self._capacity:
            batch = FrameBatch(indices=self._indices, times_s=self._times, frames=self._frames)
        else:  # the last batch: copies, so the unused rest of the buffer is not kept alive
            batch = FrameBatch(indices=self._indices[:count].copy(), times_s=self._times[:count].copy(),
                               frames=self._frames[:count].copy())
        self._count = 0
        del self._frames, self._indices, self._times
        return batch


def require_positive(*, batch_size: int, frame_stride: int, max_side: int | None) -> None:
    for name, value in (("batch_size", batch_size), ("frame_stride", frame_stride)):
        if not isinstance(value, int) or value < 1:
            raise InvalidOptionsError(f"{name} must be a positive integer, got {value!r}")
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise InvalidOptionsError(f"max_side must be a positive integer or None, got {max_side!r}")
