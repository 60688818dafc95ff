"""The file stores: DATA_DIR alone (local), and an S3-compatible bucket on loopback (moto's server)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from shared.storage import LocalStore, S3Store, StorageConfigError, StoredFileMissingError, make_store


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
