"""Probing a video: what it is and how long, from the container plus its first decoded frame."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from shared.errors import NoDecodableFramesError, NotAVideoError
from shared.media.limits import UNLIMITED, VideoLimits
from shared.media.source import check_local_file, container_name, open_container, video_stream

# Packets tried before the probe gives up finding a first decodable frame (a stream may begin
# with frames that reference a missing keyframe).
_PROBE_PACKET_LIMIT = 600
_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")
# FFmpeg's own assumption when a stream states no rate at all.
_FALLBACK_FPS = 25.0


@dataclass(frozen=True)
class VideoInfo:
    """What a probe found. `width`/`height` are the display size after `rotation` is applied."""

    path: Path
    container: str
    codec: str
    width: int
    height: int
    rotation: int
    fps: float
    frames: int
    frames_exact: bool
    duration_s: float
    has_audio: bool

    def to_dict(self) -> dict:
        """JSON-ready fields (the path as a string)."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def probe_video(path: str | Path, *, limits: VideoLimits = UNLIMITED, name: str | None = None) -> VideoInfo:
    """Probe a local video file without decoding it all (the first frame or two are decoded).

    Raises VideoNotFoundError, UnsupportedFormatError, NotAVideoError or NoDecodableFramesError
    with a message that says what was found, and a VideoLimitError subclass for a video beyond
    `limits` (callers that take untrusted files pass the configured ones). The stream count and the
    header's frame size are checked before any frame is decoded. Messages call the file `name` (the web
    passes the client's file name, so they never show the server's storage path), by default its path.
    """
    local = check_local_file(path, name=name)
    name = name or str(local)
    with open_container(local, name=name) as container:
        limits.check_streams(len(container.streams), name=name)
        stream = video_stream(container, name=name)
        limits.check_frame_size(stream.codec_context.width, stream.codec_context.height, name=name)
        first, second = _first_frames(container, stream, name=name)
        if container.format.name == "gif" and second is None:
            raise NotAVideoError(f"{name} is a GIF with a single frame: a still image, not a video")
        info = _info(container, stream, first, path=local)
    _check_info(info, limits, name=name)
    return info


def _check_info(info: VideoInfo, limits: VideoLimits, *, name: str) -> None:
    """The limits again on what the probe found: a decoded frame's size (a header can understate it)."""
    limits.check_frame_size(info.width, info.height, name=name)
    limits.check_duration(info.duration_s, name=name)
    limits.check_fps(info.fps, name=name)


def _first_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, *, name: str
) -> tuple[av.VideoFrame, av.VideoFrame | None]:
    """The first two decodable frames (the second None when there is only one)."""
    frames: list[av.VideoFrame] = []
    last_error = "the stream ended"
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= _PROBE_PACKET_LIMIT and not frames:
                break
            try:
                frames.extend(packet.decode())
            except av.error.FFmpegError as exc:
                last_error = str(exc)
            if len(frames) >= 2:
                break
    except av.error.FFmpegError as exc:
        last_error = str(exc)
    if not frames:
        raise NoDecodableFramesError(
            f"{name} has a {stream.codec_context.name} video stream but no frame of it could be decoded ({last_error})"
        )
    return frames[0], frames[1] if len(frames) > 1 else None


def _info(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, first: av.VideoFrame, *, path: Path
) -> VideoInfo:
    rotation = _rotation(stream, first)
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width
    duration = _duration_s(container, stream)
    fps = _fps(stream, duration)
    frames, exact = _frame_count(stream, duration=duration, fps=fps)
    if duration <= 0:
        duration = frames / fps
    return VideoInfo(
        path=path,
        container=container_name(container),
        codec=stream.codec_context.name,
        width=width,
        height=height,
        rotation=rotation,
        fps=fps,
        frames=frames,
        frames_exact=exact,
        duration_s=duration,
        has_audio=bool(container.streams.audio),
    )


def _rotation(stream: av.video.stream.VideoStream, frame: av.VideoFrame) -> int:
    """Clockwise degrees (0/90/180/270) that make the frame upright.

    PyAV reports the display matrix as a counter-clockwise angle; the legacy `rotate` tag (older
    files, clockwise) is the fallback when a frame carries no matrix.
    """
    counter_clockwise = frame.rotation or 0
    if counter_clockwise:
        return int(round(-counter_clockwise / 90.0)) % 4 * 90
    tag = stream.metadata.get("rotate", "")
    try:
        return int(round(float(tag) / 90.0)) % 4 * 90
    except ValueError:
        return 0


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """The video stream's own duration if stated, else the container's (0.0 when neither is)."""
    own = stream_duration_s(stream)
    if own is not None:
        return own
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def stream_duration_s(stream: av.video.stream.VideoStream) -> float | None:
    """The duration the stream itself states (its header, or Matroska's DURATION tag), else None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tagged = _parse_duration_tag(stream.metadata.get("DURATION") or stream.metadata.get("duration") or "")
    return tagged or None


def _parse_duration_tag(text: str) -> float:
    match = _DURATION_TAG.match(text.strip())
    if not match:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _fps(stream: av.video.stream.VideoStream, duration: float) -> float:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and float(rate) > 0 and math.isfinite(float(rate)):
            return float(Fraction(rate))
    if stream.frames and duration > 0:
        return stream.frames / duration
    return _FALLBACK_FPS


def _frame_count(stream: av.video.stream.VideoStream, *, duration: float, fps: float) -> tuple[int, bool]:
    """The index's frame count when the container has one, else duration × fps (at least 1)."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), True
    return max(1, int(round(duration * fps))), False
