"""`deepfake submit|status|result`: talk to a running service over its REST API.

Light on purpose (requests, tqdm): no torch, no database. The upload body is streamed from disk
by `MultipartFile`, so a large video is never read into memory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Mapping
from urllib.parse import urlsplit

from cli.busy import busy_error, send_patiently
from cli.errors import EXIT_FAILURE, EXIT_INPUT, CommandError
from shared.options import CHOICES, CLIENT_OPTIONS, INT_RANGES, OPTION_HELP

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "DEEPFAKE_SERVER"
API_KEY_ENV = "DEEPFAKE_API_KEY"
SERVER_SCHEMES = ("http", "https")
CHUNK_BYTES = 1024 * 1024


def _engine_flag(name: str) -> dict[str, Any]:
    """argparse keywords for option `name`, its values as shared.options declares them."""
    values: dict[str, Any] = {"choices": CHOICES[name]} if name in CHOICES else {}
    if name in INT_RANGES:
        values["type"] = int
    return {**values, "help": OPTION_HELP[name]}  # the pages' and the API document's line too


# Engine settings the API accepts per job (shared.options.CLIENT_OPTIONS), as CLI flags.
ENGINE_FLAGS: dict[str, dict[str, Any]] = {name: _engine_flag(name) for name in CLIENT_OPTIONS}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `submit`, `status` and `result`."""
    submit = subparsers.add_parser("submit", help="upload videos to a running service",
                                   description="Upload videos for analysis, one job each, and print each job id; "
                                               "with --wait, follow them to their verdicts.")
    submit.add_argument("video", type=Path, nargs="+", help="the video files to analyse (one job each)")
    _server_flag(submit)
    submit.add_argument("--wait", action="store_true",
                        help="follow the jobs until they finish and print each verdict")
    submit.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status polls (--wait)")
    for name, spec in ENGINE_FLAGS.items():
        submit.add_argument("--" + name.replace("_", "-"), dest=name, **spec)
    submit.set_defaults(handler=run_submit)

    status = subparsers.add_parser("status", help="show a job's status and progress")
    status.add_argument("job", help="the job id that submit printed")
    _server_flag(status)
    status.add_argument("--json", action="store_true", help="print the job JSON")
    status.set_defaults(handler=run_status)

    result = subparsers.add_parser("result", help="show a finished job's result")
    result.add_argument("job", help="the job id that submit printed")
    _server_flag(result)
    result.add_argument("--json", action="store_true", help="print the engine's result JSON")
    result.set_defaults(handler=run_result)


def _server_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, metavar="URL",
                        help=f"service URL; http:// is assumed without a scheme "
                             f"(default: ${SERVER_ENV}, else {DEFAULT_SERVER})")
    add_api_key_flag(parser)


def add_api_key_flag(parser: argparse.ArgumentParser) -> None:
    """`--api-key KEY`, read by ApiClient (through resolve_api_key) with $DEEPFAKE_API_KEY as its fallback."""
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help=f"the API key of a service that requires one (default: ${API_KEY_ENV}, which "
                             "keeps it out of the process list)")


def resolve_server(raw: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """The service URL to talk to: `raw` (--server), else $DEEPFAKE_SERVER, else the local default.

    A URL without a scheme (`127.0.0.1:8000`) gets `http://`; a trailing slash is dropped; any
    scheme but http/https is refused with a CommandError.
    """
    environ = os.environ if environ is None else environ
    url = (raw or "").strip() or environ.get(SERVER_ENV, "").strip() or DEFAULT_SERVER
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in SERVER_SCHEMES:
        raise CommandError(f"unsupported server URL {url!r}: use http:// or https://", EXIT_INPUT)
    if not parts.hostname:
        raise CommandError(f"server URL {url!r} names no host (e.g. http://127.0.0.1:8000)", EXIT_INPUT)
    return url.rstrip("/")


class MultipartFile:
    """A multipart/form-data body: text fields, then one file read from disk chunk by chunk.

    File-like (`read`) with a known `len()`, so requests sends it with a Content-Length and
    without loading it.
    """

    def __init__(self, *, path: Path, fields: dict[str, str], file_field: str = "video",
                 on_read: Callable[[int], None] | None = None) -> None:
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._on_read = on_read
        self._head = self._fields(fields) + self._file_header(file_field, path.name)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file_size = path.stat().st_size
        self._file: IO[bytes] = open(path, "rb")
        self._segments: list[bytes | IO[bytes]] = [self._head, self._file, self._tail]

    def __len__(self) -> int:
        return len(self._head) + self._file_size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body (all the rest when negative), crossing part ends as needed."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_BYTES), b""))
        out = bytearray()
        while len(out) < size and self._segments:
            out += self._next_piece(size - len(out))
        return bytes(out)

    def _next_piece(self, limit: int) -> bytes:
        segment = self._segments[0]
        if isinstance(segment, bytes):
            piece, rest = segment[:limit], segment[limit:]
            if rest:
                self._segments[0] = rest
            else:
                self._segments.pop(0)
            return piece
        piece = segment.read(limit)
        if not piece:
            self._segments.pop(0)
        elif self._on_read:
            self._on_read(len(piece))
        return piece

    def close(self) -> None:
        self._file.close()

    def _fields(self, fields: dict[str, str]) -> bytes:
        parts = [f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                 for name, value in fields.items()]
        return "".join(parts).encode()

    def _file_header(self, field: str, filename: str) -> bytes:
        return (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{_quote_filename(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()


def _quote_filename(name: str) -> str:
    """Escape a file name for a Content-Disposition header the way browsers do."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class ApiClient:
    """The service's REST API; every error becomes a one-line CommandError of a type that says what failed.

    `api_key` (else $DEEPFAKE_API_KEY) goes with every request as `Authorization: Bearer`.
    """

    def __init__(self, server: str, *, timeout_s: float = 30.0, api_key: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        import requests

        self.server = server.rstrip("/")
        self.timeout_s = timeout_s
        self.http = requests.Session()
        key = resolve_api_key(api_key, environ=environ)
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def submit(self, video: Path, *, params: dict[str, str], on_read: Callable[[int], None] | None = None) -> dict:
        return self._upload("/api/v1/jobs", video, fields=params, on_read=on_read)

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/api/v1/jobs/{job_id}")

    def create_batch(self, *, name: str, options: dict[str, Any]) -> dict:
        return self._call("POST", "/api/v1/batches", json={"name": name, "options": options})

    def add_batch_item(self, batch_id: str, video: Path, *, label: str,
                       on_read: Callable[[int], None] | None = None) -> dict:
        """Upload one file of a batch (streamed from disk); `label` is its name in the batch's report."""
        return self._upload(f"/api/v1/batches/{batch_id}/items", video, fields={"path": label}, on_read=on_read)

    def batch(self, batch_id: str) -> dict:
        return self._call("GET", f"/api/v1/batches/{batch_id}")

    def batch_results(self, batch_id: str) -> dict:
        return self._call("GET", f"/api/v1/batches/{batch_id}/results.json")

    def _upload(self, path: str, video: Path, *, fields: dict[str, str],
                on_read: Callable[[int], None] | None) -> dict:
        body = MultipartFile(path=video, fields=fields, on_read=on_read)
        try:
            return self._call("POST", path, data=body, headers={"Content-Type": body.content_type})
        finally:
            body.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        import requests

        try:
            response = self.http.request(method, self.server + path, timeout=self.timeout_s, **kwargs)
        except requests.Timeout:
            raise ServiceTimeoutError(self.server, self.timeout_s) from None
        except requests.ConnectionError as exc:
            raise ServiceUnreachableError(self.server, exc) from None
        except requests.RequestException as exc:
            raise CommandError(f"request to the service at {self.server} failed: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 401:
            raise UnauthorizedError(self.server, key_sent="Authorization" in self.http.headers)
        if response.status_code == 403:
            raise ForbiddenError(self.server, ServiceError(403, body))
        busy = busy_error(response.status_code, response.headers, body)
        if busy is not None:
            raise busy
        if response.status_code >= 400 or not isinstance(body, dict):
            raise ServiceError(response.status_code, body)
        return body


def resolve_api_key(raw: str | None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """The API key to send: `raw` (--api-key), else $DEEPFAKE_API_KEY, else none."""
    environ = os.environ if environ is None else environ
    return (raw or "").strip() or environ.get(API_KEY_ENV, "").strip() or None


class AccessRefusedError(CommandError):
    """The service refused who is asking (401, 403): no other request will fare better, so a command stops."""


class UnauthorizedError(AccessRefusedError):
    """401: the service requires an API key (none was sent) or refused the one sent."""

    def __init__(self, server: str, *, key_sent: bool) -> None:
        problem = ("refused the API key (HTTP 401: unknown, mistyped or revoked)" if key_sent
                   else "requires an API key (HTTP 401)")
        super().__init__(f"the service at {server} {problem}: pass --api-key or set {API_KEY_ENV} "
                         "(create one with `deepfake keys create`)")


class ForbiddenError(AccessRefusedError):
    """403: the service (or a proxy before it) forbids the request whatever is sent."""

    def __init__(self, server: str, answer: ServiceError) -> None:
        super().__init__(f"the service at {server} forbids this request: {answer}; if another API key "
                         f"has access, pass --api-key or set {API_KEY_ENV}")


class ServiceError(CommandError):
    """Any other error answer (4xx, 5xx, or no JSON): its HTTP status, the service's error code (None
    when it sent none) and message."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.code: str | None = str(error["code"]) if error.get("code") else None
        said = error.get("message", "request failed")
        # `message` without the code, for a report that has a column for it.
        self.message = (f"{said} (HTTP {status})" if self.code
                        else f"the service answered HTTP {status} without a JSON body")
        super().__init__(f"{said} [{self.code}] (HTTP {status})" if self.code else self.message)


class ServiceTimeoutError(CommandError):
    """The service took the request but did not answer in time."""

    def __init__(self, server: str, timeout_s: float) -> None:
        super().__init__(f"the service at {server} did not answer within {timeout_s:g} s")


class ServiceUnreachableError(CommandError):
    """Nothing answers at the server URL: most often no `deepfake serve` is running."""

    def __init__(self, server: str, cause: Exception) -> None:
        super().__init__(f"cannot reach the service at {server} ({_why_unreachable(cause)}); start one with "
                         f"`deepfake serve`, or pass --server URL or set {SERVER_ENV} to a running one")


def _why_unreachable(exc: Exception) -> str:
    # requests folds refusals, unknown hosts and TLS failures into ConnectionError; say which one.
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "resolve" in text.lower() or "name or service not known" in text.lower():
        return "host name not found"
    return type(exc).__name__


def run_submit(args: argparse.Namespace) -> int:
    """Upload each video as its own job and print the job ids, one a line, in the order given;
    with --wait follow them all and print each verdict. Exit status 1 if any upload or job failed.

    A video the service refuses is reported and the others still go; a service that cannot be
    reached stops the command.
    """
    folder = next((video for video in args.video if video.is_dir()), None)
    if folder is not None:
        raise CommandError(f"{folder} is a folder; `deepfake batch {folder}` analyses every video in it", EXIT_INPUT)
    missing = [str(video) for video in args.video if not video.is_file()]
    if missing:
        raise CommandError(f"no such file: {', '.join(missing)}")
    params = {name: str(getattr(args, name)) for name in ENGINE_FLAGS if getattr(args, name) is not None}
    client = ApiClient(resolve_server(args.server), api_key=args.api_key)
    jobs, failures = [], 0
    for video in args.video:
        try:
            jobs.append((video, _upload(client, video, params=params)))
        except (ServiceUnreachableError, AccessRefusedError):
            raise
        except CommandError as exc:
            _say_error(f"{video}: {exc}")
            failures += 1
    if args.wait:
        failures += _follow_all(client, jobs, interval_s=args.poll_interval)
    return EXIT_FAILURE if failures else 0


def _upload(client: ApiClient, video: Path, *, params: dict[str, str]) -> dict:
    """One upload with a progress bar on a terminal; prints the job id (stdout) and its page (stderr)."""
    from tqdm import tqdm

    with tqdm(total=video.stat().st_size, unit="B", unit_scale=True, desc=f"uploading {video.name}",
              file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True) as bar:
        def send() -> dict:
            bar.reset()  # a resend after a 429 starts the file over
            return client.submit(video, params=params, on_read=bar.update)

        job = send_patiently(send, label=str(video))
    print(job["id"], flush=True)
    print(f"{video}: queued; page: {client.server}{job['links']['page']}", file=sys.stderr, flush=True)
    return job


def _follow_all(client: ApiClient, jobs: list[tuple[Path, dict]], *, interval_s: float) -> int:
    """Follow the jobs in turn (they run in queue order) and print each outcome; returns how many failed."""
    failures = 0
    for video, job in jobs:
        final = follow(client, job["id"], interval_s=interval_s)
        if len(jobs) > 1:
            print(f"\n{video} (job {job['id']}):", flush=True)
        try:
            _print_outcome(final)
        except CommandError as exc:
            _say_error(str(exc))
            failures += 1
    return failures


def _say_error(message: str) -> None:
    # The same form as cli.errors.run_handler, for failures that do not end the command.
    print(f"deepfake: error: {message}", file=sys.stderr, flush=True)


def follow(client: ApiClient, job_id: str, *, interval_s: float) -> dict:
    """Poll until the job finishes, with a progress bar of analysed frames; returns the final job."""
    from tqdm import tqdm

    from shared.db.models import TERMINAL_STATUSES  # here, not at import: SQLAlchemy costs every command 0.3 s

    terminal = {status.value for status in TERMINAL_STATUSES}
    with tqdm(total=0, unit="frame", desc="queued", file=sys.stderr, disable=not sys.stderr.isatty(),
              dynamic_ncols=True) as bar:
        while True:
            job = client.job(job_id)
            progress = job["progress"]
            bar.set_description(job["status"] if job["status"] != "queued"
                                else f"queued (position {job.get('queue_position') or '?'})")
            bar.total = progress["frames_total"] or bar.total
            bar.update(max(progress["frames_done"] - bar.n, 0))
            if job["status"] in terminal:
                return job
            time.sleep(interval_s)


def run_status(args: argparse.Namespace) -> int:
    """Print one line about the job (or its JSON)."""
    job = ApiClient(resolve_server(args.server), api_key=args.api_key).job(args.job)
    print(json.dumps(job, indent=2) if args.json else status_line(job))
    return 0


def status_line(job: dict) -> str:
    """`<id>: <status> …` with the detail that matters in that state."""
    status, progress = job["status"], job["progress"]
    head = f"{job['id']}: {status}"
    if status == "queued":
        return f"{head} (position {job.get('queue_position') or '?'} in the queue)"
    if status == "running":
        total = progress["frames_total"] or "?"
        eta = f", about {progress['eta_s']:.0f} s left" if progress.get("eta_s") is not None else ""
        return f"{head}: {progress['frames_done']}/{total} frames ({progress['fraction'] * 100:.0f} %){eta}"
    if status == "succeeded":
        return f"{head}: {job.get('verdict')}{_probability_note(job)}"
    if status == "failed":
        return f"{head}: [{job['error']['code']}] {job['error']['message']}"
    return head


def _probability_note(job: dict) -> str:
    """` (fake probability 54%; too close to call)`, as the job page says it; empty when nothing was scored."""
    from shared.model.report import percent, verdict_note

    probability = job.get("fake_probability")
    if probability is None:
        return ""
    note = verdict_note(verdict=job["verdict"], fake_probability=probability)
    return f" (fake probability {percent(probability)}; {note})"


def run_result(args: argparse.Namespace) -> int:
    """Print a finished job's result: readable, or the engine's JSON with --json."""
    job = ApiClient(resolve_server(args.server), api_key=args.api_key).job(args.job)
    if job["status"] != "succeeded":
        return _print_outcome(job)
    if args.json:
        json.dump(job["result"], sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_summary(job)
    return 0


def _print_outcome(job: dict) -> int:
    """The verdict of a succeeded job; any other state is an error with a one-line reason."""
    status = job["status"]
    if status == "succeeded":
        _print_summary(job)
        return 0
    if status == "failed":
        raise CommandError(f"job {job['id']} failed: [{job['error']['code']}] {job['error']['message']}")
    if status == "cancelled":
        raise CommandError(f"job {job['id']} was cancelled")
    raise CommandError(f"job {job['id']} has no result yet ({status_line(job)}); try `deepfake status {job['id']}`")


def _print_summary(job: dict) -> None:
    from cli.analyze import summary

    print(summary(job["result"]))
