"""One video → its face clips: the engine's detector every k-th frame, the tracker in between,
square crops streamed into one clip per track. Runs in `prepare`'s worker processes."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.model.crops import crop_faces, whole_frames
from shared.errors import EngineError
from shared.model.tracking import FaceTracker, TrackedBox
from shared.model.training.clips import CLIP_SUFFIX, ClipWriter
from shared.model.training.layout import CLIPS_DIR, RECORDS_DIR, PrepareOptions, video_key, write_record
from shared.model.training.labels import LabelEntry

# The detector of this worker process, built once by `init_worker` (or lazily in-process).
_detector_cache: dict[PrepareOptions, object] = {}


def init_worker(options: PrepareOptions, jobs: int) -> None:
    """Pool initialiser: share the cores between the workers, build the detector once."""
    import cv2
    import torch

    threads = max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _detector(options)


def _detector(options: PrepareOptions):
    if options not in _detector_cache:
        from shared.model.faces import build_face_detector

        detector, _ = build_face_detector(kind=options.face_detector, device=options.device,
                                          weights_dir=Path(options.weights_dir), max_side=options.detect_max_side)
        _detector_cache[options] = detector
    return _detector_cache[options]


@dataclass
class _TrackClips:
    """Open clip writers by track id; only tracks long enough are committed."""

    folder: Path
    size: int
    fps: float
    writers: dict[int, ClipWriter]

    def add(self, track_id: int, crop: np.ndarray) -> None:
        writer = self.writers.get(track_id)
        if writer is None:
            writer = self.writers[track_id] = ClipWriter(self.folder / f"track{track_id:03d}{CLIP_SUFFIX}",
                                                         size=self.size, fps=self.fps)
        writer.write(crop)

    def finish(self, *, min_frames: int) -> list[tuple[int, ClipWriter]]:
        kept = []
        for track_id, writer in sorted(self.writers.items()):
            if writer.frames >= min_frames:
                writer.commit()
                kept.append((track_id, writer))
            else:
                writer.discard()
        return kept

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()


def prepare_video(entry: LabelEntry, *, src_dir: Path, out_dir: Path, options: PrepareOptions) -> dict:
    """Cut one video into clips and write its record; returns the record."""
    record = {"video": entry.file, "label": entry.label, "options": _options(options)}
    try:
        clips, decoded, problems = _cut(entry, src_dir=src_dir, out_dir=out_dir, options=options)
    except EngineError as exc:
        record.update(status="skipped", reason=exc.code, message=exc.message, clips=[])
    else:
        record.update(frames_decoded=decoded, problems=problems, clips=clips)
        if clips:
            record.update(status="ok", reason="", message="")
        else:
            record.update(status="skipped", reason="no_face", message=(
                f"no face tracked for at least {options.min_track_frames} frames in {decoded} decoded frames"))
    write_record(out_dir / RECORDS_DIR / f"{video_key(entry.file)}.json", record)
    return record


def _options(options: PrepareOptions) -> dict:
    return {"size": options.size, "margin": options.margin, "face_detector": options.face_detector,
            "detect_every": options.detect_every, "max_frames": options.max_frames}


def _cut(entry: LabelEntry, *, src_dir: Path, out_dir: Path, options: PrepareOptions) -> tuple[list[dict], int, list[dict]]:
    from shared.model.video import VideoReader

    detector = _detector(options)
    reader = VideoReader(src_dir / entry.file, batch_size=32)
    folder = out_dir / CLIPS_DIR / video_key(entry.file)
    tracks = _TrackClips(folder=folder, size=options.size, fps=max(reader.info.fps, 1.0), writers={})
    tracker = FaceTracker()
    decoded = 0
    try:
        with reader:
            for batch in reader:
                count = len(batch) if options.max_frames is None else min(len(batch), options.max_frames - decoded)
                frames, indices = batch.frames[:count], batch.indices[:count]
                for frame, boxes in zip(frames, _track(detector, tracker, frames, indices, first=decoded, every=options.detect_every)):
                    _crop_into(tracks, frame, boxes, detector=detector, options=options)
                decoded += count
                if options.max_frames is not None and decoded >= options.max_frames:
                    break
    except BaseException:
        tracks.discard()
        raise
    kept = tracks.finish(min_frames=options.min_track_frames)
    clips = [{"clip": writer.path.relative_to(out_dir).as_posix(), "track": track_id, "frames": writer.frames}
             for track_id, writer in kept]
    return clips, decoded, [p.to_dict() for p in reader.problems]


def _track(detector, tracker: FaceTracker, frames: np.ndarray, indices: np.ndarray, *, first: int, every: int) -> list[list[TrackedBox]]:
    """Boxes per frame, as the analysis pipeline finds them: detection on every `every`-th frame
    (one batched call), the tracker's carried boxes in between; detector None: the whole frame."""
    if detector is None:
        height, width = frames.shape[1:3]
        whole = np.array([0, 0, width, height], dtype=np.float32)
        return [[TrackedBox(track_id=0, box=whole, score=1.0, detected=True)] for _ in range(len(frames))]
    positions = [i for i in range(len(frames)) if (first + i) % every == 0]
    detections = dict(zip(positions, detector.detect(frames[positions]) if positions else []))
    return [tracker.update(int(indices[i]), detections[i]) if i in detections else tracker.carry(int(indices[i]))
            for i in range(len(frames))]


def _crop_into(tracks: _TrackClips, frame: np.ndarray, boxes: list[TrackedBox], *, detector, options: PrepareOptions) -> None:
    if not boxes:
        return
    if detector is None:
        crops = whole_frames(frame[None], size=options.size)
    else:
        crops = crop_faces(frame, [b.box for b in boxes], size=options.size, margin=options.margin)
    for box, crop in zip(boxes, crops):
        tracks.add(box.track_id, crop)
