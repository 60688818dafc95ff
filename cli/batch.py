"""`deepfake batch DIR|LIST.csv`: analyse many videos (overnight) and write one report.

Without a server the videos are analysed here, one after the other, by one engine loaded once;
with `--server` (or $DEEPFAKE_SERVER) they are uploaded as one batch to a running service, which
analyses them while this command follows, or not (`--no-wait`). Either way the report has the rows
of `shared.batch_report`, so it reads the same as the web's export. Handlers import heavy things
lazily: registering this command loads neither torch nor requests.
"""
from __future__ import annotations

import argparse
import csv
import heapq
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from cli.busy import ServiceBusyError, send_patiently
from cli.client import (ENGINE_FLAGS, SERVER_ENV, ApiClient, ServiceError, ServiceTimeoutError,
                        ServiceUnreachableError, add_api_key_flag, resolve_server)
from cli.errors import EXIT_FAILURE, EXIT_INPUT, CommandError
from shared.options import DEVICES

LIST_SUFFIX = ".csv"
LIST_HEADER = "path"
TOP_SUSPICIOUS = 5
# A service that restarts in the night (a deploy, a database failover) is waited for this long
# before the command gives up following the batch; the batch itself goes on on the server.
POLL_PATIENCE_S = 900.0
NOT_FOUND = "file_not_found"
UNREADABLE = "file_unreadable"
REFUSED = "upload_refused"
# Where the batch's meaning of an engine flag differs from `submit`'s.
FLAG_HELP = {"weights": {"help": "checkpoint file name in WEIGHTS_DIR (the server's with --server); "
                                 "without a server also a path such as ./model.pt"}}


@dataclass(frozen=True)
class BatchFile:
    """One input: where to read it, and its name as the user sees it (relative to DIR, or as listed)."""

    position: int
    path: Path
    label: str


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch", help="analyse a folder or a CSV list of videos into one report",
        description="Analyse every video of a folder (or listed in a CSV, one path per row) and write a CSV "
                    "report: in this process, or on a running service with --server. Exit status 0 when every "
                    "file was analysed, 1 when any failed, 2 for a usage error.")
    parser.add_argument("source", type=Path, help="a folder of videos, or a .csv list (first column: path)")
    parser.add_argument("--server", help=f"service URL (default ${SERVER_ENV}); without either, analyse here")
    add_api_key_flag(parser)
    parser.add_argument("--recursive", action="store_true", help="also take the videos of sub-folders")
    parser.add_argument("--output", type=Path, help="the CSV report (default batch-results-<UTC time>.csv)")
    parser.add_argument("--json-output", type=Path, help="also write the report as JSON here")
    parser.add_argument("--name", help="the batch's name on the service (default: the folder or list name)")
    parser.add_argument("--no-wait", action="store_true",
                        help="with a server: upload, print the batch id and page, and return")
    parser.add_argument("--poll-interval", type=float, default=5.0,
                        help="seconds between batch status polls (default 5)")
    for name, spec in ENGINE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, **{**spec, **FLAG_HELP.get(name, {})})
    parser.add_argument("--device", choices=DEVICES, help="without a server: where to run the engine")
    parser.add_argument("--batch-size", type=int, help="without a server: face crops per network pass")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Collect the files, analyse them here or on the service, write the report, print the summary."""
    raw_server = (args.server or os.environ.get(SERVER_ENV) or "").strip()
    _check_mode_flags(args, server_mode=bool(raw_server))
    files = collect_files(args.source, recursive=args.recursive)
    output = args.output or Path(f"batch-results-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.csv")
    if raw_server:
        return _run_on_server(args, files, server=resolve_server(raw_server), output=output)
    return _run_in_process(args, files, output=output)


def _check_mode_flags(args: argparse.Namespace, *, server_mode: bool) -> None:
    if server_mode and (args.device is not None or args.batch_size is not None):
        raise CommandError("--device and --batch-size apply without a server; the service's workers choose",
                           EXIT_INPUT)
    if not server_mode and args.no_wait:
        raise CommandError(f"--no-wait needs a server (--server or ${SERVER_ENV})", EXIT_INPUT)
    if args.poll_interval <= 0:
        raise CommandError("--poll-interval must be a positive number of seconds", EXIT_INPUT)


# Inputs -------------------------------------------------------------------------------------------

def collect_files(source: Path, *, recursive: bool = False) -> list[BatchFile]:
    """The inputs in sorted order of their labels, numbered from 0 as the service numbers a batch's items;
    CommandError when there are none."""
    if source.is_dir():
        found = _folder_videos(source, recursive=recursive)
        hint = "" if recursive else " (--recursive takes sub-folders too)"
    elif source.is_file() and source.suffix.lower() == LIST_SUFFIX:
        found, hint = _listed_videos(source), ""
    elif source.exists():
        raise CommandError(f"{source} is neither a folder nor a {LIST_SUFFIX} list of videos", EXIT_INPUT)
    else:
        raise CommandError(f"no such folder or list: {source}", EXIT_INPUT)
    if not found:
        raise CommandError(f"no videos in {source}{hint}", EXIT_INPUT)
    return [BatchFile(position=number, path=path, label=label)
            for number, (label, path) in enumerate(sorted(found, key=lambda pair: pair[0]))]


def _folder_videos(root: Path, *, recursive: bool) -> list[tuple[str, Path]]:
    """(label, path) of the videos in `root` by extension; hidden files and folders are skipped
    (macOS `._name.mp4` companions are not videos). Folder links are not followed: no loops."""
    from shared.media import VIDEO_FILE_EXTENSIONS

    found = []
    for folder, subfolders, names in os.walk(root, onerror=_warn_unreadable):
        subfolders[:] = sorted(name for name in subfolders if recursive and not name.startswith("."))
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower().lstrip(".") in VIDEO_FILE_EXTENSIONS:
                path = Path(folder, name)
                found.append((path.relative_to(root).as_posix(), path))
    return found


def _warn_unreadable(error: OSError) -> None:
    print(f"deepfake: skipped {error.filename}: {error.strerror}", file=sys.stderr)


def _listed_videos(listing: Path) -> list[tuple[str, Path]]:
    """(label, path) per row of the list: first column, `path` header, blank rows and `#` comments skipped;
    a relative path is taken from the list's folder."""
    found = []
    try:
        with listing.open(newline="", encoding="utf-8-sig") as stream:  # -sig: a spreadsheet's BOM
            for row in csv.reader(stream):
                cell = row[0].strip() if row else ""
                if not cell or cell.startswith("#") or (not found and cell.lower() == LIST_HEADER):
                    continue
                found.append((cell, listing.parent / Path(cell).expanduser()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"cannot read the list {listing}: {exc} (a UTF-8 CSV is expected)", EXIT_INPUT) from None
    return found


# In this process ----------------------------------------------------------------------------------

def _run_in_process(args: argparse.Namespace, files: list[BatchFile], *, output: Path) -> int:
    from shared.options import AnalysisOptions
    from shared.settings import Settings

    options = AnalysisOptions.from_mapping(
        {**{name: getattr(args, name) for name in ENGINE_FLAGS}, "device": args.device,
         "batch_size": args.batch_size, "heatmaps": 0},  # a batch report keeps no pictures: none are made
        allow_paths=True)
    rows: list[dict] = []
    try:
        rows.extend(analyse_in_process(files, options=options, settings=Settings.from_env()))
    except BaseException:  # Ctrl-C or a crash hours in: keep what was done
        if rows:
            write_reports(rows, csv_path=output, json_path=args.json_output)
            print(f"deepfake: stopped after {len(rows)} of {len(files)} files; partial report: {output}",
                  file=sys.stderr)
        raise
    return finish(rows, csv_path=output, json_path=args.json_output)


def analyse_in_process(files: Iterable[BatchFile], *, options: Any, settings: Any) -> Iterator[dict]:
    """One report row per file, in order. The engine loads once, before the first file, so a missing
    checkpoint or device stops the batch at once instead of failing every row."""
    from tqdm import tqdm

    from shared.model.pipeline import EngineCache, analyze_video

    cache = EngineCache(settings)
    cache.get(options)

    def analyse(path: Path, sha256: str) -> dict:
        return analyze_video(path, options=options, cache=cache, sha256=sha256).to_dict()

    first_of: dict[str, dict] = {}  # sha256 -> the row of the first file with that content
    with tqdm(files, unit="file", desc="analysing", file=sys.stderr, disable=not sys.stderr.isatty(),
              dynamic_ncols=True) as bar:
        for item in bar:
            bar.set_postfix_str(item.label)
            yield analyse_file(item, analyse=analyse, first_of=first_of)


def analyse_file(item: BatchFile, *, analyse: Callable[[Path, str], dict], first_of: dict[str, dict]) -> dict:
    """The file's row: analysed, reused from an identical earlier file, or failed with a typed error.

    Only the row is kept; the result (tracks, windows) is dropped as soon as the row is made."""
    from shared.batch_report import report_row
    from shared.errors import EngineError
    from shared.files import sha256_file

    if not item.path.is_file():
        return _failed_row(item, NOT_FOUND, _missing_message(item))
    try:
        sha256 = sha256_file(item.path)
    except OSError as exc:
        return _failed_row(item, UNREADABLE, f"cannot read {item.label}: {exc.strerror or exc}")
    if sha256 in first_of:
        first = first_of[sha256]
        return {**first, "position": item.position, "file": item.label, "reused_from": first["file"]}
    try:
        row = report_row(position=item.position, file=item.label, sha256=sha256, status="succeeded",
                         result=analyse(item.path, sha256))
    except EngineError as exc:
        row = _failed_row(item, exc.code, exc.message, sha256=sha256)
    first_of[sha256] = row
    return row


def _failed_row(item: BatchFile, code: str, message: str, *, sha256: str | None = None) -> dict:
    from shared.batch_report import report_row

    return report_row(position=item.position, file=item.label, sha256=sha256, status="failed", result=None,
                      error_code=code, error_message=message)


def _missing_message(item: BatchFile) -> str:
    if item.path.exists():
        return f"{item.label} is not a regular file (a folder, device or pipe)"
    return f"no such file: {item.label}"


# On a service -------------------------------------------------------------------------------------

def _is_outage(exc: CommandError) -> bool:
    """No answer, or a 5xx: the service may come back (a restart), unlike after a 4xx."""
    return (isinstance(exc, (ServiceUnreachableError, ServiceTimeoutError))
            or (isinstance(exc, ServiceError) and exc.status >= 500))


def _run_on_server(args: argparse.Namespace, files: list[BatchFile], *, server: str, output: Path) -> int:
    client = ApiClient(server, api_key=args.api_key)
    options = {name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name) is not None}
    source = args.source.resolve()
    name = args.name or (source.name if source.is_dir() else source.stem)
    batch = send_patiently(lambda: client.create_batch(name=name, options=options), label=f"batch {name!r}")
    batch_id = batch["id"]
    print(f"batch {batch_id}: {server}/batches/{batch_id}", flush=True)
    uploaded, local_rows = upload_files(client, batch_id, files)
    if args.no_wait:
        return _left_running(server, batch_id, uploaded=uploaded, failed=local_rows)
    rows = []
    if uploaded:
        follow_batch(client, batch_id, interval_s=args.poll_interval)
        rows = client.batch_results(batch_id)["rows"]
    following = max((row["position"] for row in rows), default=-1) + 1
    # Files the service never received are reported after its rows, numbered on from them.
    rows += [{**row, "position": following + number} for number, row in enumerate(local_rows)]
    return finish(rows, csv_path=output, json_path=args.json_output)


def upload_files(client: ApiClient, batch_id: str, files: list[BatchFile]) -> tuple[int, list[dict]]:
    """Upload each file with a progress bar of bytes; (files the service took, failed rows of the others).

    A file that is missing or refused becomes a failed row; a service that stops answering, or that
    stops taking the API key (revoked mid-batch), stops the batch with one line."""
    from tqdm import tqdm

    sizes = {item.position: item.path.stat().st_size for item in files if item.path.is_file()}
    uploaded, failed = 0, []
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="uploading", file=sys.stderr,
              disable=not sys.stderr.isatty(), dynamic_ncols=True) as bar:
        for item in files:
            bar.set_postfix_str(item.label)
            if item.position not in sizes:
                failed.append(_failed_row(item, NOT_FOUND, _missing_message(item)))
                continue
            try:
                _upload_item(client, batch_id, item, bar=bar)
                uploaded += 1
            except (ServiceError, ServiceBusyError) as exc:  # busy: still, after waiting as long as we wait
                failed.append(_failed_row(item, exc.code or REFUSED, exc.message))
            except OSError as exc:
                failed.append(_failed_row(item, UNREADABLE, f"cannot read {item.label}: {exc.strerror or exc}"))
            except CommandError as exc:  # unreachable, no answer, or the key refused: no later file fares better
                raise CommandError(f"{exc}; stopped at {item.label}: batch {batch_id} holds the "
                                   f"{uploaded} files uploaded before it") from None
    return uploaded, failed


def _upload_item(client: ApiClient, batch_id: str, item: BatchFile, *, bar: Any) -> dict:
    """One file, sent again after each 429 once the service's Retry-After has passed (cli.busy)."""
    counted = 0

    def on_read(size: int) -> None:
        nonlocal counted
        counted += size
        bar.update(size)

    def send() -> dict:
        nonlocal counted
        bar.update(-counted)  # a resend counts the file from its start again
        counted = 0
        return client.add_batch_item(batch_id, item.path, label=item.label, on_read=on_read)

    return send_patiently(send, label=item.label)


def follow_batch(client: ApiClient, batch_id: str, *, interval_s: float,
                 patience_s: float = POLL_PATIENCE_S) -> dict:
    """Poll until every item has ended, with a progress bar of items done; returns the final batch JSON.

    While the service is unreachable (or answers 5xx) polling goes on, up to `patience_s` since the
    last answer."""
    from tqdm import tqdm

    last_answer = time.monotonic()
    with tqdm(total=None, unit="file", desc="analysing", file=sys.stderr, disable=not sys.stderr.isatty(),
              dynamic_ncols=True) as bar:
        while True:
            try:
                batch = client.batch(batch_id)
            except CommandError as exc:
                if not _is_outage(exc):
                    raise
                if time.monotonic() - last_answer >= patience_s:
                    raise CommandError(f"{exc}; batch {batch_id} goes on there: "
                                       f"{client.server}/batches/{batch_id}") from None
                time.sleep(interval_s)
                continue
            last_answer = time.monotonic()
            bar.total = batch["total"]
            bar.update(max(batch["done"] - bar.n, 0))
            bar.set_postfix(batch["counts"])
            if batch["finished"]:
                return batch
            time.sleep(interval_s)


def _left_running(server: str, batch_id: str, *, uploaded: int, failed: list[dict]) -> int:
    for row in failed:
        print(f"deepfake: {row['file']}: [{row['error_code']}] {row['error_message']}", file=sys.stderr)
    print(f"uploaded {uploaded} files; results when done: {server}/api/v1/batches/{batch_id}/results.csv")
    return EXIT_FAILURE if failed else 0


# Report -------------------------------------------------------------------------------------------

def finish(rows: list[dict], *, csv_path: Path, json_path: Path | None) -> int:
    """Write the report, print the summary; 0 when every file was analysed, else 1."""
    write_reports(rows, csv_path=csv_path, json_path=json_path)
    print(summary_text(rows, csv_path=csv_path, json_path=json_path))
    return 0 if all(row["status"] == "succeeded" for row in rows) else EXIT_FAILURE


def write_reports(rows: list[dict], *, csv_path: Path, json_path: Path | None) -> None:
    """The CSV report (and the JSON one), each written whole or not at all."""
    from shared.batch_report import report_json, write_csv
    from shared.files import write_atomically

    def write_csv_file(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            write_csv(rows, stream)

    write_atomically(csv_path, write_csv_file)
    if json_path:
        write_atomically(json_path, lambda temporary: Path(temporary).write_text(
            json.dumps(report_json(rows), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))


def summary_text(rows: list[dict], *, csv_path: Path, json_path: Path | None) -> str:
    """Counts per verdict and of failures, the most suspicious files, where the report is."""
    from shared.batch_report import summarize

    summary = summarize(rows)
    counts = [f"{verdict} {count}" for verdict, count in summary["verdicts"].items()]
    counts.append(f"failed {summary['failed']}")
    if summary["statuses"]["cancelled"]:
        counts.append(f"cancelled {summary['statuses']['cancelled']}")
    lines = [f"{summary['total']} files: " + ", ".join(counts)]
    scored = [row for row in rows if row["status"] == "succeeded" and row["fake_probability"] is not None]
    suspicious = heapq.nlargest(TOP_SUSPICIOUS, scored, key=lambda row: (row["fake_probability"], -row["position"]))
    if suspicious:
        lines.append("Most suspicious:")
        lines += [f"  {row['fake_probability']:.3f}  {row['verdict']:<12} {row['file']}" for row in suspicious]
    lines.append(f"Report: {csv_path}" + (f" (JSON: {json_path})" if json_path else ""))
    return "\n".join(lines)
