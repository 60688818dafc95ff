"""The engine's video input: frames of a probed local file (shared.media), streamed in batches.

Only local regular files in an allow-listed container are read (see `shared.media.source`); frames come out
upright RGB with their stream timestamps, one batch at a time, so memory does not grow with the
length of the video. Probing is shared.media's (`probe_video`), hashing shared.files' (`sha256_file`).
"""
from shared.model.video.reader import VideoReader

__all__ = ["VideoReader"]
