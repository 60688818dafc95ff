"""Video files as untrusted input, without decoding frames: check a local file, open it safely, probe it.

Torch-free and numpy-free (PyAV only), so the web app can probe uploads before queueing them;
the engine's frame reader (`shared.model.video`) builds on it.
"""
from shared.media.probe import VideoInfo, probe_video
from shared.media.source import ALLOWED_FORMATS, SUPPORTED_DESCRIPTION, VIDEO_FILE_EXTENSIONS

__all__ = ["ALLOWED_FORMATS", "SUPPORTED_DESCRIPTION", "VIDEO_FILE_EXTENSIONS", "VideoInfo", "probe_video"]
