"""Limits on what a probed video may be: frame size, duration, frame rate, stream count.

A file within the upload size can still be costly to analyse: an 8K frame is 100 MB decoded, a
header may claim days of video or thousands of frames a second, a container may hold thousands of
streams. `probe_video` checks these limits as soon as it knows each value (stream count when the
container is open, frame size from the header and again from the first decoded frame), so a refused
file is never queued and never analysed. The values come from Settings (the web app and the engine
both pass them); a limit of 0 is no limit.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.errors import FrameRateTooHighError, TooManyStreamsError, VideoTooLargeError, VideoTooLongError


@dataclass(frozen=True)
class VideoLimits:
    """The largest video accepted; each field 0 means unlimited."""

    max_pixels: int = 0  # MAX_VIDEO_PIXELS: width × height of one frame
    max_duration_s: float = 0  # MAX_VIDEO_DURATION_S
    max_fps: float = 0  # MAX_VIDEO_FPS
    max_streams: int = 0  # MAX_VIDEO_STREAMS: every stream of the container (video, audio, subtitles, data)

    @classmethod
    def from_settings(cls, settings: object) -> "VideoLimits":
        """The limits a Settings object configures (duck-typed: shared.media does not import settings)."""
        return cls(max_pixels=settings.max_video_pixels, max_duration_s=settings.max_video_duration_s,
                   max_fps=settings.max_video_fps, max_streams=settings.max_video_streams)

    def check_streams(self, count: int, *, name: str) -> None:
        if self.max_streams and count > self.max_streams:
            raise TooManyStreamsError(f"{name} has {count} streams; this server accepts at most "
                                      f"{self.max_streams} (MAX_VIDEO_STREAMS)")

    def check_frame_size(self, width: int, height: int, *, name: str) -> None:
        if self.max_pixels and width * height > self.max_pixels:
            raise VideoTooLargeError(f"{name} has {width}×{height} frames ({width * height:,} pixels); this server "
                                     f"accepts at most {self.max_pixels:,} pixels a frame (MAX_VIDEO_PIXELS; "
                                     f"3840×2160 is {3840 * 2160:,})")

    def check_duration(self, duration_s: float, *, name: str) -> None:
        if self.max_duration_s and duration_s > self.max_duration_s:
            raise VideoTooLongError(f"{name} lasts {_hms(duration_s)}; this server accepts at most "
                                    f"{_hms(self.max_duration_s)} (MAX_VIDEO_DURATION_S={self.max_duration_s:g})")

    def check_fps(self, fps: float, *, name: str) -> None:
        if self.max_fps and fps > self.max_fps:
            raise FrameRateTooHighError(f"{name} has {fps:g} frames per second; this server accepts at most "
                                        f"{self.max_fps:g} (MAX_VIDEO_FPS)")


UNLIMITED = VideoLimits()


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{seconds % 60:04.1f}"
