"""The web's bounded cache of artifacts fetched from object storage (web.storage, shared.storage.CachedStore).

Against moto's S3 server on loopback: a worker on its own DATA_DIR publishes each job's artifacts to the
bucket, the web serves them and keeps copies in DATA_DIR/cache/fetched only up to WEB_ARTIFACT_CACHE_MB.
"""
from __future__ import annotations

import random
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

from shared.db import jobs as job_store
from shared.db.artifacts import write_artifacts
from shared.model.result import Artifact
from shared.settings import Settings
from shared.storage import ARTIFACTS, make_store
from tests.web.conftest import build_app, engine_result, move_job, record_job

MB = 1024 * 1024
PICTURE = "heatmap-t0-w0.png"


def _files(folder: Path) -> dict[Path, int]:
    """Each finished file under `folder` with its size (temporary `.fetch-*` downloads left out)."""
    if not folder.exists():
        return {}
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _cache(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "fetched"


def _cached_jobs(settings: Settings) -> set[str]:
    """The jobs with a file in the cache (DATA_DIR/cache/fetched/artifacts/<job>/<attempt>/<name>)."""
    return {path.parent.parent.name for path in _files(_cache(settings))}


def _payload(size: int, seed: int) -> bytes:
    """`size` bytes that differ per job, so a mixed-up or truncated file shows."""
    return random.Random(seed).randbytes(size)


def _finish(app: Flask, worker: Settings, payload: bytes) -> str:
    """A job that succeeded on the worker machine, its one artifact published to the bucket; its id."""
    sessions = app.extensions["deepfake.db"]["session_factory"]
    job_id = record_job(sessions, owner=worker.owner)
    with sessions() as session:
        claimed = job_store.claim_job(session=session, job_id=job_id, worker="test-worker", stale_after_s=60)
        result = replace(engine_result(), artifacts=[Artifact(PICTURE, "image/png", payload, 0, "heatmap")])
        stored = write_artifacts(artifacts_dir=worker.artifacts_dir, job_id=job_id, attempt=claimed.attempts,
                                 artifacts=result.artifacts)
        for artifact in stored:
            make_store(worker).publish(f"{ARTIFACTS}/{artifact.path}")
        job_store.complete_job(session=session, job_id=job_id, result=result.to_dict(), artifacts=stored)
        session.commit()
    return job_id


@pytest.fixture
def s3_web(s3_settings: Settings, tmp_path: Path):
    """(web settings with a 1 MB cache, its app, a function that finishes a job with a payload on a worker)."""
    web = replace(s3_settings, web_artifact_cache_mb=1)
    worker = replace(s3_settings, data_dir=tmp_path / "worker-machine")
    app = build_app(web)
    yield web, app, lambda payload: _finish(app, worker, payload)
    app.extensions["deepfake.db"]["engine"].dispose()


def _url(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/artifacts/{PICTURE}"


def test_serving_many_jobs_keeps_the_cache_under_its_cap_and_the_recent_files(s3_web):
    web, app, finish = s3_web
    client = app.test_client()
    payloads = {finish(_payload(300 * 1024, seed)): _payload(300 * 1024, seed) for seed in range(5)}
    jobs = list(payloads)

    # 3 × 300 KB fit in 1 MB, 4 do not. The first job is served again from the cache before the fourth
    # is fetched: that hit makes the second job the least recently used, so the fourth evicts it.
    for job_id in [*jobs[:3], jobs[0], jobs[3]]:
        response = client.get(_url(job_id))
        assert response.status_code == 200 and response.data == payloads[job_id]
        assert sum(_files(_cache(web)).values()) <= 1 * MB
    assert _cached_jobs(web) == {jobs[0], jobs[2], jobs[3]}

    assert client.get(_url(jobs[4])).data == payloads[jobs[4]]
    assert _cached_jobs(web) == {jobs[0], jobs[3], jobs[4]}
    assert _files(web.artifacts_dir) == {}  # nothing fetched lands among the working copies


def test_a_hit_keeps_the_etag_so_a_video_can_go_on_seeking(s3_web):
    """Marking a file used must not change its mtime: the ETag is made from it, and If-Range needs it."""
    _, app, finish = s3_web
    client = app.test_client()
    job_id = finish(_payload(64 * 1024, 1))
    etag = client.get(_url(job_id)).headers["ETag"]

    again = client.get(_url(job_id), headers={"Range": "bytes=10-19", "If-Range": etag})
    assert again.status_code == 206 and again.headers["ETag"] == etag
    assert client.get(_url(job_id), headers={"If-None-Match": etag}).status_code == 304


def test_a_copy_fetched_again_keeps_the_etag(s3_web):
    """Evicted and fetched again (or fetched by another web machine), the copy has the object's time, so
    a browser's cached copy and a video's If-Range still match."""
    web, app, finish = s3_web
    client = app.test_client()
    job_id = finish(_payload(50_000, 7))
    etag = client.get(_url(job_id)).headers["ETag"]
    evicted = list(_files(_cache(web)))
    assert evicted
    for path in evicted:
        path.unlink()
    again = client.get(_url(job_id), headers={"If-None-Match": etag})
    assert again.status_code == 304 and _files(_cache(web))  # fetched again, and still the same ETag


def test_a_file_evicted_while_its_response_streams_is_delivered_whole(s3_web):
    web, app, finish = s3_web
    client = app.test_client()
    big = _payload(4 * MB, 7)  # over the cap alone: kept only until the next fetch
    big_job, small_job = finish(big), finish(_payload(1024, 8))

    streaming = client.get(_url(big_job), buffered=False)
    assert streaming.status_code == 200
    chunks = iter(streaming.response)
    first = next(chunks)
    [cached] = _files(_cache(web))

    assert client.get(_url(small_job)).status_code == 200  # this fetch evicts the big file mid-stream
    assert not cached.exists()
    received = first + b"".join(chunks)
    streaming.close()
    assert len(received) == len(big) and received == big


def test_a_copy_evicted_between_its_fetch_and_its_opening_is_fetched_again(s3_web, monkeypatch):
    import web.api

    _, app, finish = s3_web
    payload = _payload(2048, 9)
    job_id = finish(payload)
    fetch, evicted = web.api.artifact_file, []

    def evicted_once(relative):  # another request's eviction lands right after this fetch, once
        path = fetch(relative)
        if not evicted:
            path.unlink()
            evicted.append(path)
        return path

    monkeypatch.setattr(web.api, "artifact_file", evicted_once)
    response = app.test_client().get(_url(job_id))
    assert evicted and response.status_code == 200 and response.data == payload


def test_concurrent_requests_fetch_and_evict_without_errors_or_partial_files(s3_web):
    web, app, finish = s3_web
    payloads = {finish(_payload(200 * 1024, seed)): _payload(200 * 1024, seed) for seed in range(8)}
    failures: list[str] = []

    def serve(offset: int) -> None:
        client = app.test_client()
        jobs = list(payloads)
        for step in range(24):
            job_id = jobs[(offset + step) % len(jobs)]
            response = client.get(_url(job_id))
            if response.status_code != 200 or response.data != payloads[job_id]:
                failures.append(f"{job_id}: {response.status_code}, {len(response.data)} bytes")

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sum(_files(_cache(web)).values()) <= 1 * MB


def test_deleting_a_job_removes_its_cached_copies(s3_web):
    web, app, finish = s3_web
    client = app.test_client()
    job_id = finish(_payload(1024, 3))
    assert client.get(_url(job_id)).status_code == 200 and _files(_cache(web))

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    assert _files(_cache(web)) == {}


def test_local_storage_never_deletes_artifacts(settings: Settings):
    """STORAGE=local: DATA_DIR is the store itself, so a cap of 0 must remove nothing."""
    local = replace(settings, web_artifact_cache_mb=0)
    app = build_app(local)
    client = app.test_client()
    sessions = app.extensions["deepfake.db"]["session_factory"]
    jobs = [record_job(sessions, owner=local.owner) for _ in range(3)]
    for job_id in jobs:
        move_job(sessions, local, job_id, "succeeded")
    before = _files(local.artifacts_dir)
    assert len(before) == len(jobs)

    for job_id in jobs + jobs:
        assert client.get(_url(job_id)).status_code == 200
    assert _files(local.artifacts_dir) == before
    app.extensions["deepfake.db"]["engine"].dispose()
