"""Where uploads and artifacts live, so that every machine of a deployment reaches them.

DATA_DIR is always the local working copy: the web streams an upload into DATA_DIR/uploads, a worker
writes artifacts into DATA_DIR/artifacts. The store says whether that is all:

- `LocalStore` (STORAGE=local, the default): DATA_DIR *is* the storage, on one machine or a folder
  shared by all machines at the same path. `publish`, `fetch` and `evict` change nothing.
- `S3Store` (STORAGE=s3): an S3-compatible bucket holds every file under `S3_PREFIX` + the same
  relative path (`uploads/<name>`, `artifacts/<job>/<attempt>/<name>`). `publish` uploads the local
  file and removes it; `fetch` downloads a file into DATA_DIR when it is not there (the worker's
  upload, the web's artifact); `evict` removes the local copy once it is not needed.

The model cache is not stored here on purpose: compiled models are specific to a machine's CPU
features and runtime versions, so each machine keeps its own (MODEL_CACHE_DIR).
Keys are relative POSIX paths; one that is absolute or climbs out (`..`) is refused.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Protocol

from shared.errors import EngineError
from shared.files import write_atomically
from shared.settings import Settings

UPLOADS = "uploads"
ARTIFACTS = "artifacts"
CHECKPOINTS = "checkpoints"  # a running job's recorded trunk features, for resuming (shared.model.resume)


class StoredFileMissingError(FileNotFoundError):
    """The store has no file under this key."""


# The service's answers for a missing object (a HEAD request has no body, so only its status).
MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Refusals only an operator can fix (wrong bucket, endpoint, region or credentials): retrying them
# would bounce a job forever, so they fail it. Any HTTP 403 counts too (a HEAD's 403 has no code).
REFUSED_CODES = frozenset({
    "AccessDenied", "AccountProblem", "AllAccessDisabled", "AuthorizationHeaderMalformed", "InvalidAccessKeyId",
    "InvalidBucketName", "InvalidToken", "NoSuchBucket", "NotSignedUp", "PermanentRedirect", "SignatureDoesNotMatch",
})


class StorageUnavailableError(Exception):
    """The object store did not answer, or failed in a way that passes (throttling, 5xx, network):
    transient, the job is retried."""


class StorageRefusedError(EngineError):
    """The object store refused the request for good (missing bucket, denied access, wrong credentials):
    the job fails rather than retrying what only an operator can fix."""

    code = "storage_refused"


class StorageConfigError(ValueError):
    """STORAGE names an unknown backend, or its settings are incomplete."""


@dataclass(frozen=True)
class StoredObject:
    """One stored file: its key (relative path) and when it was last written."""

    key: str
    modified: datetime


class FileStore(Protocol):
    remote: bool

    def publish(self, key: str) -> None: ...
    def fetch(self, key: str) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def evict(self, key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def list(self, prefix: str) -> list[StoredObject]: ...


def make_store(settings: Settings) -> FileStore:
    """The store STORAGE selects, rooted at DATA_DIR."""
    if settings.storage == "local":
        return LocalStore(Path(settings.data_dir))
    if settings.storage == "s3":
        if not settings.s3_bucket:
            raise StorageConfigError("STORAGE=s3 needs S3_BUCKET (and S3_ENDPOINT_URL for a non-AWS service)")
        return S3Store(Path(settings.data_dir), bucket=settings.s3_bucket, prefix=settings.s3_prefix,
                       client=s3_client(settings))
    raise StorageConfigError(f"STORAGE must be local or s3, got {settings.storage!r}")


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from the settings; credentials from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY
    when set, else boto3's own chain (AWS_* variables, instance roles)."""
    import boto3
    from botocore.config import Config

    credentials = {}
    if settings.s3_access_key_id:
        credentials = {"aws_access_key_id": settings.s3_access_key_id,
                       "aws_secret_access_key": settings.s3_secret_access_key}
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}), **credentials)


def check_key(key: str) -> str:
    """A relative POSIX path inside the store, or ValueError."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key or "\x00" in key:
        raise ValueError(f"not a relative storage key: {key!r}")
    return path.as_posix()


class LocalStore:
    """DATA_DIR is the storage: every machine sees the same folder (or there is one machine)."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    def publish(self, key: str) -> None:
        check_key(key)

    def fetch(self, key: str) -> Path:
        path = self.local_path(key)
        if not path.is_file():
            raise StoredFileMissingError(key)
        return path

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def evict(self, key: str) -> None:
        check_key(key)

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        folder = self.local_path(prefix)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)

    def list(self, prefix: str) -> list[StoredObject]:
        folder = self.local_path(prefix)
        if not folder.is_dir():
            return []
        return [StoredObject(key=path.relative_to(self.root).as_posix(),
                             modified=datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc))
                for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")]


class S3Store:
    """An S3-compatible bucket holds the files; DATA_DIR keeps only what this process works on."""

    remote = True

    def __init__(self, root: Path, *, bucket: str, prefix: str, client: Any) -> None:
        self.root, self.bucket, self.prefix, self.client = root, bucket, prefix, client

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    def publish(self, key: str) -> None:
        """Upload the local file (multipart, streamed from disk), then remove the local copy."""
        path = self.local_path(key)
        with _remote_errors(key):
            self.client.upload_file(str(path), self.bucket, self.object_key(key))
        path.unlink(missing_ok=True)

    def fetch(self, key: str) -> Path:
        """The local copy, downloaded (atomically) when it is not here yet."""
        path = self.local_path(key)
        if not path.is_file():
            self.download(key, path)
        return path

    def download(self, key: str, path: Path) -> None:
        """Download `key` to `path` through a temporary file beside it (`.fetch-*`), renamed into place
        once whole: a reader of `path` never sees half a file. The copy's mtime is the object's
        LastModified, so every copy of one object (a refetch, another web machine's) has the same time,
        and so the same HTTP ETag and Last-Modified when served."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fetch-")
        os.close(handle)
        try:
            with self._object_errors(key):
                self.client.download_file(self.bucket, self.object_key(key), tmp)
                modified = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))["LastModified"]
            os.utime(tmp, (time.time(), modified.timestamp()))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the bucket holds `key` (a local copy alone does not count)."""
        try:
            with self._object_errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except StoredFileMissingError:
            return False
        return True

    def evict(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        with _remote_errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        self.evict(key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [{"Key": self.object_key(obj.key)} for obj in self.list(prefix, recursive=True)]
        for start in range(0, len(keys), 1000):
            with _remote_errors(prefix):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
        shutil.rmtree(self.local_path(prefix), ignore_errors=True)

    def list(self, prefix: str, *, recursive: bool = False) -> list[StoredObject]:
        """The files directly under `prefix` (every level with `recursive`)."""
        base = self.object_key(prefix).rstrip("/") + "/"
        found = []
        with _remote_errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=base, **({} if recursive else {"Delimiter": "/"})):
                for item in page.get("Contents", ()):
                    found.append(StoredObject(key=item["Key"][len(self.prefix):], modified=item["LastModified"]))
        return found

    @contextmanager
    def _object_errors(self, key: str) -> Iterator[None]:
        """As `_remote_errors`, for a read of one object: a HEAD answers a bare 404 whether the object
        or the whole bucket is missing, so a miss asks about the bucket before it counts as a miss."""
        try:
            with _remote_errors(key):
                yield
        except StoredFileMissingError:
            try:
                with _remote_errors(key):
                    self.client.head_bucket(Bucket=self.bucket)
            except StoredFileMissingError:
                raise StorageRefusedError(_refusal(key, code="NoSuchBucket", detail="the bucket does not exist")) from None
            raise


@contextmanager
def _remote_errors(key: str) -> Iterator[None]:
    """botocore's errors as ours: a missing object is StoredFileMissingError; a refusal retrying cannot
    fix StorageRefusedError (the job fails, 500 on the web); anything else from the service or the
    network StorageUnavailableError (retried by the worker, 503 on the web)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError, ParamValidationError,
                                     PartialCredentialsError)

    try:
        yield
    except S3UploadFailedError as exc:  # upload_file's wrapper around the service's ClientError
        cause = exc.__context__
        raise (_service_error(key, cause) if isinstance(cause, ClientError)
               else StorageUnavailableError(f"object storage failed on {key!r}: {exc}")) from exc
    except ClientError as exc:
        raise _service_error(key, exc) from exc
    except (NoCredentialsError, PartialCredentialsError, ParamValidationError) as exc:
        # Raised before any request is sent: no usable credentials, or a bucket name S3 cannot have.
        raise StorageRefusedError(_refusal(key, code=type(exc).__name__, detail=" ".join(str(exc).split()))) from exc
    except BotoCoreError as exc:
        raise StorageUnavailableError(f"object storage unreachable for {key!r}: {exc}") from exc


def _service_error(key: str, exc: Any) -> Exception:
    """The error of ours for the service's answer (a botocore ClientError)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in MISSING_OBJECT_CODES:
        return StoredFileMissingError(key)
    if code in REFUSED_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return StorageRefusedError(_refusal(key, code=code, detail=str(error.get("Message", ""))))
    return StorageUnavailableError(f"object storage failed on {key!r}: {exc}")


def _refusal(key: str, *, code: str, detail: str) -> str:
    """What an operator needs (never a credential: the service's code and message carry none)."""
    return (f"object storage refused {key!r} with {code or 'no error code'} ({detail or 'no message'}); "
            "retrying will not help: check S3_BUCKET, S3_ENDPOINT_URL and the credentials")


# A `.fetch-*` temporary file this much older than its last write belongs to a download whose process died
# (a live download writes every few milliseconds): the cache may remove it.
ABANDONED_DOWNLOAD_S = 3600


class CachedStore:
    """A remote store as a web machine reads it: what `fetch` downloads stays in a folder of its own
    (`cache_root`, never the working copies under DATA_DIR) up to `max_bytes`, least recently used first out.

    A file's atime records its last use, set explicitly on each hit (noatime mounts never update it);
    its mtime stays the download's, since it makes the file's ETag and a video's Range requests need
    that stable. A fetched file stays until the next fetch that overflows the cap: the request that
    fetched it opens it first, and a file deleted while open is still read whole (POSIX). Several
    threads and processes may fetch and trim at once: each tolerates files the others removed.
    """

    remote = True

    def __init__(self, store: S3Store, *, cache_root: Path, max_bytes: int) -> None:
        self.store, self.cache_root, self.max_bytes = store, cache_root, max_bytes

    def cached_path(self, key: str) -> Path:
        return self.cache_root / check_key(key)

    def local_path(self, key: str) -> Path:
        return self.store.local_path(key)

    def publish(self, key: str) -> None:
        self.store.publish(key)

    def fetch(self, key: str) -> Path:
        """The cached copy of `key`, downloaded (and the cache trimmed) when it is not here."""
        path = self.cached_path(key)
        if _mark_used(path):
            return path
        self.store.download(key, path)
        _mark_used(path)
        self.trim(keep=path)
        return path

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def evict(self, key: str) -> None:
        self.store.evict(key)
        self.cached_path(key).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.cached_path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        self.store.delete_prefix(prefix)
        shutil.rmtree(self.cached_path(prefix), ignore_errors=True)

    def list(self, prefix: str) -> list[StoredObject]:
        return self.store.list(prefix)

    def trim(self, *, keep: Path | None = None) -> None:
        """Remove the least recently used files until the cache holds at most `max_bytes` (`keep`, the
        file about to be served, stays even when it alone is over the cap)."""
        files = sorted(_cached_files(self.cache_root))
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size


def _mark_used(path: Path) -> bool:
    """Set the file's atime to now (its mtime unchanged); False when there is no such file."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except FileNotFoundError:
        return False
    return True


def _cached_files(root: Path) -> Iterator[tuple[float, int, Path]]:
    """(last use, size, path) of each finished file under `root`; abandoned downloads are removed."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                stat = path.stat()
            except FileNotFoundError:  # another thread or process evicted it meanwhile
                continue
            if not name.startswith("."):
                yield stat.st_atime, stat.st_size, path
            elif time.time() - stat.st_mtime > ABANDONED_DOWNLOAD_S:
                path.unlink(missing_ok=True)


class StoreFolder:
    """One folder of a store as named files (shared.model.resume's ChunkStore): list, read, write, delete."""

    def __init__(self, store: FileStore, prefix: str) -> None:
        self.store, self.prefix = store, check_key(prefix)

    def names(self) -> list[str]:
        return sorted(obj.key.rsplit("/", 1)[-1] for obj in self.store.list(self.prefix))

    def read(self, name: str) -> bytes:
        key = f"{self.prefix}/{name}"
        data = self.store.fetch(key).read_bytes()
        if self.store.remote:
            self.store.evict(key)
        return data

    def write(self, name: str, path: Path) -> None:
        """Copy `path` in under `name` atomically (a reader never sees half a file), then publish it."""
        key = f"{self.prefix}/{name}"
        write_atomically(self.store.local_path(key), lambda tmp: shutil.copyfile(path, tmp))
        self.store.publish(key)

    def delete(self, name: str) -> None:
        self.store.delete(f"{self.prefix}/{name}")
