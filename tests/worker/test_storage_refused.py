"""A bucket the worker cannot use (missing, denied, wrong credentials) fails the job with
`storage_refused` instead of bouncing it between retries; the web answers a logged 500. The real
database, the loopback S3 server (moto's) and the real engine throughout."""
from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from tests.web.conftest import build_app
from tests.worker.conftest import FAST_PARAMS, job_row
from worker.context import worker_context
from worker.runner import Outcome, run_job

FORM = {name: str(value) for name, value in FAST_PARAMS.items() if name != "batch_size"}


def _missing_bucket(settings):
    return replace(settings, s3_bucket=f"deepfake-missing-{secrets.token_hex(4)}")


def _worker_settings(s3_settings, seed_checkpoint, tmp_path):
    settings = replace(_missing_bucket(s3_settings), data_dir=tmp_path / "worker-machine",
                       weights_dir=tmp_path / "worker-weights")
    settings.weights_dir.mkdir()
    (settings.weights_dir / seed_checkpoint.name).symlink_to(seed_checkpoint)
    return settings


def test_a_worker_whose_bucket_is_missing_fails_the_job_once(s3_settings, seed_checkpoint, short_clip, tmp_path,
                                                              db_session_factory):
    app = build_app(s3_settings)  # the web stores the upload in the real bucket
    with open(short_clip, "rb") as video:
        job_id = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM}).json["id"]
    app.extensions["deepfake.db"]["engine"].dispose()

    assert run_job(job_id, context=worker_context(_worker_settings(s3_settings, seed_checkpoint, tmp_path))) \
        is Outcome.FAILED
    job = job_row(db_session_factory, job_id)
    assert (job.status, job.attempts, job.error_code) == ("failed", 1, "storage_refused")
    assert "NoSuchBucket" in job.error_message and "S3_BUCKET" in job.error_message


def test_artifacts_the_bucket_refuses_fail_the_job_once(s3_settings, seed_checkpoint, short_clip, tmp_path,
                                                         db_session_factory):
    # The upload is already on the worker's machine (as on one host), so the first refusal is publishing.
    app = build_app(s3_settings)
    with open(short_clip, "rb") as video:
        job_id = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM}).json["id"]
    app.extensions["deepfake.db"]["engine"].dispose()
    settings = _worker_settings(s3_settings, seed_checkpoint, tmp_path)
    stored_name = job_row(db_session_factory, job_id).stored_name
    (settings.uploads_dir).mkdir(parents=True)
    (settings.uploads_dir / stored_name).write_bytes(short_clip.read_bytes())

    assert run_job(job_id, context=worker_context(settings)) is Outcome.FAILED
    job = job_row(db_session_factory, job_id)
    assert (job.status, job.attempts, job.error_code) == ("failed", 1, "storage_refused")
    assert not list(settings.artifacts_dir.rglob("*.*"))  # the refused attempt's pictures are not left behind


def test_the_web_answers_a_logged_500_when_the_bucket_refuses_an_upload(s3_settings, short_clip, caplog):
    app = build_app(_missing_bucket(s3_settings))
    with caplog.at_level(logging.ERROR, logger="web.errors"), open(short_clip, "rb") as video:
        response = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM})
    app.extensions["deepfake.db"]["engine"].dispose()
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert response.json["error"]["code"] == "storage_refused"
    assert "check S3_BUCKET" in response.json["error"]["message"]
    assert [r.levelno for r in caplog.records if "storage_refused" in r.getMessage()] == [logging.ERROR]
