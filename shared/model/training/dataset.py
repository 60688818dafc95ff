"""`deepfake dataset prepare`: face-crop every labelled video into face-only clips, one per track.

Uses the engine's own detector, tracker and crops, so training sees faces cut exactly as
analysis will. Each finished video leaves a record (OUT_DIR/records/<video>.json, written
atomically after its clips), so a rerun skips it; clips are renamed into place only when whole.
The manifest (manifest.csv) and the list of videos without a usable face (skipped.csv) are
rebuilt from the records at the end of every run.
"""
from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from shared.errors import InvalidOptionsError
from shared.model.training import cropping
from shared.model.training.labels import LabelEntry, read_labels
from shared.model.training.layout import MANIFEST_FILE, RECORDS_DIR, SKIPPED_FILE, PrepareOptions, video_key
from shared.model.training.manifest import ClipRecord, write_manifest

@dataclass(frozen=True)
class Skipped:
    file: str
    label: str
    reason: str
    message: str


@dataclass
class PrepareSummary:
    """What one `prepare` run did; `clips` and `skipped` cover every labelled video."""

    manifest: Path
    skipped_file: Path
    processed: int = 0
    already_done: int = 0
    clips: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def prepare_dataset(
    src_dir: Path, labels: Path, out_dir: Path, *, options: PrepareOptions, jobs: int = 1, progress: bool = True
) -> PrepareSummary:
    """Cut every video of `labels` (paths relative to `src_dir`) into face clips under `out_dir`."""
    if jobs < 1:
        raise InvalidOptionsError(f"jobs must be at least 1, got {jobs}")
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise InvalidOptionsError(f"source directory {src_dir} does not exist")
    entries = read_labels(Path(labels))
    (out_dir / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(manifest=out_dir / MANIFEST_FILE, skipped_file=out_dir / SKIPPED_FILE)
    pending = [e for e in entries if (src_dir / e.file).is_file() and not _record_path(out_dir, e).is_file()]
    summary.already_done = sum(1 for e in entries if _record_path(out_dir, e).is_file())
    summary.warnings = _check_detector(options)
    for _ in _run(pending, src_dir=src_dir, out_dir=out_dir, options=options, jobs=jobs, progress=progress):
        summary.processed += 1
    _collect(entries, src_dir=src_dir, out_dir=out_dir, summary=summary)
    return summary


def _record_path(out_dir: Path, entry: LabelEntry) -> Path:
    return out_dir / RECORDS_DIR / f"{video_key(entry.file)}.json"


def _check_detector(options: PrepareOptions) -> list[str]:
    """Build the detector once up front so a bad choice fails before any work; return its warnings."""
    from shared.model.faces import build_face_detector

    _, warnings = build_face_detector(kind=options.face_detector, device=options.device,
                                      weights_dir=Path(options.weights_dir), max_side=options.detect_max_side)
    return [w.message for w in warnings]


def _run(pending: list[LabelEntry], *, src_dir: Path, out_dir: Path, options: PrepareOptions, jobs: int, progress: bool):
    """Yield one finished video after another, in-process for one job, else in a process pool."""
    bar = tqdm(total=len(pending), desc="videos", unit="video", disable=not progress)
    try:
        if jobs == 1 or len(pending) <= 1:
            for entry in pending:
                yield cropping.prepare_video(entry, src_dir=src_dir, out_dir=out_dir, options=options)
                bar.update()
            return
        yield from _run_pool(pending, src_dir=src_dir, out_dir=out_dir, options=options, jobs=jobs, bar=bar)
    finally:
        bar.close()


def _run_pool(pending, *, src_dir: Path, out_dir: Path, options: PrepareOptions, jobs: int, bar):
    # spawn, not fork: a forked child of a process that already ran torch threads can deadlock.
    with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=get_context("spawn"),
                             initializer=cropping.init_worker, initargs=(options, jobs)) as pool:
        futures = [pool.submit(cropping.prepare_video, e, src_dir=src_dir, out_dir=out_dir, options=options)
                   for e in pending]
        for future in futures:
            yield future.result()
            bar.update()


def _collect(entries: list[LabelEntry], *, src_dir: Path, out_dir: Path, summary: PrepareSummary) -> None:
    records: list[ClipRecord] = []
    for entry in entries:
        record_file = _record_path(out_dir, entry)
        if not record_file.is_file():
            summary.skipped.append(Skipped(entry.file, entry.label, "missing", f"{src_dir / entry.file} does not exist"))
            continue
        record = json.loads(record_file.read_text(encoding="utf-8"))
        if record["status"] != "ok":
            summary.skipped.append(Skipped(entry.file, entry.label, record["reason"], record["message"]))
            continue
        for clip in record["clips"]:
            records.append(ClipRecord(clip=(out_dir / clip["clip"]).resolve(), source=entry.file,
                                      track=int(clip["track"]), frames=int(clip["frames"]), label=entry.label))
    summary.clips = len(records)
    write_manifest(summary.manifest, records)
    _write_skipped(summary.skipped_file, summary.skipped)


def _write_skipped(path: Path, skipped: list[Skipped]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "reason", "message"])
        for item in skipped:
            writer.writerow([item.file, item.label, item.reason, item.message])
    os.replace(tmp, path)
