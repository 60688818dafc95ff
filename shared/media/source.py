"""Opening a video safely: local regular files only, no network protocols, a container allow-list.

FFmpeg can read URLs, playlists that pull in other files, concat lists, device inputs and
image sequences. None of that belongs in a service that analyses uploaded files, so:

- the path must name an existing local regular file (no ``protocol:`` prefix, no device, no FIFO);
- FFmpeg reads it through a Python file object, and every attempt of a demuxer to open a
  further file or URL is refused (``io_open``), with ``protocol_whitelist=file`` as a second lock;
- the demuxer FFmpeg detects from the content (not the extension) must be on the allow-list.

A single still image (PNG, JPEG, a one-frame GIF, ...) is not a video: NotAVideoError.

Every error message names the file by `name` where the caller gives one (the web passes the client's own
file name, so a message never shows where the server stored it), else by its path.
"""
from __future__ import annotations

import re
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import av

from shared.errors import NotAVideoError, UnsupportedFormatError, VideoNotFoundError

# PyAV's demuxer name -> the short container name reported in VideoInfo.
ALLOWED_FORMATS: dict[str, str] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",  # refined to mov / 3gp by the major brand
    "matroska,webm": "matroska",
    "avi": "avi",
    "asf": "asf",
    "flv": "flv",
    "gif": "gif",
    "mpegts": "mpegts",
}
SUPPORTED_DESCRIPTION = "mp4, mov, 3gp, mkv, webm, avi, wmv (asf), flv, gif, mpeg-ts"
# File name extensions of those containers: how a folder of videos is told from other files (a batch
# picks files by name; each one is still probed by content before anything is analysed).
VIDEO_FILE_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "3gp", "3g2", "mkv", "webm", "avi", "wmv", "asf", "flv",
                                   "gif", "ts", "mts", "m2ts"})

# Demuxers that read other files or URLs, or synthesise input: refused by name.
_REFERENCING_FORMATS = {"hls", "concat", "ffconcat", "dash", "lavfi", "sdp", "rtsp", "rtp", "tee"}
# png_pipe, jpeg_pipe, webp_pipe, ...: one still image each. image2 would read a numbered
# sequence, but nested opens are refused, so here it can only ever hold the one image.
_IMAGE_SUFFIX = "_pipe"
_IMAGE_SEQUENCE = "image2"
_TEXT_FORMATS = {"tty"}  # FFmpeg renders text files (.txt, .nfo, .ans) as a teletype "video"
_PROTOCOL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_SNIFFED_LISTS = {
    b"#EXTM3U": "an HLS / M3U playlist",
    b"ffconcat": "an FFmpeg concat list",
    b"<?xml": "an XML document (a DASH manifest or a playlist?)",
    b"<MPD": "a DASH manifest",
}
_OPEN_OPTIONS = {"protocol_whitelist": "file"}


class _NestedOpenRefused(Exception):
    """Raised inside FFmpeg's io_open callback: a demuxer wanted another file or URL."""


def check_local_file(path: str | Path, *, name: str | None = None) -> Path:
    """The path as a Path if it names an existing, non-empty local regular file; typed errors otherwise."""
    text = str(path)
    shown = name or text
    match = _PROTOCOL_PREFIX.match(text)
    if match:
        raise UnsupportedFormatError(f"{name or repr(text)} looks like a URL or an FFmpeg protocol "
                                     f"({match.group(0)!r}); only local video files are accepted")
    resolved = Path(text)
    try:
        info = resolved.stat()
    except FileNotFoundError:
        raise VideoNotFoundError(f"video file not found: {shown}") from None
    except OSError as exc:
        raise VideoNotFoundError(f"cannot access video file {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedFormatError(f"{shown} is not a regular file (a directory, device or pipe); give a video file")
    if info.st_size == 0:
        raise NotAVideoError(f"{shown} is empty (0 bytes); it holds no video")
    return resolved


def refuse_sniffed_lists(path: Path, *, name: str | None = None) -> None:
    """Refuse playlists and concat lists by their first bytes, before FFmpeg parses them."""
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, what in _SNIFFED_LISTS.items():
        if head.startswith(magic):
            raise UnsupportedFormatError(
                f"{name or path} is {what}, which refers to other files or URLs; give the video file itself"
            )


@contextmanager
def open_container(path: Path, *, name: str | None = None) -> Iterator[av.container.InputContainer]:
    """Open `path` with PyAV through a file object, refusing every nested open; close both on exit."""
    refuse_sniffed_lists(path, name=name)
    nested: list[str] = []
    handle: BinaryIO = path.open("rb")
    try:
        container = _open_av(handle, path=path, name=name or str(path), nested=nested)
        try:
            yield container
        finally:
            container.close()
    finally:
        handle.close()


def _open_av(handle: BinaryIO, *, path: Path, name: str, nested: list[str]) -> av.container.InputContainer:
    def refuse(url: str, flags: int, options: dict) -> None:
        nested.append(url)
        raise _NestedOpenRefused(url)

    try:
        return av.open(handle, mode="r", container_options=_OPEN_OPTIONS, io_open=refuse)
    except Exception as exc:  # PyAV raises FFmpegError subclasses, OSError, or our refusal
        if nested:
            raise UnsupportedFormatError(
                f"{name} refers to other files or URLs ({nested[0]!r}): playlists and concat lists are not accepted"
            ) from None
        raise NotAVideoError(_unreadable_message(path, exc, name=name)) from None


def _unreadable_message(path: Path, exc: Exception, *, name: str) -> str:
    if isinstance(exc, av.error.InvalidDataError):
        kind = "text" if _looks_like_text(path) else "data"
        return (
            f"{name} is not a video: FFmpeg found no readable audio or video format in it "
            f"(it looks like {kind}; if it is a video, its header is damaged)"
        )
    return f"{name} is not a video FFmpeg can read ({exc})"


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def video_stream(container: av.container.InputContainer, *, name: str | Path) -> av.video.stream.VideoStream:
    """The video stream to analyse, after checking the detected format; typed errors (naming the file
    `name`) otherwise."""
    demuxer = container.format.name
    if demuxer in _REFERENCING_FORMATS:
        raise UnsupportedFormatError(
            f"{name} is read by FFmpeg's {demuxer!r} demuxer (a playlist, list or image sequence); give a video file"
        )
    if demuxer in _TEXT_FORMATS:
        raise NotAVideoError(f"{name} is a text file, not a video")
    if demuxer.endswith(_IMAGE_SUFFIX) or demuxer == _IMAGE_SEQUENCE:
        raise NotAVideoError(f"{name} is a single still image ({_image_kind(container)}), not a video")
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        raise NotAVideoError(f"{name} has no video stream: it contains {_describe_streams(container)}")
    if demuxer not in ALLOWED_FORMATS:
        raise UnsupportedFormatError(
            f"{name} is a {container.format.long_name} ({demuxer}) file, which is not accepted; "
            f"supported containers: {SUPPORTED_DESCRIPTION}"
        )
    return streams[0]


def _image_kind(container: av.container.InputContainer) -> str:
    if container.format.name.endswith(_IMAGE_SUFFIX):
        return container.format.name.removesuffix(_IMAGE_SUFFIX)
    video = container.streams.video
    return video[0].codec_context.name if video else container.format.name


def _describe_streams(container: av.container.InputContainer) -> str:
    parts = []
    for stream in container.streams:
        codec = stream.codec_context.name if stream.codec_context is not None else "unknown codec"
        what = "a cover picture" if stream.type == "video" else f"{_article(stream.type)} {stream.type} stream"
        parts.append(f"{what} ({codec})")
    if not parts:
        return "no streams at all"
    return ", ".join(parts) + " but no video stream"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def container_name(container: av.container.InputContainer) -> str:
    """The short container name: mp4 / mov / 3gp by the ISO major brand, else the allow-list's name."""
    name = ALLOWED_FORMATS.get(container.format.name, container.format.name)
    if name != "mp4":
        return name
    brand = container.metadata.get("major_brand", "").strip().lower()
    if brand == "qt":
        return "mov"
    if brand.startswith(("3gp", "3g2")):
        return "3gp"
    return "mp4"
