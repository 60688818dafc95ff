"""The first stage, in the prefetch thread: decoded frames → faces detected and tracked → crops.

Only crops leave this stage, with which track and frame each belongs to; the frames themselves
are dropped once cropped. Each batch also says which tracks ended in it (the tracker decides),
with what the later stages need to know about them: their most confident detection and boxes.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch

from shared.model.crops import crop_faces, whole_frames
from shared.model.track_boxes import BoxSample, BoxSampler
from shared.model.tracking import FaceTracker, TrackedBox, patience_rounds
from shared.model.types import FrameBatch, frame_size, stacked_frames

WHOLE_FRAME_TRACK = 0  # without a face detector the whole frame is one track
# PIL releases the GIL while resizing; more threads than this stop paying on the frame sizes seen.
MAX_CROP_THREADS = 8


class CropOwner(NamedTuple):
    """Which track and frame a crop belongs to, and the box it was cut around (frame pixels)."""

    track_id: int
    frame_index: int
    time_s: float
    box: np.ndarray


@dataclass(frozen=True)
class EndedTrack:
    """A track the tracker closed: the later stages free its state and judge it by these."""

    track_id: int
    best_score: float  # its most confident detection
    boxes: tuple[BoxSample, ...]


@dataclass(frozen=True)
class PreparedBatch:
    """One decoded batch after detection, tracking and cropping: the frames themselves are gone."""

    count: int  # analysed frames in the batch (0 for the closing batch)
    last_index: int  # source index of the last frame decoded so far
    # (M, S, S, 3) uint8 host crops in frame order; (M, 3, S, S) uint8 tensors when cut on the device
    crops: np.ndarray | torch.Tensor | None
    owners: list[CropOwner]  # one per crop
    ended: tuple[EndedTrack, ...] = ()
    end_of_video: bool = False  # the closing batch: `ended` holds every track still open


class CropProducer:
    """Detects, tracks and crops faces batch by batch; owns the tracker and its own timings."""

    def __init__(self, *, detector, detect_every: int, full_detect_every: int, input_size: int,
                 crop_margin: float, frame_s: float, crop_threads: int = MAX_CROP_THREADS) -> None:
        """`detector` None crops whole frames (one track); else faces are detected every
        `detect_every`-th analysed frame (whole-frame searches every `full_detect_every`-th round
        for detectors that can search near known faces). `frame_s` is the time between analysed
        frames, which turns the tracker's patience into detection rounds. `crop_threads` is the crop
        pool's share of the process's thread budget."""
        self.detector = detector
        self.detect_every = detect_every
        self.full_detect_every = full_detect_every
        self.input_size = input_size
        self.crop_margin = crop_margin
        self.tracker = FaceTracker(max_missed=patience_rounds(round_s=frame_s * detect_every))
        self.timings = {"detect_s": 0.0, "crop_s": 0.0}
        self._detection_rounds = 0
        self._position = 0  # analysed frames seen so far
        self._last_index = -1
        self._best_score: dict[int, float] = {}
        self._boxes: dict[int, BoxSampler] = {}
        # One crop thread is this thread itself: handing each frame to a pool of one only adds overhead.
        workers = max(1, min(MAX_CROP_THREADS, crop_threads))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crop") if workers > 1 else None

    def batches(self, frames: Iterable[FrameBatch]) -> Iterator[PreparedBatch]:
        """Prepared batches, then one closing batch that ends every open track."""
        for batch in frames:
            yield self.prepare(batch)
        yield self.closing_batch()

    def prepare(self, batch: FrameBatch) -> PreparedBatch:
        tracked = self._track(batch)
        self._position += len(batch)
        self._last_index = int(batch.indices[-1])
        self._remember(batch, tracked)
        start = time.perf_counter()
        crops, owners = self._crop(batch, tracked)
        self.timings["crop_s"] += time.perf_counter() - start
        return PreparedBatch(count=len(batch), last_index=self._last_index, crops=crops, owners=owners,
                             ended=self._ended(self.tracker.take_ended()))

    def closing_batch(self) -> PreparedBatch:
        """The end of the video: every track still open ends."""
        ids = sorted(self._boxes) if self.detector is None else self.tracker.finish()
        return PreparedBatch(count=0, last_index=self._last_index, crops=None, owners=[],
                             ended=self._ended(ids), end_of_video=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # --- detection and tracking ----------------------------------------------------------------
    def _track(self, batch: FrameBatch) -> list[list[TrackedBox]]:
        """Boxes per frame of the batch: detect every k-th analysed frame, carry boxes between."""
        count = len(batch)
        if self.detector is None:
            height, width = frame_size(batch.frames)
            whole = np.array([0, 0, width, height], dtype=np.float32)
            return [[TrackedBox(track_id=WHOLE_FRAME_TRACK, box=whole, score=1.0, detected=True)]
                    for _ in range(count)]
        positions = [i for i in range(count) if (self._position + i) % self.detect_every == 0]
        if hasattr(self.detector, "detect_near"):
            return self._track_near(batch, positions)
        start = time.perf_counter()
        detections = self.detector.detect(stacked_frames(batch.frames, positions)) if positions else []
        self.timings["detect_s"] += time.perf_counter() - start
        by_position = dict(zip(positions, detections))
        tracked = []
        for i in range(count):
            index = int(batch.indices[i])
            if i in by_position:
                tracked.append(self.tracker.update(index, by_position[i]))
            else:
                tracked.append(self.tracker.carry(index))
        return tracked

    def _track_near(self, batch: FrameBatch, positions: list[int]) -> list[list[TrackedBox]]:
        """Frame by frame, for detectors that can search near known faces (the Haar fallback).

        Every `full_detect_every`-th detection round, and whenever no face is tracked, searches the
        whole frame; the rounds between search only around the tracks' predicted boxes, which costs a
        tenth as much. A face that enters the picture is therefore found at the next whole-frame round.
        """
        wanted = set(positions)
        tracked = []
        for i in range(len(batch)):
            index = int(batch.indices[i])
            if i not in wanted:
                tracked.append(self.tracker.carry(index))
                continue
            start = time.perf_counter()
            near = self.tracker.predicted_boxes(index)
            if near and self._detection_rounds % self.full_detect_every:
                detections = self.detector.detect_near(batch.frames[i], near)
            else:
                detections = self.detector.detect(stacked_frames(batch.frames, [i]))[0]
            self._detection_rounds += 1
            self.timings["detect_s"] += time.perf_counter() - start
            tracked.append(self.tracker.update(index, detections))
        return tracked

    # --- what the later stages learn about each track ---------------------------------------------
    def _remember(self, batch: FrameBatch, tracked: list[list[TrackedBox]]) -> None:
        """Each track's most confident detection, and its detected boxes (sampled)."""
        for i, boxes in enumerate(tracked):
            for box in boxes:
                track_id = box.track_id
                self._best_score[track_id] = max(self._best_score.get(track_id, 0.0), float(box.score))
                if box.detected:
                    sampler = self._boxes.setdefault(track_id, BoxSampler())
                    sampler.offer(BoxSample.of(frame=int(batch.indices[i]), t=float(batch.times_s[i]), box=box.box))

    def _ended(self, track_ids: list[int]) -> tuple[EndedTrack, ...]:
        ended = []
        for track_id in track_ids:
            sampler = self._boxes.pop(track_id, None)
            ended.append(EndedTrack(track_id=track_id, best_score=self._best_score.pop(track_id, 0.0),
                                    boxes=sampler.samples() if sampler is not None else ()))
        return tuple(ended)

    # --- crops ------------------------------------------------------------------------------
    def _crop(self, batch: FrameBatch, tracked: list[list[TrackedBox]]) -> tuple[np.ndarray | None, list[CropOwner]]:
        """Face crops of the batch in frame order, and the owner of each crop.

        Frames are cropped in parallel threads: PIL releases the GIL while resizing, which pays
        on many-core machines (a 1080p whole frame takes ~10 ms to shrink with antialiasing).
        """
        owners = [CropOwner(b.track_id, int(batch.indices[i]), float(batch.times_s[i]), b.box)
                  for i, boxes in enumerate(tracked) for b in boxes]
        if not owners:
            return None, owners
        if isinstance(batch.frames, torch.Tensor):
            return self._crop_on_device(batch.frames, tracked), owners
        jobs = [(batch.frames[i], boxes) for i, boxes in enumerate(tracked) if boxes]
        if self._pool is not None and len(jobs) > 1:
            crops = list(self._pool.map(self._crop_frame, jobs))
        else:
            crops = [self._crop_frame(job) for job in jobs]
        return np.concatenate(crops), owners

    def _crop_on_device(self, frames: torch.Tensor, tracked: list[list[TrackedBox]]) -> torch.Tensor:
        """Frames decoded on the GPU are cut there, every box of the batch in one batched op."""
        from shared.model.device_crops import crop_faces_on_device, whole_frames_on_device

        if self.detector is None:
            return whole_frames_on_device(frames, size=self.input_size)
        rows = np.array([i for i, boxes in enumerate(tracked) for _ in boxes], dtype=np.int64)
        boxes = np.stack([b.box for per_frame in tracked for b in per_frame])
        return crop_faces_on_device(frames, rows, boxes, size=self.input_size, margin=self.crop_margin)

    def _crop_frame(self, job: tuple[np.ndarray, list[TrackedBox]]) -> np.ndarray:
        frame, boxes = job
        if self.detector is None:
            return whole_frames(frame[None], size=self.input_size)
        return crop_faces(frame, [b.box for b in boxes], size=self.input_size, margin=self.crop_margin)

