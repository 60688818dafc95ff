"""The batch API and pages: create, add files (a refused file does not stop the batch), import from
the server's import folder, progress, the report as CSV and JSON, retry, cancel, delete, owners."""
from __future__ import annotations

import csv
import io
import json
import os
import uuid
from dataclasses import replace

import pytest
import redis

from tests.web.conftest import build_app, engine_result, page_csrf_token, uploads


def _create(client, **body) -> dict:
    response = client.post("/api/v1/batches", json={"name": "night", "options": {"face_detector": "none"}, **body})
    assert response.status_code == 201, response.json
    return response.json


def _add(client, batch: dict, path, *, label: str | None = None):
    data = {"video": (open(path, "rb"), path.name)}
    if label is not None:
        data["path"] = label
    return client.post(batch["links"]["items"], data=data)


def _batch_queue_messages(redis_url: str, task_queue: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(raw)["headers"]["argsrepr"] for raw in client.lrange(f"{task_queue}.batch", 0, -1)]
    finally:
        client.close()


def test_files_are_queued_on_the_batch_lane_and_a_refused_file_is_a_failed_item(
        client, settings, video_clip, tmp_path, redis_url, task_queue, queued_tasks):
    batch = _create(client)
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"not a video, just text" * 50)

    first = _add(client, batch, video_clip, label="cam1/face.mp4")
    refused = _add(client, batch, junk)
    second = _add(client, batch, video_clip, label="cam2/face.mp4")

    assert [r.status_code for r in (first, refused, second)] == [201, 201, 201]
    assert (first.json["status"], second.json["status"]) == ("queued", "queued")
    assert refused.json["status"] == "failed" and refused.json["error"]["code"] == "not_a_video"
    assert str(tmp_path) not in refused.json["error"]["message"] and str(settings.data_dir) not in refused.json["error"]["message"]
    # Batch items wait on the batch lane, never in front of single uploads.
    assert queued_tasks() == []
    assert len(_batch_queue_messages(redis_url, task_queue)) == 2
    assert len(uploads(settings)) == 2  # the refused file is not kept

    doc = client.get(batch["links"]["self"]).json
    assert [i["file"] for i in doc["items"]] == ["cam1/face.mp4", "notes.mp4", "cam2/face.mp4"]
    assert [i["position"] for i in doc["items"]] == [0, 1, 2]
    assert (doc["total"], doc["done"], doc["finished"]) == (3, 1, False)
    assert doc["counts"]["queued"] == 2 and doc["counts"]["failed"] == 1
    assert doc["params"] == {"face_detector": "none"}


def test_the_report_has_one_row_per_file_as_json_and_csv(client, video_clip, tmp_path, advance_job):
    batch = _create(client)
    ids = [_add(client, batch, video_clip, label=f"=cmd|{n}.mp4").json["id"] for n in range(2)]
    advance_job(ids[0], "succeeded")
    advance_job(ids[1], "failed")

    doc = client.get(batch["links"]["self"]).json
    assert doc["finished"] and doc["counts"]["succeeded"] == 1 and doc["counts"]["failed"] == 1
    report = client.get(batch["links"]["results_json"]).json
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["succeeded", "failed"]
    assert rows[0]["verdict"] == "FAKE" and rows[0]["fake_probability"] == 0.91 and rows[0]["faces"] == len(engine_result().tracks) == 2
    assert rows[1]["error_code"] == "no_decodable_frames" and rows[1]["verdict"] in (None, "")
    response = client.get(batch["links"]["results_csv"])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    parsed = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["job_id"] for r in parsed] == ids
    # A file name that a spreadsheet would run as a formula is written inert.
    assert all(r["file"].startswith("'=") for r in parsed)


def test_failed_items_are_retried_while_their_file_is_stored(client, settings, video_clip, advance_job,
                                                             redis_url, task_queue):
    batch = _create(client)
    job_id = _add(client, batch, video_clip).json["id"]
    advance_job(job_id, "failed")
    assert uploads(settings)  # kept: the web does not sweep; the worker's sweep would

    response = client.post(batch["links"]["retry"])

    assert response.status_code == 202
    items = response.json["items"]
    assert len(items) == 1 and items[0]["status"] == "queued" and items[0]["job_id"] != job_id
    assert items[0]["position"] == 0
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404  # the row is replaced, not duplicated
    assert len(_batch_queue_messages(redis_url, task_queue)) == 2


def test_cancel_then_delete_removes_every_file(client, settings, video_clip, make_job, advance_job, session_factory):
    batch = _create(client)
    running, queued = (_add(client, batch, video_clip).json["id"] for _ in range(2))
    advance_job(running, "succeeded")
    assert client.delete(batch["links"]["self"]).json["error"]["code"] == "batch_active"

    assert client.post(batch["links"]["cancel"]).status_code == 202
    assert client.get(f"/api/v1/jobs/{queued}").json["status"] == "cancelled"
    response = client.delete(batch["links"]["self"])

    assert response.status_code == 200
    assert client.get(batch["links"]["self"]).status_code == 404
    assert client.get(f"/api/v1/jobs/{running}").status_code == 404
    assert uploads(settings) == [] and not (settings.artifacts_dir / running).exists()


def test_import_reads_only_inside_the_import_root(settings, video_clip, tmp_path):
    root = tmp_path / "footage"
    (root / "night" / "deeper").mkdir(parents=True)
    (root / "night" / "a.mp4").write_bytes(video_clip.read_bytes())
    (root / "night" / "deeper" / "b.mkv").write_bytes(b"not a video")
    (root / "night" / "notes.txt").write_text("skip me")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(video_clip.read_bytes())
    os.symlink(secret, root / "night" / "link.mp4")
    app = build_app(replace(settings, batch_import_root=root))
    client = app.test_client()

    flat = _create(client, **{"import": {"folder": "night"}})
    deep = _create(client, **{"import": {"folder": "night", "recursive": True}})
    listed = _create(client, **{"import": {"paths": ["night/a.mp4", "night/missing.mp4"]}})

    assert [i["file"] for i in flat["items"]] == ["night/a.mp4"]  # the link leaving the root is skipped
    assert [(i["file"], i["status"]) for i in deep["items"]] == [("night/a.mp4", "queued"),
                                                                 ("night/deeper/b.mkv", "failed")]
    assert [(i["file"], i["status"]) for i in listed["items"]] == [("night/a.mp4", "queued"),
                                                                   ("night/missing.mp4", "failed")]
    assert listed["items"][1]["error"]["code"] == "file_not_found"
    assert (root / "night" / "a.mp4").exists()  # the operator's files are never moved or deleted
    for escape in (["../secret.mp4"], ["night/link.mp4"], ["/etc/passwd"]):
        response = client.post("/api/v1/batches", json={"import": {"paths": escape}})
        assert response.status_code == 422 and response.json["error"]["code"] == "invalid_import_path", escape
    app.extensions["deepfake.db"]["engine"].dispose()


def test_import_is_refused_unless_the_operator_set_a_root(client):
    response = client.post("/api/v1/batches", json={"import": {"folder": "."}})
    assert response.status_code == 403 and response.json["error"]["code"] == "import_disabled"


def test_bad_requests_have_specific_errors(client, video_clip):
    assert client.post("/api/v1/batches", data="[1]", content_type="application/json").json["error"]["code"] == "invalid_json"
    bad_option = client.post("/api/v1/batches", json={"options": {"frame_stride": "0"}})
    assert bad_option.status_code == 422 and bad_option.json["error"]["code"] == "invalid_options"
    assert client.post("/api/v1/batches", json={"owner": "x"}).json["error"]["code"] == "invalid_options"
    batch = _create(client)
    per_item_setting = client.post(batch["links"]["items"], data={"video": (open(video_clip, "rb"), "a.mp4"),
                                                                 "frame_stride": "2"})
    assert per_item_setting.status_code == 422
    assert client.post(f"/api/v1/batches/{uuid.uuid4()}/items").status_code == 404
    assert client.get(f"/api/v1/batches/{batch['id'].upper()}").status_code == 404


def test_another_owners_batch_is_404(client, other_owner_app, video_clip):
    batch = _create(client)
    other = other_owner_app.test_client()
    for path in (batch["links"]["self"], batch["links"]["results_csv"]):
        assert other.get(path).status_code == 404
    assert _add(other, batch, video_clip).status_code == 404
    assert other.get("/api/v1/batches").json["batches"] == []
    assert [b["id"] for b in client.get("/api/v1/batches").json["batches"]] == [batch["id"]]


def test_the_batch_pages_show_each_file_and_act_with_a_csrf_token(client, video_clip, advance_job):
    batch = _create(client)
    job_id = _add(client, batch, video_clip, label="cam/<b>face</b>.mp4").json["id"]
    listing = client.get("/batches").get_data(as_text=True)
    assert "night" in listing and batch["links"]["page"] in listing
    page = client.get(batch["links"]["page"]).get_data(as_text=True)
    assert "cam/&lt;b&gt;face&lt;/b&gt;.mp4" in page and 'http-equiv="refresh"' in page
    action = f"/batches/{batch['id']}/cancel"
    assert client.post(action).status_code == 403  # no token
    token = page_csrf_token(client, batch["links"]["page"])
    assert client.post(action, data={"csrf_token": token}).status_code == 303
    assert client.get(f"/api/v1/jobs/{job_id}").json["status"] == "cancelled"
    finished = client.get(batch["links"]["page"]).get_data(as_text=True)
    assert 'http-equiv="refresh"' not in finished


def test_json_options_have_the_types_the_api_document_declares(client):
    """Found by test_api_fuzz: JSON 8.0 (an integer to JSON Schema) was refused, while null, "" and "8"
    (not integers) were taken as the default or as 8."""
    batch = _create(client, options={"detect_every": 8.0})
    assert batch["params"]["detect_every"] == 8
    for value in (8.5, None, "", "8", True):
        refused = client.post("/api/v1/batches", json={"options": {"detect_every": value}})
        assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_options", value
    for value in (None, "", 3):
        refused = client.post("/api/v1/batches", json={"options": {"face_detector": value}})
        assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_options", value


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 5000, "%D9%A3", "", "0"])
def test_a_batch_list_limit_is_a_small_ascii_number(client, limit):
    """Found by test_api_fuzz: "²" and 5,000 digits were a 500, "٣" read as 3 and an empty value as 50."""
    response = client.get(f"/api/v1/batches?limit={limit}")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_limit"


@pytest.mark.parametrize("name", [None, [], 0, {}])
def test_a_batch_name_is_a_string(client, name):
    """Found by test_api_fuzz: any false-y name (null, [], 0) was taken as no name."""
    response = client.post("/api/v1/batches", json={"name": name})
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_options"


def test_a_batch_name_keeps_only_printable_characters(client):
    """A NUL in the name was a 500 on PostgreSQL (text cannot hold it); control characters are dropped."""
    response = client.post("/api/v1/batches", json={"name": " night\u0000 2\u0007 "})
    assert response.status_code == 201 and response.json["name"] == "night 2"


def test_failed_items_are_retried_from_object_storage_and_stay_queued_when_the_broker_is_away(
        s3_settings, video_clip, redis_url, task_queue):
    """With STORAGE=s3 the upload is only in the bucket: retry must look there. A retry the broker refuses
    keeps its item queued (the reaper sends it later) instead of dropping the file from the batch."""
    from tests.web.conftest import move_job

    app = build_app(s3_settings)
    client = app.test_client()
    batch = _create(client)
    first = _add(client, batch, video_clip).json["id"]
    move_job(app.extensions["deepfake.db"]["session_factory"], s3_settings, first, "failed")

    retried = client.post(batch["links"]["retry"]).json["items"]
    assert [i["status"] for i in retried] == ["queued"] and retried[0]["job_id"] != first
    second = retried[0]["job_id"]
    move_job(app.extensions["deepfake.db"]["session_factory"], s3_settings, second, "failed")
    app.extensions["deepfake.db"]["engine"].dispose()

    away = build_app(replace(s3_settings, redis_url="redis://127.0.0.1:1/0"))
    response = away.test_client().post(batch["links"]["retry"])
    assert response.status_code == 202
    [item] = response.json["items"]
    assert item["status"] == "queued" and item["job_id"] not in (first, second)
    away.extensions["deepfake.db"]["engine"].dispose()


def test_listing_batches_costs_the_same_queries_whatever_their_number(app, client, video_clip, tmp_path):
    """The list (API and page) took each batch's progress in a query of its own: 200 batches, 200 round trips."""
    from sqlalchemy import event

    from web.db import get_engine

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    first = _create(client, name="one")
    _add(client, first, video_clip, label="a.mp4")
    _add(client, first, junk, label="junk.mp4")

    def statements(url: str) -> tuple[int, object]:
        seen = []
        with app.app_context():
            engine = get_engine()
        listener = lambda *args: seen.append(args[2])  # noqa: E731 (statement text)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            response = client.get(url)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200
        return len(seen), response

    few, _ = statements("/api/v1/batches")
    few_page, _ = statements("/batches")
    for index in range(5):
        _create(client, name=f"more {index}")
    many, response = statements("/api/v1/batches")
    many_page, _ = statements("/batches")
    assert (many, many_page) == (few, few_page)
    listed = {b["name"]: b for b in response.json["batches"]}
    assert len(listed) == 6
    assert listed["one"]["counts"]["queued"] == 1 and listed["one"]["counts"]["failed"] == 1
    assert listed["more 0"]["counts"]["queued"] == 0
