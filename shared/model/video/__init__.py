"""The engine's video input: probe a local file, then stream its frames in batches.

Only local regular files in an allow-listed container are read (see `shared.media.source`); frames come out
upright RGB with their stream timestamps, one batch at a time, so memory does not grow with the
length of the video.
"""
from shared.files import sha256_file
from shared.media import ALLOWED_FORMATS, SUPPORTED_DESCRIPTION, VideoInfo, probe_video
from shared.model.video.reader import VideoReader

__all__ = ["ALLOWED_FORMATS", "SUPPORTED_DESCRIPTION", "VideoInfo", "VideoReader", "probe_video", "sha256_file"]
