"""Uploads stream to disk in chunks: bounded memory, hashed on the way, server-chosen names."""
from __future__ import annotations

import hashlib
import subprocess

import pytest

from tests.memory import PeakAnonymousMemory
from tests.web.conftest import uploads


def _remux(source, path, *, container):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-f", container, str(path)],
                   check=True)
    return path


@pytest.mark.parametrize("container, client_name, stored_ext", [
    ("mp4", "clip.php", ".mp4"), ("matroska", "clip.mp4", ".mkv"), ("mpegts", "../../x.sh;rm", ".ts"),
    ("avi", "noext", ".avi"),
])
def test_the_stored_extension_is_the_probed_containers(client, settings, video_clip, tmp_path, container,
                                                       client_name, stored_ext):
    source = _remux(video_clip, tmp_path / "source.bin", container=container)
    with open(source, "rb") as video:
        response = client.post("/api/v1/jobs", data={"video": (video, client_name)})

    assert response.status_code == 202, response.json
    [stored] = uploads(settings)
    assert stored.suffix == stored_ext
    assert response.json["upload"]["name"] == client_name.rsplit("/", 1)[-1]


def _ts_video(path, *, source, megabytes):
    """An MPEG-TS file of about `megabytes`: a short real clip's transport stream, repeated (TS concatenates)."""
    unit = path.with_suffix(".unit.ts")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-f", "mpegts", str(unit)],
                   check=True)
    data = unit.read_bytes()
    with open(path, "wb") as out:
        for _ in range(megabytes * 1024 * 1024 // len(data) + 1):
            out.write(data)
    return path


def _upload_growth(client, path):
    """(peak anonymous-memory growth while `path` is uploaded, the response)."""
    with open(path, "rb") as video, PeakAnonymousMemory() as memory:
        response = client.post("/api/v1/jobs", data={"video": (video, path.name)})
    assert response.status_code == 202, response.json
    return memory.growth, response


@pytest.mark.slow
def test_a_large_upload_streams_without_growing_memory(client, settings, video_clip, tmp_path):
    small = _ts_video(tmp_path / "small.ts", source=video_clip, megabytes=8)
    big = _ts_video(tmp_path / "big.ts", source=video_clip, megabytes=96)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()

    _upload_growth(client, small)  # warm up: the first request's imports, connections, parser state
    small_growth, _ = _upload_growth(client, small)
    big_growth, response = _upload_growth(client, big)

    assert response.json["upload"]["sha256"] == expected
    assert response.json["upload"]["size"] == big.stat().st_size
    # Held whole, the 88 MB more would show up in full (werkzeug's test client spools its body to a
    # temporary file, so none of it is the client's); streamed in chunks, the big upload holds no more
    # than the small one. A quarter of the difference leaves room for allocator noise.
    extra_bytes = big.stat().st_size - small.stat().st_size
    assert big_growth - small_growth < extra_bytes / 4, \
        f"{big_growth / 2**20:.0f} MB for {big.stat().st_size / 2**20:.0f} MB vs {small_growth / 2**20:.0f} MB " \
        f"for {small.stat().st_size / 2**20:.0f} MB"


def _refusal(response, status, code):
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    return response.json["error"]["message"]


def test_too_many_parts_or_a_huge_field_is_form_too_large_not_upload_too_large(client, settings, video_clip,
                                                                                queued_tasks):
    with open(video_clip, "rb") as video:
        many = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **{f"f{i}": "1" for i in range(65)}})
    assert "64 parts" in _refusal(many, 413, "form_too_large")
    with open(video_clip, "rb") as video:
        huge = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), "weights": "x" * 600_000})
    assert "MB" not in _refusal(huge, 413, "form_too_large")
    assert uploads(settings) == [] and queued_tasks() == []


@pytest.mark.parametrize("body, content_type", [
    (b"--b\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    (b'--b\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\ntruncated',
     "multipart/form-data; boundary=b"),
    (b"anything", "multipart/form-data"),
])
def test_malformed_multipart_says_so(client, settings, queued_tasks, body, content_type):
    response = client.post("/api/v1/jobs", data=body, content_type=content_type)
    assert "could not be parsed" in _refusal(response, 400, "malformed_form")
    assert uploads(settings) == [] and queued_tasks() == []
