"""POST/GET /api/v1/jobs on real SQLite and PostgreSQL, enqueueing into the real Redis."""
from __future__ import annotations

import hashlib
import uuid

import pytest

from shared.db import jobs as job_store
from tests.web.conftest import job_count, uploads


def _post(client, path, *, name="clip.mp4", **fields):
    with open(path, "rb") as video:
        return client.post("/api/v1/jobs", data={"video": (video, name), **fields})


def test_submit_stores_the_upload_records_the_job_and_enqueues_it(client, settings, video_clip, queued_tasks,
                                                                   session_factory):
    response = _post(client, video_clip, name="../../etc/my clip.MP4", sequence_length="8", face_detector="none")

    assert response.status_code == 202
    job = response.json
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert response.headers["Retry-After"] == "2"
    assert job["status"] == "queued" and job["queue_position"] == 1
    assert job["params"] == {"sequence_length": 8, "face_detector": "none"}
    data = video_clip.read_bytes()
    assert job["upload"] == {"name": "my clip.MP4", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    [stored] = uploads(settings)
    assert stored.read_bytes() == data
    assert stored.suffix == ".mp4" and uuid.UUID(stored.stem)
    assert queued_tasks() == [("deepfake.analyze_job", [job["id"]])]
    with session_factory() as session:
        row = job_store.get_job(session=session, owner=settings.owner, job_id=job["id"])
        assert row.stored_name == stored.name


def test_get_job_returns_what_was_submitted(client, video_clip):
    created = _post(client, video_clip).json

    response = client.get(created["links"]["self"])

    assert response.status_code == 200
    assert response.json["id"] == created["id"]
    assert response.json["progress"] == {"frames_done": 0, "frames_total": 0, "fraction": 0.0, "eta_s": None,
                                         "updated_at": None}
    assert set(response.json["links"]) == {"self", "cancel", "artifacts", "page"}


def test_non_video_is_refused_and_leaves_nothing_behind(client, settings, tmp_path, queued_tasks, session_factory):
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("these are meeting notes, not a video\n" * 100)

    response = _post(client, text_file, name="notes.mp4")

    assert response.status_code == 415
    assert response.json["error"]["code"] == "not_a_video"
    assert str(settings.data_dir) not in response.json["error"]["message"]
    assert uploads(settings) == []
    assert queued_tasks() == []
    assert job_count(session_factory) == 0


def test_missing_video_field_is_400(client, queued_tasks):
    response = client.post("/api/v1/jobs", data={"sequence_length": "8"})

    assert response.status_code == 400
    assert response.json["error"]["code"] == "missing_video"
    assert queued_tasks() == []


def test_a_non_multipart_body_is_400(client):
    response = client.post("/api/v1/jobs", json={"video": "clip.mp4"})

    assert response.status_code == 400
    assert response.json["error"]["code"] == "missing_video"


def test_empty_file_is_422(client, settings, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")

    response = _post(client, empty)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "empty_upload"
    assert uploads(settings) == []


@pytest.mark.parametrize("fields", [{"sequence_length": "0"}, {"precision": "fp64"}, {"device": "cuda"},
                                    {"weights": "../other/model.pt"}, {"frame_stride": "two"}])
def test_invalid_engine_settings_are_422_and_nothing_is_kept(client, settings, video_clip, queued_tasks, fields):
    response = _post(client, video_clip, **fields)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_options"
    assert uploads(settings) == []
    assert queued_tasks() == []


@pytest.mark.parametrize("fields", [{"sequence_length": "1_0"}, {"sequence_length": "\u0663"},
                                    {"sequence_length": ["8", "9"]}, {"face_detector": ["none", "none"]},
                                    {"colour": "red"}])
def test_non_ascii_numbers_repeated_and_unknown_fields_are_422(client, settings, video_clip, queued_tasks, fields):
    response = _post(client, video_clip, **fields)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_options"
    assert uploads(settings) == []
    assert queued_tasks() == []


@pytest.mark.parametrize("second_field", ["video", "thumbnail"])
def test_a_second_file_part_is_refused_and_nothing_is_kept(client, settings, video_clip, queued_tasks, second_field):
    with open(video_clip, "rb") as first, open(video_clip, "rb") as second:
        parts = {"video": [(first, "a.mp4")]}
        parts.setdefault(second_field, []).append((second, "b.mp4"))
        response = client.post("/api/v1/jobs", data=parts)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_options"
    assert uploads(settings) == []
    assert queued_tasks() == []


@pytest.mark.parametrize("name", ["serve.log", "nope.pt", "notes", "notes.txt", "pyproject.toml"])
def test_a_checkpoint_name_not_in_weights_dir_is_refused_before_queueing(client, settings, video_clip, queued_tasks,
                                                                         name):
    (settings.weights_dir / "notes.txt").write_text("not a checkpoint")
    (settings.weights_dir / "serve.log").write_text("a file that exists, but is no checkpoint")
    response = _post(client, video_clip, weights=name)

    assert response.status_code == 422
    assert response.json["error"] == {"code": "weights_not_found", "message":
                                      f"no checkpoint named {name!r} in the weights directory (WEIGHTS_DIR)"}
    assert uploads(settings) == [] and queued_tasks() == []


def test_a_checkpoint_name_in_weights_dir_is_accepted(client, settings, video_clip):
    (settings.weights_dir / "mine.pt").write_bytes(b"")
    assert _post(client, video_clip, weights="mine").status_code == 202


def test_without_a_visible_weights_dir_the_worker_checks_the_name(settings, video_clip):
    from dataclasses import replace

    from tests.web.conftest import build_app

    app = build_app(replace(settings, weights_dir=settings.weights_dir / "not-mounted-here"))
    try:
        assert _post(app.test_client(), video_clip, weights="nope.pt").status_code == 202
    finally:
        app.extensions["deepfake.db"]["engine"].dispose()


def test_unknown_and_malformed_ids_are_404_json(client, make_job):
    make_job()
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1"):
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json["error"]["code"] == "job_not_found"


def test_only_the_canonical_spelling_of_an_id_finds_the_job(client, make_job):
    job_id = make_job()
    compact = job_id.replace("-", "")
    for spelling in (job_id.upper(), "{" + job_id + "}", compact, f"urn:uuid:{job_id}", f" {job_id}"):
        assert client.get(f"/api/v1/jobs/{spelling}").status_code == 404, spelling
        assert client.get(f"/jobs/{spelling}").status_code == 404, spelling
    assert client.post(f"/api/v1/jobs/{job_id.upper()}/cancel").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_jobs_of_another_owner_are_invisible(client, other_owner_app, make_job):
    mine = make_job()
    other = other_owner_app.test_client()

    assert other.get(f"/api/v1/jobs/{mine}").status_code == 404
    assert other.post(f"/api/v1/jobs/{mine}/cancel").status_code == 404
    assert other.get("/api/v1/jobs").json["jobs"] == []
    assert client.get(f"/api/v1/jobs/{mine}").status_code == 200


def test_running_job_shows_progress_eta_and_partial_timeline(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "running")

    job = client.get(f"/api/v1/jobs/{job_id}").json

    assert job["status"] == "running"
    assert job["started_at"] is not None and job["queue_position"] is None
    assert job["progress"]["frames_done"] == 8 and job["progress"]["frames_total"] == 20
    assert job["progress"]["fraction"] == 0.4
    assert job["progress"]["eta_s"] is not None and job["progress"]["eta_s"] >= 0
    [track] = job["timeline"]["tracks"]
    assert track["id"] == 0
    assert [w["start_frame"] for w in track["windows"]] == [0, 4]
    assert "result" not in job


def test_succeeded_job_carries_the_engine_result_verbatim(client, make_job, advance_job):
    from tests.web.conftest import engine_result

    job_id = make_job()
    advance_job(job_id, "succeeded")

    job = client.get(f"/api/v1/jobs/{job_id}").json

    assert job["status"] == "succeeded"
    assert job["result"] == engine_result().to_dict()
    assert job["verdict"] == "FAKE" and job["fake_probability"] == pytest.approx(0.91)
    assert job["progress"]["fraction"] == 1.0
    assert "timeline" not in job and "error" not in job


def test_failed_job_carries_its_error(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "failed")

    job = client.get(f"/api/v1/jobs/{job_id}").json

    assert job["status"] == "failed"
    assert job["error"] == {"code": "no_decodable_frames", "message": "no frame of the video could be decoded"}
    assert "result" not in job


def test_queue_position_counts_older_queued_jobs(client, make_job):
    ids = [make_job(name=f"{i}.mp4") for i in range(3)]

    positions = [client.get(f"/api/v1/jobs/{job_id}").json["queue_position"] for job_id in ids]

    assert positions == [1, 2, 3]
