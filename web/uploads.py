"""Receive a multipart upload straight to disk: chunked, capped, hashed while streaming.

Werkzeug's multipart parser calls our stream factory for each file part; the factory hands it a
writer that lands in DATA_DIR/uploads/<uuid4>.part, so the video is never held in memory. Once
probed, the file is renamed to the extension of the container found in it (`stored_as`): nothing in
a stored name comes from the client, whose file name is kept only as a label.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from web.errors import ApiError

VIDEO_FIELD = "video"
RECEIVING_SUFFIX = "part"
# The probe's container name -> the extension a stored upload gets.
CONTAINER_EXTENSIONS = {"mp4": "mp4", "mov": "mov", "3gp": "3gp", "matroska": "mkv", "avi": "avi", "asf": "wmv",
                        "flv": "flv", "gif": "gif", "mpegts": "ts"}


class MalformedFormError(ApiError):
    status = 400
    code = "malformed_form"


class FormTooLargeError(ApiError):
    """Too many parts or an oversized text field: the form, not the video, broke a limit."""

    status = 413
    code = "form_too_large"


@dataclass(frozen=True)
class StoredUpload:
    """A file the server wrote: where it is and what it was called by the client."""

    path: Path
    original_name: str
    size: int
    sha256: str

    @property
    def stored_name(self) -> str:
        return self.path.name

    def delete(self) -> None:
        """Remove the stored file (it was refused, or never queued)."""
        self.path.unlink(missing_ok=True)

    def stored_as(self, container: str) -> "StoredUpload":
        """The same upload renamed to the extension of the container the probe found (`bin` if unknown)."""
        path = self.path.with_suffix("." + CONTAINER_EXTENSIONS.get(container, "bin"))
        self.path.rename(path)
        return replace(self, path=path)


@dataclass(frozen=True)
class ReceivedForm:
    """The parsed body: text fields (first value each), the kept video, and what the caller must refuse."""

    fields: dict[str, str]
    video: StoredUpload | None
    repeated: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = ()


class CappedHashingWriter:
    """A writable file that counts and hashes what passes through and refuses more than `max_bytes`."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._file: IO[bytes] = open(path, "xb")

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise RequestEntityTooLarge()
        self._sha256.update(data)
        return self._file.write(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()

    def seek(self, offset: int, whence: int = 0) -> int:
        # The parser rewinds each file when the part ends; the data is already on disk.
        return self._file.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


class UploadReceiver:
    """Parses one request's multipart body, tracking every file it creates so none is left behind."""

    def __init__(self, *, uploads_dir: Path, max_bytes: int) -> None:
        self.uploads_dir = uploads_dir
        self.max_bytes = max_bytes
        self.writers: list[CappedHashingWriter] = []

    def stream_factory(self, total_content_length: int | None, content_type: str | None,
                       filename: str | None = None, content_length: int | None = None) -> CappedHashingWriter:
        """Werkzeug's stream_factory hook: a new server-named file for each file part."""
        path = self.uploads_dir / f"{uuid.uuid4()}.{RECEIVING_SUFFIX}"
        writer = CappedHashingWriter(path, max_bytes=self.max_bytes)
        self.writers.append(writer)
        return writer

    def receive(self, request: Request, *, max_form_memory_size: int, max_form_parts: int) -> ReceivedForm:
        """Parse the body; on any failure every partial file is deleted and the error re-raised."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        # Not silent: a body that cannot be parsed is an error to report, not an empty form.
        parser = FormDataParser(stream_factory=self.stream_factory, max_form_memory_size=max_form_memory_size,
                                max_content_length=request.max_content_length, max_form_parts=max_form_parts,
                                silent=False)
        try:
            try:
                _, form, files = parser.parse(request.stream, request.mimetype, request.content_length,
                                              request.mimetype_params)
            except ValueError as exc:
                raise MalformedFormError(f"the multipart/form-data body could not be parsed: {exc}") from None
            except RequestEntityTooLarge:
                if self._over_cap(request):
                    raise
                raise FormTooLargeError(f"the form has more than {max_form_parts} parts, or a text field over "
                                        f"{max_form_memory_size} bytes") from None
            video = self._keep_video(files.get(VIDEO_FIELD))
        except BaseException:
            self.discard_all()
            raise
        repeated = sorted(name for name, values in [*form.lists(), *files.lists()] if len(values) > 1)
        extra_files = sorted(name for name in files if name != VIDEO_FIELD)
        return ReceivedForm(fields=form.to_dict(), video=video, repeated=tuple(repeated),
                            extra_files=tuple(extra_files))

    def _over_cap(self, request: Request) -> bool:
        """Whether the upload itself, not the form around it, was too large."""
        declared = request.content_length or 0
        limit = request.max_content_length
        return any(w.size > self.max_bytes for w in self.writers) or (limit is not None and declared > limit)

    def discard_all(self) -> None:
        for writer in self.writers:
            writer.close()
            writer.path.unlink(missing_ok=True)

    def _keep_video(self, storage: FileStorage | None) -> StoredUpload | None:
        """Close every writer; keep the `video` part's file and delete the rest."""
        kept = None
        for writer in self.writers:
            writer.close()
            if storage is not None and storage.stream is writer and kept is None:
                kept = StoredUpload(path=writer.path, original_name=_display_name(storage.filename),
                                    size=writer.size, sha256=writer.hexdigest())
            else:
                writer.path.unlink(missing_ok=True)
        return kept


def _display_name(filename: str | None) -> str:
    """The client's file name as a label only: last path component, printable, bounded."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:255] or "upload"
