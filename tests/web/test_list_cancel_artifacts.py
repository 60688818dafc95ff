"""Listing with cursor pagination, cooperative cancel, and artifact downloads."""
from __future__ import annotations

import pytest

from tests.web.conftest import PNG_1PX


def test_list_pages_newest_first_with_a_cursor(client, make_job):
    ids = [make_job(name=f"{i}.mp4") for i in range(5)]

    first = client.get("/api/v1/jobs?limit=2").json
    second = client.get(f"/api/v1/jobs?limit=2&cursor={first['next_cursor']}").json
    third = client.get(f"/api/v1/jobs?limit=2&cursor={second['next_cursor']}").json

    seen = [job["id"] for page in (first, second, third) for job in page["jobs"]]
    assert seen == list(reversed(ids))
    assert third["next_cursor"] is None
    assert first["jobs"][0]["links"]["self"] == f"/api/v1/jobs/{ids[-1]}"


def test_list_filters_by_status(client, make_job, advance_job):
    queued, done = make_job(), make_job()
    advance_job(done, "succeeded")

    assert [j["id"] for j in client.get("/api/v1/jobs?status=succeeded").json["jobs"]] == [done]
    assert [j["id"] for j in client.get("/api/v1/jobs?status=queued").json["jobs"]] == [queued]
    assert client.get("/api/v1/jobs?status=succeeded").json["jobs"][0]["verdict"] == "FAKE"


@pytest.mark.parametrize("query, code", [("status=done", "invalid_status"), ("limit=0", "invalid_limit"),
                                         ("limit=abc", "invalid_limit"), ("cursor=%%%%", "invalid_cursor"),
                                         ("cursor=bm90LWEtY3Vyc29y", "invalid_cursor"),
                                         # test_api_fuzz: "²" and 5,000 digits were a 500, "٣" read as 3,
                                         # empty values as the default (the document says an integer / enum)
                                         ("limit=%C2%B2", "invalid_limit"), ("limit=" + "9" * 5000, "invalid_limit"),
                                         ("limit=%D9%A3", "invalid_limit"), ("limit=", "invalid_limit"),
                                         ("status=", "invalid_status")])
def test_bad_list_parameters_are_400(client, query, code):
    response = client.get(f"/api/v1/jobs?{query}")

    assert response.status_code == 400
    assert response.json["error"]["code"] == code


def test_cancel_a_queued_job_cancels_it(client, make_job):
    job_id = make_job()

    response = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json["status"] == "cancelled" and response.json["cancel_requested"] is True


def test_cancel_a_running_job_asks_the_worker_to_stop(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "running")

    response = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202
    assert response.json["status"] == "running" and response.json["cancel_requested"] is True


def test_cancel_a_finished_job_changes_nothing(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded")
    before = client.get(f"/api/v1/jobs/{job_id}").json

    response = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200
    assert response.json["status"] == "succeeded" and response.json["cancel_requested"] is False
    assert client.get(f"/api/v1/jobs/{job_id}").json == before


def test_artifacts_are_listed_and_downloaded(client, make_job, advance_job):
    job_id = make_job()
    advance_job(job_id, "succeeded")

    listing = client.get(f"/api/v1/jobs/{job_id}/artifacts").json["artifacts"]
    [artifact] = listing
    response = client.get(artifact["url"])

    assert artifact["name"] == "heatmap-t0-w0.png" and artifact["track_id"] == 0
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data == PNG_1PX


@pytest.mark.parametrize("name", ["missing.png", "..%2F..%2Fdeepfake.db", ".hidden", "a" * 300])
def test_absent_or_unsafe_artifact_names_are_404_json(client, make_job, advance_job, name):
    job_id = make_job()
    advance_job(job_id, "succeeded")

    response = client.get(f"/api/v1/jobs/{job_id}/artifacts/{name}")

    assert response.status_code == 404
    assert response.is_json and response.json["error"]["code"] in ("artifact_not_found", "not_found")


def test_artifacts_of_another_owner_are_404(make_job, advance_job, other_owner_app):
    job_id = make_job()
    advance_job(job_id, "succeeded")
    other = other_owner_app.test_client()

    assert other.get(f"/api/v1/jobs/{job_id}/artifacts").status_code == 404
    assert other.get(f"/api/v1/jobs/{job_id}/artifacts/heatmap-t0-w0.png").status_code == 404
