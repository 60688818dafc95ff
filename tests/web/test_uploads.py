"""Uploads stream to disk in chunks: bounded memory, hashed on the way, server-chosen names."""
from __future__ import annotations

import hashlib
import subprocess
import threading

import psutil
import pytest

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


class PeakRss:
    """Samples this process's resident memory in the background while a block runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.baseline = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


@pytest.mark.slow
def test_a_large_upload_streams_without_growing_memory(client, settings, video_clip, tmp_path):
    big = _ts_video(tmp_path / "big.ts", source=video_clip, megabytes=96)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()

    with open(big, "rb") as video, PeakRss() as rss:
        response = client.post("/api/v1/jobs", data={"video": (video, "big.ts")})

    assert response.status_code == 202, response.json
    assert response.json["upload"]["sha256"] == expected
    assert response.json["upload"]["size"] == big.stat().st_size
    # Held whole, 96 MB would show up (and werkzeug's test client spools its body to a temp file).
    assert rss.growth_mb < 40, f"RSS grew {rss.growth_mb:.0f} MB during a 96 MB upload"
