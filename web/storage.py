"""The app's file store (shared.storage): uploads are published to it once probed, artifacts read from it."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from shared.settings import Settings
from shared.storage import ARTIFACTS, UPLOADS, CachedStore, FileStore, S3Store, StoredFileMissingError, make_store
from web.uploads import StoredUpload

_EXTENSION = "deepfake.store"
_MB = 1024 * 1024


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = web_store(app.extensions["deepfake.settings"])


def web_store(settings: Settings) -> FileStore:
    """The store STORAGE selects; a remote one keeps what the web fetches to serve in a bounded cache
    (WEB_ARTIFACT_CACHE_MB), so a long-running web machine's disk does not fill with every artifact viewed."""
    store = make_store(settings)
    if not isinstance(store, S3Store):  # local: DATA_DIR is the store itself, nothing in it is a copy
        return store
    return CachedStore(store, cache_root=settings.data_dir / "cache" / "fetched",
                       max_bytes=settings.web_artifact_cache_mb * _MB)


def current_store() -> FileStore:
    return current_app.extensions[_EXTENSION]


def publish_upload(upload: StoredUpload) -> None:
    """Hand a probed upload to the store, where workers on any machine fetch it."""
    current_store().publish(f"{UPLOADS}/{upload.stored_name}")


def discard_upload(upload: StoredUpload) -> None:
    """Remove a refused or withdrawn upload, here and (if it got there) in the store.

    A remote store's publish removes the local file once the upload is stored, so a file still here
    never reached the store: refusing it (a bad file) must not depend on the store, nor turn into a 503
    while the store is away.
    """
    published = not upload.path.exists()
    upload.delete()
    if published:
        current_store().delete(f"{UPLOADS}/{upload.stored_name}")


def artifact_file(relative: str) -> Path | None:
    """A local copy of an artifact (fetched from the store into the bounded cache when remote), or None
    if it is gone."""
    try:
        return current_store().fetch(f"{ARTIFACTS}/{relative}")
    except (StoredFileMissingError, ValueError):
        return None
