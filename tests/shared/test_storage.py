"""The file stores: DATA_DIR alone (local), and an S3-compatible bucket on loopback (moto's server)."""
from __future__ import annotations

import secrets
import socket
from dataclasses import replace

import boto3
from boto3.exceptions import S3UploadFailedError
import moto.settings
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.storage import (LocalStore, S3Store, StorageConfigError, StoredFileMissingError, StorageRefusedError,
                            StorageUnavailableError, _remote_errors, make_store)


@pytest.fixture(params=["local", "s3"])
def store(request, settings):
    if request.param == "local":
        return make_store(settings)
    return make_store(request.getfixturevalue("s3_settings"))


def _write(store, key: str, data: bytes) -> None:
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_published_files_can_be_fetched_listed_and_deleted(store):
    _write(store, "uploads/a.mp4", b"video bytes")
    _write(store, "artifacts/job/1/heatmap.png", b"png")
    store.publish("uploads/a.mp4")
    store.publish("artifacts/job/1/heatmap.png")
    # A remote store keeps no local copy after publishing: another machine must be able to fetch it.
    assert store.local_path("uploads/a.mp4").exists() is (not store.remote)

    assert store.fetch("uploads/a.mp4").read_bytes() == b"video bytes"
    assert [obj.key for obj in store.list("uploads")] == ["uploads/a.mp4"]
    store.evict("uploads/a.mp4")
    assert store.fetch("uploads/a.mp4").read_bytes() == b"video bytes"  # fetched again after eviction

    store.delete("uploads/a.mp4")
    with pytest.raises(StoredFileMissingError):
        store.fetch("uploads/a.mp4")
    store.delete_prefix("artifacts/job")
    with pytest.raises(StoredFileMissingError):
        store.fetch("artifacts/job/1/heatmap.png")
    assert store.list("uploads") == []


def test_a_second_machine_sees_what_the_first_published(s3_settings, tmp_path):
    web = make_store(s3_settings)
    worker = make_store(replace(s3_settings, data_dir=tmp_path / "other-machine"))
    _write(web, "uploads/b.mp4", b"x" * 100_000)
    web.publish("uploads/b.mp4")
    fetched = worker.fetch("uploads/b.mp4")
    assert fetched.parent == tmp_path / "other-machine" / "uploads" and fetched.read_bytes() == b"x" * 100_000
    assert isinstance(web, S3Store) and web.object_key("uploads/b.mp4") == "svc/uploads/b.mp4"


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "uploads/../../x", "", "uploads\\..\\x"])
def test_keys_cannot_leave_the_store(settings, key):
    with pytest.raises(ValueError):
        LocalStore(settings.data_dir).fetch(key)


def test_unknown_backends_and_missing_buckets_are_refused(settings):
    with pytest.raises(StorageConfigError):
        make_store(replace(settings, storage="ftp"))
    with pytest.raises(StorageConfigError):
        make_store(replace(settings, storage="s3", s3_bucket=None))


def _refusal_of(call) -> StorageRefusedError:
    with pytest.raises(StorageRefusedError) as refused:
        call()
    assert refused.value.code == "storage_refused"
    assert "check S3_BUCKET, S3_ENDPOINT_URL and the credentials" in refused.value.message
    return refused.value


def test_a_missing_bucket_is_refused_not_retried(s3_settings):
    store = make_store(replace(s3_settings, s3_bucket=f"deepfake-missing-{secrets.token_hex(4)}"))
    _write(store, "uploads/a.mp4", b"video bytes")

    assert "NoSuchBucket" in _refusal_of(lambda: store.publish("uploads/a.mp4")).message
    store.evict("uploads/a.mp4")
    # A HEAD of a key answers a bare 404 for a missing bucket too: neither may pass for a missing file.
    refused = _refusal_of(lambda: store.fetch("uploads/a.mp4"))
    assert "NoSuchBucket" in refused.message and "'uploads/a.mp4'" in refused.message
    assert "NoSuchBucket" in _refusal_of(lambda: store.exists("uploads/a.mp4")).message
    assert "NoSuchBucket" in _refusal_of(lambda: store.list("uploads")).message


def test_a_missing_key_in_an_existing_bucket_is_still_just_missing(s3_settings):
    store = make_store(s3_settings)
    assert store.exists("uploads/none.mp4") is False
    with pytest.raises(StoredFileMissingError):
        store.fetch("uploads/none.mp4")


def test_a_bucket_name_s3_cannot_have_is_refused(s3_settings):
    store = make_store(replace(s3_settings, s3_bucket="Not_A_Bucket!"))
    _write(store, "uploads/a.mp4", b"video bytes")
    assert "ParamValidationError" in _refusal_of(lambda: store.publish("uploads/a.mp4")).message


def test_wrong_credentials_are_refused_and_never_quoted(s3_settings, monkeypatch):
    key_id, secret = f"AKIA{secrets.token_hex(8).upper()}", f"secret-{secrets.token_hex(12)}"
    store = make_store(replace(s3_settings, s3_access_key_id=key_id, s3_secret_access_key=secret))
    _write(store, "uploads/a.mp4", b"video bytes")
    # moto's server checks signatures only when told to (its documented INITIAL_NO_AUTH_ACTION_COUNT);
    # then it knows no such key, as S3 would answer for a wrong or revoked one.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)

    refused = _refusal_of(lambda: store.publish("uploads/a.mp4"))
    assert "InvalidAccessKeyId" in refused.message
    store.evict("uploads/a.mp4")
    assert "403" in _refusal_of(lambda: store.exists("uploads/a.mp4")).message  # a HEAD's 403 carries no code
    for message in (refused.message, str(refused)):
        assert secret not in message and key_id not in message


def test_an_unreachable_endpoint_is_still_transient(s3_settings):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # One attempt, not the deployment's five with backoff: the classification is what is under test.
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    store = S3Store(s3_settings.data_dir, bucket=s3_settings.s3_bucket, prefix="svc/", client=client)
    _write(store, "uploads/a.mp4", b"video bytes")
    for call in (lambda: store.publish("uploads/a.mp4"), lambda: store.exists("uploads/a.mp4"),
                 lambda: store.list("uploads")):
        with pytest.raises(StorageUnavailableError):
            call()


@pytest.mark.parametrize("code, status", [("SlowDown", 503), ("RequestTimeout", 400), ("InternalError", 500),
                                          ("ServiceUnavailable", 503), ("", 502)])
def test_throttling_and_server_errors_stay_transient(code, status):
    # The service's error documents as botocore parses them; moto cannot be made to throttle or fail.
    error = ClientError({"Error": {"Code": code, "Message": "try later"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    with pytest.raises(StorageUnavailableError), _remote_errors("uploads/a.mp4"):
        raise error
    with pytest.raises(StorageUnavailableError), _remote_errors("uploads/a.mp4"):
        try:  # as upload_file raises it
            raise error
        except ClientError as failed:
            raise S3UploadFailedError(f"Failed to upload: {failed}")


def test_every_copy_of_an_object_has_its_time(s3_settings, tmp_path):
    """A fetched copy's mtime is the object's LastModified: a refetch and another web machine's copy have the
    same time, so the artifact they serve keeps its ETag (it changed on every refetch before)."""
    import os

    web = make_store(s3_settings)
    other = make_store(replace(s3_settings, data_dir=tmp_path / "other-web"))
    _write(web, "artifacts/job/1/heatmap.png", b"png bytes")
    web.publish("artifacts/job/1/heatmap.png")
    stated = web.client.head_object(Bucket=web.bucket, Key=web.object_key("artifacts/job/1/heatmap.png"))["LastModified"]

    first = os.stat(web.fetch("artifacts/job/1/heatmap.png")).st_mtime
    web.evict("artifacts/job/1/heatmap.png")
    again = os.stat(web.fetch("artifacts/job/1/heatmap.png")).st_mtime
    elsewhere = os.stat(other.fetch("artifacts/job/1/heatmap.png")).st_mtime
    assert first == again == elsewhere == stated.timestamp()
