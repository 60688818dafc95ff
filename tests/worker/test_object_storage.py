"""Two machines that share only the database, Redis and an S3-compatible bucket (moto's, on loopback):
the web on one DATA_DIR stores the upload in the bucket, a worker on another DATA_DIR fetches it, runs
it and publishes the artifacts there, and the web serves and deletes them."""
from __future__ import annotations

from dataclasses import replace

from shared.storage import s3_client
from tests.web.conftest import build_app
from tests.worker.conftest import FAST_PARAMS

FORM = {name: str(value) for name, value in FAST_PARAMS.items() if name != "batch_size"}  # the operator's, not the API's
from worker.context import worker_context
from worker.runner import Outcome, run_job


def _objects(settings) -> list[str]:
    listing = s3_client(settings).list_objects_v2(Bucket=settings.s3_bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_job_runs_on_a_machine_that_shares_only_the_bucket(s3_settings, seed_checkpoint, short_clip, tmp_path):
    web_settings = s3_settings
    worker_settings = replace(s3_settings, data_dir=tmp_path / "worker-machine", weights_dir=tmp_path / "worker-weights")
    worker_settings.weights_dir.mkdir()
    (worker_settings.weights_dir / seed_checkpoint.name).symlink_to(seed_checkpoint)
    app = build_app(web_settings)
    client = app.test_client()

    with open(short_clip, "rb") as video:
        response = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM})
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    stored = _objects(web_settings)
    assert len(stored) == 1 and stored[0].startswith("svc/uploads/")
    assert _files(web_settings.uploads_dir) == []  # nothing the other machine would need stays here

    assert run_job(job_id, context=worker_context(worker_settings)) is Outcome.SUCCEEDED

    job = client.get(f"/api/v1/jobs/{job_id}").json
    assert job["status"] == "succeeded", job
    artifacts = client.get(f"/api/v1/jobs/{job_id}/artifacts").json["artifacts"]
    assert artifacts
    in_bucket = [key for key in _objects(web_settings) if key.startswith(f"svc/artifacts/{job_id}/")]
    assert len(in_bucket) == len(artifacts)
    # The worker kept no copy of the upload or the pictures (its model cache is its own business).
    assert _files(worker_settings.uploads_dir) == [] and _files(worker_settings.artifacts_dir) == []
    bucket = s3_client(web_settings)
    for artifact, key in zip(sorted(artifacts, key=lambda a: a["name"]), sorted(in_bucket)):
        served = client.get(artifact["url"])
        assert key.endswith("/" + artifact["name"])
        assert served.status_code == 200
        assert served.data == bucket.get_object(Bucket=web_settings.s3_bucket, Key=key)["Body"].read()

    # The same file again: the result is reused, its pictures copied through the bucket, none left behind here.
    with open(short_clip, "rb") as video:
        again = client.post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM}).json["id"]
    assert run_job(again, context=worker_context(worker_settings)) is Outcome.SUCCEEDED
    assert client.get(f"/api/v1/jobs/{again}").json["result"]["reused_from"]["job_id"] == job_id
    assert _files(worker_settings.uploads_dir) == [] and _files(worker_settings.artifacts_dir) == []
    assert client.delete(f"/api/v1/jobs/{again}").status_code == 200

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    assert _objects(web_settings) == []
    app.extensions["deepfake.db"]["engine"].dispose()


def test_a_video_missing_from_the_bucket_fails_with_video_not_found(s3_settings, seed_checkpoint, short_clip):
    (s3_settings.weights_dir / seed_checkpoint.name).symlink_to(seed_checkpoint)
    app = build_app(s3_settings)
    with open(short_clip, "rb") as video:
        job_id = app.test_client().post("/api/v1/jobs", data={"video": (video, "clip.mp4"), **FORM}).json["id"]
    client = s3_client(s3_settings)
    for key in _objects(s3_settings):
        client.delete_object(Bucket=s3_settings.s3_bucket, Key=key)

    assert run_job(job_id, context=worker_context(s3_settings)) is Outcome.FAILED
    job = app.test_client().get(f"/api/v1/jobs/{job_id}").json
    assert job["error"]["code"] == "video_not_found"
    app.extensions["deepfake.db"]["engine"].dispose()
