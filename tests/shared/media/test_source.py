"""Inputs shared.media refuses before any frame is decoded (shared/media/source.py), each with a typed error."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.errors import InputError, NotAVideoError, UnsupportedFormatError, VideoNotFoundError
from shared.media import probe_video
from shared.media.limits import VideoLimits
from tests.media import face_photo, make_face_clip


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("inputs") / "clip.mp4", seconds=1.0, fps=10.0,
                          width=160, height=120)


# --- not a local regular file ----------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "http://example.com/video.mp4", "https://example.com/v.mp4", "concat:a.mp4|b.mp4", "file:clip.mp4",
    "pipe:0", "rtmp://host/live", "lavfi:testsrc", "tcp://127.0.0.1:9/x", "hls+http://example.com/a.m3u8",
])
def test_urls_and_protocol_prefixes_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedFormatError, match="only local video files"):
        probe_video(name)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(VideoNotFoundError, match="not found"):
        probe_video(tmp_path / "absent.mp4")


def test_directory_device_and_fifo_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "video.fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, Path("/dev/null"), fifo):
        with pytest.raises(UnsupportedFormatError, match="not a regular file"):
            probe_video(path)


def test_symlink_to_a_video_is_a_local_file(tmp_path: Path, clip: Path) -> None:
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    assert probe_video(link).frames == 10


# --- playlists, lists and containers off the allow-list --------------------------------------
def test_hls_playlist_is_refused(tmp_path: Path, clip: Path) -> None:
    playlist = tmp_path / "play.m3u8"
    _ffmpeg("-i", str(clip), "-c", "copy", "-f", "hls", "-hls_time", "0.5", str(playlist))
    with pytest.raises(UnsupportedFormatError, match="playlist"):
        probe_video(playlist)


def test_playlist_renamed_to_mp4_is_still_refused(tmp_path: Path) -> None:
    renamed = tmp_path / "innocent.mp4"
    renamed.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://example.com/seg0.ts\n")
    with pytest.raises(UnsupportedFormatError, match="refers to other files or URLs"):
        probe_video(renamed)


def test_ffconcat_list_is_refused(tmp_path: Path, clip: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"ffconcat version 1.0\nfile '{clip}'\nfile '{clip}'\n")
    with pytest.raises(UnsupportedFormatError, match="concat list"):
        probe_video(listing)


def test_allow_list_uses_the_detected_format_not_the_extension(tmp_path: Path, clip: Path) -> None:
    nut_named_mp4 = tmp_path / "disguised.mp4"
    _ffmpeg("-i", str(clip), "-c:v", "mpeg4", "-f", "nut", str(nut_named_mp4))
    with pytest.raises(UnsupportedFormatError, match=r"\(nut\).*supported containers"):
        probe_video(nut_named_mp4)
    mp4_named_txt = tmp_path / "misnamed.txt"
    mp4_named_txt.write_bytes(clip.read_bytes())
    assert probe_video(mp4_named_txt).container == "mp4"


# --- not a video ------------------------------------------------------------------------------
def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(NotAVideoError, match="empty"):
        probe_video(empty)


def test_text_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(NotAVideoError, match="looks like text"):
        probe_video(text)


@pytest.mark.parametrize("name", ["notes.txt", "readme.nfo", "art.ans"])
def test_text_file_ffmpeg_would_render_as_teletype(tmp_path: Path, name: str) -> None:
    text = tmp_path / name
    text.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(NotAVideoError, match="(a text file|looks like text)"):
        probe_video(text)


def test_random_bytes(tmp_path: Path) -> None:
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(NotAVideoError, match="not a video"):
        probe_video(noise)


@pytest.mark.parametrize(("suffix", "kind"), [(".png", "png"), (".jpg", "jpeg"), (".webp", "webp")])
def test_still_image_is_not_a_video(tmp_path: Path, suffix: str, kind: str) -> None:
    image = tmp_path / f"photo{suffix}"
    Image.fromarray(face_photo("astronaut")).save(image)
    with pytest.raises(NotAVideoError, match=f"single still image \\(m?{kind}\\), not a video"):
        probe_video(image)


def test_single_frame_gif_is_a_still_image(tmp_path: Path) -> None:
    still = tmp_path / "still.gif"
    Image.fromarray(face_photo("astronaut")).resize((64, 64)).save(still)
    with pytest.raises(NotAVideoError, match="single frame"):
        probe_video(still)


@pytest.mark.parametrize(("name", "codec"), [("tone.m4a", "aac"), ("tone.mp3", "mp3")])
def test_audio_only_says_there_is_no_video_stream(tmp_path: Path, name: str, codec: str) -> None:
    audio = tmp_path / name
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(audio))
    with pytest.raises(NotAVideoError, match=f"an audio stream \\({codec}.*\\) but no video stream"):
        probe_video(audio)


def test_mp3_cover_art_is_not_a_video_stream(tmp_path: Path) -> None:
    cover, song = tmp_path / "cover.png", tmp_path / "song.mp3"
    Image.fromarray(face_photo("astronaut")).resize((64, 64)).save(cover)
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1",
            "-c:v", "png", "-disposition:v", "attached_pic", str(song))
    with pytest.raises(NotAVideoError, match="a cover picture .* but no video stream"):
        probe_video(song)


def test_audio_track_is_reported(tmp_path: Path, clip: Path) -> None:
    with_audio = tmp_path / "with_audio.mp4"
    _ffmpeg("-i", str(clip), "-f", "lavfi", "-i", "sine=duration=1", "-c:v", "copy", "-c:a", "aac",
            "-shortest", str(with_audio))
    assert probe_video(with_audio).has_audio is True
    assert probe_video(clip).has_audio is False


# --- the name messages use ----------------------------------------------------------------------
def _refusal_message(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as refused:
        probe_video(path, **kwargs)
    return refused.value.message


def test_every_refusal_names_the_file_by_the_name_given_never_its_path(tmp_path: Path, clip: Path) -> None:
    stored = tmp_path / "server-side-storage"
    stored.mkdir()
    text, playlist, still, short = (stored / "a", stored / "b", stored / "c", stored / "d")
    text.write_text("these are meeting notes, not a video\n" * 20)
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nhttp://example.com/seg0.ts\n")
    Image.fromarray(face_photo("astronaut")).save(still, format="png")
    short.write_bytes(clip.read_bytes())
    cases = [(text, {}), (playlist, {}), (still, {}), (short, {"limits": VideoLimits(max_duration_s=0.5)}),
             (stored, {})]

    for path, kwargs in cases:
        message = _refusal_message(path, name="'holiday.mp4'", **kwargs)
        assert "'holiday.mp4'" in message and str(stored) not in message, message
        assert str(path) in _refusal_message(path, **kwargs)  # without a name: the path, as before
