"""Deleting a job with its files: DELETE /api/v1/jobs/<id> and the job page's delete button."""
from __future__ import annotations

import uuid

from tests.web.conftest import job_count, page_csrf_token, uploads


def _submit(client, video_clip) -> str:
    with open(video_clip, "rb") as video:
        response = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4")})
    assert response.status_code == 202, response.json
    return response.json["id"]


def test_an_ended_job_is_deleted_with_its_upload_and_artifacts(client, settings, session_factory, video_clip,
                                                              advance_job, queued_tasks):
    job_id = _submit(client, video_clip)
    advance_job(job_id, "succeeded")
    assert uploads(settings) and (settings.artifacts_dir / job_id).is_dir()

    response = client.delete(f"/api/v1/jobs/{job_id}")

    assert response.status_code == 200 and response.json["id"] == job_id
    assert response.json["status"] == "succeeded"
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert uploads(settings) == [] and not (settings.artifacts_dir / job_id).exists()
    assert job_count(session_factory) == 0
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 404


def test_a_queued_or_running_job_is_409_until_cancelled(client, settings, make_job, advance_job):
    queued, running = make_job(), make_job()
    advance_job(running, "running")

    for job_id in (queued, running):
        response = client.delete(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 409 and response.json["error"]["code"] == "job_active"

    assert client.post(f"/api/v1/jobs/{queued}/cancel").json["status"] == "cancelled"
    assert client.delete(f"/api/v1/jobs/{queued}").status_code == 200


def test_unknown_and_other_owners_jobs_are_404(client, make_job, advance_job, other_owner_app):
    job_id = make_job()
    advance_job(job_id, "failed")

    assert client.delete(f"/api/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert client.delete("/api/v1/jobs/not-a-uuid").status_code == 404
    assert other_owner_app.test_client().delete(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_the_job_page_offers_delete_once_the_job_ended(client, make_job, advance_job):
    queued, failed = make_job(), make_job()
    advance_job(failed, "failed")

    assert 'id="delete-button"' not in client.get(f"/jobs/{queued}").text
    assert 'id="delete-button"' in client.get(f"/jobs/{failed}").text
    token = {"csrf_token": page_csrf_token(client, f"/jobs/{failed}")}
    assert client.post(f"/jobs/{queued}/delete", data=token).status_code == 409
    assert client.post(f"/jobs/{failed}/delete").status_code == 403  # the form's token is required
    assert client.post(f"/jobs/{failed}/delete", data={"csrf_token": "forged"}).status_code == 403

    response = client.post(f"/jobs/{failed}/delete", data=token)

    assert response.status_code == 303 and response.headers["Location"] == "/jobs"
    assert client.get(f"/jobs/{failed}").status_code == 404
