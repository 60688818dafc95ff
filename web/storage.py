"""The app's file store (shared.storage): uploads are published to it once probed, artifacts read from it."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from shared.storage import ARTIFACTS, UPLOADS, FileStore, StoredFileMissingError, make_store
from web.uploads import StoredUpload

_EXTENSION = "deepfake.store"


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = make_store(app.extensions["deepfake.settings"])


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
    """A local copy of an artifact (fetched from the store when remote), or None if it is gone."""
    try:
        return current_store().fetch(f"{ARTIFACTS}/{relative}")
    except (StoredFileMissingError, ValueError):
        return None
