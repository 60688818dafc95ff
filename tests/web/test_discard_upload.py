"""A refused upload is removed without asking the store unless it was published there: a bad file is the
client's 4xx even while the store is down, and a withdrawn published upload leaves nothing in the bucket."""
from __future__ import annotations

import socket
from dataclasses import replace

from shared.storage import make_store
from tests.web.conftest import build_app, uploads


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is not a video " * 100)
    return path


def test_a_file_refused_at_probing_is_the_clients_error_while_the_store_is_down(s3_settings, tmp_path):
    down = replace(s3_settings, s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    app = build_app(down)
    client = app.test_client()
    bad = _not_a_video(tmp_path)

    with open(bad, "rb") as video:
        response = client.post("/api/v1/jobs", data={"video": (video, bad.name)})
    batch = client.post("/api/v1/batches", json={"name": "night"}).json
    with open(bad, "rb") as video:
        item = client.post(batch["links"]["items"], data={"video": (video, bad.name)})

    assert 400 <= response.status_code < 500, response.json
    assert item.status_code == 201 and item.json["status"] == "failed", item.json
    assert uploads(down) == []
    app.extensions["deepfake.db"]["engine"].dispose()


def test_a_published_upload_withdrawn_for_a_missing_broker_leaves_the_bucket(s3_settings, video_clip):
    app = build_app(replace(s3_settings, redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))

    with open(video_clip, "rb") as video:
        response = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4")})

    assert response.status_code == 503 and response.json["error"]["code"] == "queue_unavailable", response.json
    assert make_store(s3_settings).list("uploads") == [] and uploads(s3_settings) == []
    app.extensions["deepfake.db"]["engine"].dispose()


def test_deleting_a_job_while_the_store_is_down_keeps_it_whole_and_a_later_delete_finishes(s3_settings, video_clip):
    from tests.web.conftest import move_job

    app = build_app(s3_settings)
    client = app.test_client()
    with open(video_clip, "rb") as video:
        job_id = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4")}).json["id"]
    sessions = app.extensions["deepfake.db"]["session_factory"]
    move_job(sessions, s3_settings, job_id, "succeeded")
    assert make_store(s3_settings).list("uploads") != []
    down = build_app(replace(s3_settings, s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}"))

    refused = down.test_client().delete(f"/api/v1/jobs/{job_id}")

    assert refused.status_code == 503 and refused.json["error"]["code"] == "storage_unavailable", refused.json
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200  # the job, its result and its upload kept
    assert make_store(s3_settings).list("uploads") != []
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert make_store(s3_settings).list("uploads") == []
    for each in (app, down):
        each.extensions["deepfake.db"]["engine"].dispose()
