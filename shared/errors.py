"""Typed engine errors. Each carries a stable `code` and a message a person can act on.

The CLI prints them as one line, the web app maps them to HTTP status, the worker to a failed job.
"""
from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InputError(EngineError):
    """The input (a video or an option) cannot be used; retrying will not help."""

    code = "invalid_input"


class VideoNotFoundError(InputError):
    code = "video_not_found"


class UnsupportedFormatError(InputError):
    """Container outside the allow-list, a network URL, a playlist or concat list."""

    code = "unsupported_format"


class NotAVideoError(InputError):
    """No video stream (audio only, an image, random bytes, an empty file)."""

    code = "not_a_video"


class NoDecodableFramesError(InputError):
    code = "no_decodable_frames"


class InvalidOptionsError(InputError):
    code = "invalid_options"


class VideoLimitError(InputError):
    """The video is readable but beyond one of the server's limits (shared.media.limits)."""

    code = "video_limit_exceeded"


class VideoTooLargeError(VideoLimitError):
    """Frames larger than MAX_VIDEO_PIXELS."""

    code = "video_too_large"


class VideoTooLongError(VideoLimitError):
    """Longer than MAX_VIDEO_DURATION_S."""

    code = "video_too_long"


class FrameRateTooHighError(VideoLimitError):
    """More frames a second than MAX_VIDEO_FPS."""

    code = "frame_rate_too_high"


class TooManyStreamsError(VideoLimitError):
    """More streams in the container than MAX_VIDEO_STREAMS."""

    code = "too_many_streams"


class WeightsError(EngineError):
    code = "weights_error"


class WeightsNotFoundError(WeightsError):
    code = "weights_not_found"


class CheckpointMismatchError(WeightsError):
    """The file is a state dict, but not of the architecture it claims or is named for."""

    code = "checkpoint_mismatch"


class CheckpointFormatError(WeightsError):
    """Not loadable with weights_only=True, or not a state dict at all."""

    code = "checkpoint_invalid"


class ChecksumMismatchError(WeightsError):
    code = "checksum_mismatch"


class DeviceUnavailableError(EngineError):
    code = "device_unavailable"


class AnalysisCancelled(EngineError):
    code = "cancelled"
