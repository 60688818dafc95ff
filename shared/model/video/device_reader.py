"""Decoding on the analysis device: NVDEC on CUDA workers (frames stay on the GPU), through torchcodec.

torchcodec is PyTorch's own video decoder: it decodes with NVDEC straight into CUDA tensors, applies the
stream's display matrix, and has a CPU decoder behind the same interface, so this module runs and is tested
on machines without a GPU. Its PyPI wheel is built against the CUDA of PyPI's torch (0.17.0+cu130 for torch
2.14.1); a torch from another CUDA index needs torchcodec from the same index (requirements/gpu.txt).

The choice is made per file (`choose_decoder`): NVDEC for the codecs and pixel formats it decodes, the
CPU (`shared.model.video.VideoReader`) for the rest, with a Reason that says so.

Safety, as for VideoReader (see `shared.media.source`):
- the path must be a local regular file (`check_local_file`), and `probe_video` (PyAV, with the container
  allow-list, playlists and concat lists refused, nested opens refused) reads it before torchcodec does;
- torchcodec is given a file object opened here, never a name, so FFmpeg cannot read the name as a URL
  or protocol; it is opened without blocking (a FIFO swapped in cannot hang the worker) and must be the
  very file that was probed (same device, inode, size and modification time), else it is refused.
  torchcodec offers no hook to refuse nested opens; the probe has refused every demuxer that makes them
  for exactly this file.
"""
from __future__ import annotations

import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

import numpy as np
import torch

from shared.errors import (
    DeviceUnavailableError, InvalidOptionsError, NoDecodableFramesError, UnsupportedFormatError,
)
from shared.media.probe import VideoInfo, probe_video
from shared.media.source import check_local_file, open_container, video_stream
from shared.model.types import Reason
from shared.model.video.reader import INDEX_SLACK_FRAMES, StreamingReader, require_positive

if TYPE_CHECKING:
    from torchcodec.decoders import VideoDecoder

NVDEC = "nvdec"
CPU = "cpu"
TORCHCODEC_CPU = "torchcodec-cpu"
# Codecs (as VideoInfo.codec names them) that torchcodec 0.17's NVDEC backend decodes. NVDEC itself also
# does mpeg1video, mpeg2video and vc1, but torchcodec leaves those to its CPU fallback (untested there).
NVDEC_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})
# 4:2:0 (and grey) 8-bit decodes on every NVDEC generation; more than 8 bits only for these codecs. 4:2:2
# and 4:4:4 depend on the GPU (HEVC 4:4:4 since Turing, 4:2:2 since Blackwell): left to the CPU.
_HIGH_DEPTH_CODECS = frozenset({"hevc", "vp9", "av1"})
_CUDA_TAG = re.compile(r"\+cu(\d+)(\d)$")  # torchcodec's local version: 0.17.0+cu130 is CUDA 13.0
_SOURCE_LOCATION = re.compile(r"^.*\.cpp:\d+, ")  # torchcodec prefixes its errors with its C++ location


@dataclass(frozen=True)
class DeviceFrameBatch:
    """Consecutive decoded frames on the decoder's device: (N, 3, H, W) uint8 RGB, upright.

    `indices` are source frame indices (0-based, presentation order), `times_s` seconds from the stream's
    start (from each frame's pts), both on the CPU.
    """

    indices: np.ndarray
    times_s: np.ndarray
    frames: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class DecoderChoice:
    """Which decoder reads a file: "nvdec", or "cpu" with the reason when a CUDA device could not."""

    name: str
    reason: Reason | None = None


def torchcodec_available() -> bool:
    """Whether torchcodec imports here (it needs FFmpeg's shared libraries as well as the wheel)."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def hardware_decoding(device: torch.device | str) -> tuple[bool, str]:
    """(True, "") if this process can decode with NVDEC on `device`, else (False, why in plain words)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"the analysis runs on {device.type}, not a CUDA device"
    if not torch.cuda.is_available():
        return False, "CUDA is not available to this process"
    if not torchcodec_available():
        return False, "torchcodec is not installed (requirements/gpu.txt)"
    import torchcodec

    built_for = _CUDA_TAG.search(torchcodec.__version__)
    if built_for is None:
        return False, f"torchcodec {torchcodec.__version__} was built without CUDA"
    cuda = f"{built_for.group(1)}.{built_for.group(2)}"
    if cuda != torch.version.cuda:
        return False, f"torchcodec was built for CUDA {cuda} but torch for CUDA {torch.version.cuda}"
    return True, ""


def choose_decoder(info: VideoInfo, device: torch.device | str) -> DecoderChoice:
    """NVDEC when `device` is CUDA and NVDEC decodes this file; otherwise the CPU, saying why.

    On a CPU device the CPU is the normal path and carries no reason.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return DecoderChoice(CPU)
    usable, why = hardware_decoding(device)
    if not usable:
        return _cpu_because(why)
    if info.codec not in NVDEC_CODECS:
        return _cpu_because(f"{info.codec} is not decoded by NVDEC")
    unsupported = _unsupported_pixel_format(info)
    if unsupported:
        return _cpu_because(unsupported)
    return DecoderChoice(NVDEC)


def _cpu_because(why: str) -> DecoderChoice:
    return DecoderChoice(CPU, Reason("cpu_decoding", f"{why}; frames were decoded on the CPU"))


def _unsupported_pixel_format(info: VideoInfo) -> str | None:
    """Why NVDEC cannot take this stream's pixel format (chroma layout, bit depth), None when it can."""
    with open_container(info.path) as container:
        pixels = video_stream(container, name=info.path).codec_context.format
    if pixels is None:
        return f"the pixel format of this {info.codec} stream is unknown, so NVDEC is not tried"
    if pixels.is_rgb:
        return f"{info.codec} in {pixels.name} (RGB) is not decoded by NVDEC"
    subsampled = (pixels.chroma_width(64), pixels.chroma_height(64)) == (32, 32)
    if len(pixels.components) > 2 and not subsampled:  # one or two components: grey (with alpha)
        return f"{info.codec} in {pixels.name} (chroma not 4:2:0) is not decoded by every NVDEC"
    depth = max(c.bits for c in pixels.components)
    if depth > 8 and info.codec not in _HIGH_DEPTH_CODECS:
        return f"{depth}-bit {info.codec} ({pixels.name}) is not decoded by NVDEC"
    return None


class DeviceVideoReader(StreamingReader):
    """Streams frames in batches on `device` through torchcodec; the contract of VideoReader otherwise.

    Iterating yields DeviceFrameBatch objects, one batch alive at a time from the reader's side. With
    `frame_stride=k` only every k-th source frame is converted and yielded. `threads` caps the CPU decoder's
    threads (0: FFmpeg picks; NVDEC ignores it). `problems` collects a `truncated` file and `decode_errors`;
    `frames_decoded` counts source frames passed so far. Zero decodable frames raises NoDecodableFramesError.
    `decoder_name` is "nvdec" on CUDA ("torchcodec-cpu" if torchcodec fell back for this file; then
    `fallback` says why) and "torchcodec-cpu" on the CPU.
    """

    _decode_error_unit = "frame(s)"

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 32,
        frame_stride: int = 1,
        info: VideoInfo | None = None,
        device: torch.device | str = "cuda",
        threads: int = 0,
    ) -> None:
        require_positive(batch_size=batch_size, frame_stride=frame_stride, max_side=None)
        self.device = torch.device(device)
        _require_decoder(self.device)
        self.threads = max(0, int(threads))
        self.path = check_local_file(path)
        self._identity = _identity(os.stat(self.path))  # before the probe: a later swap is then refused
        self.info = info if info is not None else probe_video(self.path)
        self.batch_size = batch_size
        self.frame_stride = frame_stride
        self.decoder_name = NVDEC if self.device.type == "cuda" else TORCHCODEC_CPU
        self.fallback: Reason | None = None
        self._reset()
        self._active: Iterator[DeviceFrameBatch] | None = None

    def output_size(self) -> tuple[int, int]:
        """(width, height) of the yielded frames: the upright display size."""
        return self.info.width, self.info.height

    def _batches(self) -> Iterator[DeviceFrameBatch]:
        with _open_probed(self.path, self._identity) as handle:
            decoder = self._open_decoder(handle)
            clock = _Clock(decoder.metadata.begin_stream_seconds_from_header)
            total = len(decoder)
            span = self.batch_size * self.frame_stride
            for start in range(0, total, span):
                batch = self._decode_range(decoder, clock, start=start, stop=min(start + span, total))
                if len(batch):
                    yield batch
                if self.frames_decoded < min(start + span, total):
                    break  # the decoder failed inside this range: nothing after it decodes
            self._note_fallback(decoder)
            del decoder
        self._finish(clock.last)

    def _open_decoder(self, handle: BinaryIO) -> VideoDecoder:
        from torchcodec.decoders import VideoDecoder

        try:  # exact mode: one demux pass indexes every frame, so index i is frame i even at variable rate
            return VideoDecoder(handle, seek_mode="exact", num_ffmpeg_threads=self.threads, device=self.device)
        except (RuntimeError, ValueError) as exc:  # the probe found a video: this one holds no decodable frame
            raise NoDecodableFramesError(f"no frame of {self.path} could be decoded: {_plain(exc)}") from None

    def _decode_range(self, decoder: VideoDecoder, clock: _Clock, *, start: int, stop: int) -> DeviceFrameBatch:
        """Every frame_stride-th frame of [start, stop); consecutive ranges decode on without seeking."""
        try:
            frames = decoder.get_frames_in_range(start, stop, self.frame_stride)
        except RuntimeError as exc:
            return self._salvage(decoder, clock, start=start, stop=stop, error=exc)
        self.frames_decoded = stop
        indices = np.arange(start, stop, self.frame_stride, dtype=np.int64)
        return DeviceFrameBatch(indices=indices, times_s=clock.times(frames.pts_seconds), frames=frames.data)

    def _salvage(
        self, decoder: VideoDecoder, clock: _Clock, *, start: int, stop: int, error: RuntimeError
    ) -> DeviceFrameBatch:
        """After a failed range: the frames before the failure, one at a time; the failure ends decoding."""
        kept = []
        for index in range(start, stop, self.frame_stride):
            try:
                kept.append((index, decoder.get_frame_at(index)))
            except RuntimeError as exc:
                error = exc
                break
            self.frames_decoded = index + 1
        self._note_failure(error, total=len(decoder))
        indices = np.array([index for index, _ in kept], dtype=np.int64)
        times = clock.times(torch.tensor([frame.pts_seconds for _, frame in kept], dtype=torch.float64))
        height, width = self.info.height, self.info.width
        frames = (torch.stack([frame.data for _, frame in kept]) if kept
                  else torch.empty((0, 3, height, width), dtype=torch.uint8, device=self.device))
        return DeviceFrameBatch(indices=indices, times_s=times, frames=frames)

    def _note_failure(self, error: RuntimeError, *, total: int) -> None:
        """A failure with frames still to come is a cut; at the very end, a decode error."""
        expected = max(total, self.info.frames if self.info.frames_exact else 0)
        if expected - self.frames_decoded > INDEX_SLACK_FRAMES:
            self._note_truncated(f"the decoder failed: {_plain(error)}")
        else:
            self._decode_errors.append(_plain(error))

    def _note_fallback(self, decoder: VideoDecoder) -> None:
        if self.device.type == "cuda" and decoder.cpu_fallback:
            self.decoder_name = TORCHCODEC_CPU
            self.fallback = Reason("cpu_decoding", f"NVDEC could not decode this file ({decoder.cpu_fallback}); "
                                                   "frames were decoded on the CPU")

    def _stated_end_s(self) -> float | None:
        with open_container(self.path) as container:
            return self._stated_length(video_stream(container, name=self.path))


class _Clock:
    """Seconds since the stream's start from torchcodec's pts seconds (start from the header, else the
    first frame), as VideoReader measures them."""

    def __init__(self, start_s: float | None) -> None:
        self._start = start_s
        self.last: float | None = None

    def times(self, pts_seconds: torch.Tensor) -> np.ndarray:
        times = pts_seconds.detach().cpu().numpy().astype(np.float64)
        if times.size and self._start is None:
            self._start = float(times[0])
        times = times - (self._start or 0.0)
        if times.size:
            self.last = float(times[-1])
        return times


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


@contextmanager
def _open_probed(path: Path, identity: tuple[int, int, int, int]) -> Iterator[BinaryIO]:
    """The file that was checked and probed, opened for reading; refused if it is no longer that file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsupportedFormatError(f"{path} cannot be opened: {exc.strerror or exc}") from None
    handle = os.fdopen(descriptor, "rb")
    try:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode) or _identity(opened) != identity:
            raise UnsupportedFormatError(f"{path} changed after it was checked; give the video file again")
        yield handle
    finally:
        handle.close()


def _require_decoder(device: torch.device) -> None:
    if device.type == "cuda":
        usable, why = hardware_decoding(device)
        if not usable:
            raise DeviceUnavailableError(f"NVDEC decoding is not available: {why}")
    elif device.type != "cpu":
        raise InvalidOptionsError(f"torchcodec decodes on cpu or cuda, not {device.type}")
    elif not torchcodec_available():
        raise DeviceUnavailableError("torchcodec is not installed (requirements/gpu.txt)")


def _plain(exc: BaseException) -> str:
    """torchcodec's message without the C++ source location in front."""
    return _SOURCE_LOCATION.sub("", str(exc)).strip()
