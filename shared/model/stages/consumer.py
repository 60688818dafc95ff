"""The second stage, in the calling thread: crops → CNN features → per-track windows → scores.

Crops gather across prepared batches until the CNN has a full batch. Each track's frames feed
its own `TrackWindower`; a track's windower is closed when the producer says the tracker ended
the track, right after that track's last crops have been embedded. Closed tracks keep only their
span and sampled boxes; the heatmap candidates are a fixed-size heap.
"""
from __future__ import annotations

import heapq
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
import torch

from shared.model.stages.producer import CropOwner, EndedTrack, PreparedBatch
from shared.model.track_boxes import BoxSample
from shared.model.types import WindowScore
from shared.model.windows import TrackWindower, Window


@dataclass(frozen=True)
class WindowPlan:
    """How windows are cut and judged: `length` analysed frames, a new one every `stride`."""

    length: int
    stride: int
    threshold: float

    @classmethod
    def of(cls, options, spec) -> "WindowPlan":
        length = options.sequence_length or spec.sequence_length
        return cls(length=length, stride=options.window_stride or max(1, length // 2),
                   threshold=options.threshold if options.threshold is not None else spec.threshold)


@dataclass(frozen=True)
class FinishedTrack:
    """What is kept of a closed track that will be judged: its span and where its face was."""

    first_frame: int
    last_frame: int
    frames: int
    boxes: tuple[BoxSample, ...]


@dataclass(frozen=True)
class HeatmapCandidate:
    probability: float
    score: WindowScore
    crop: np.ndarray | None


@dataclass
class ScoredVideo:
    """Everything the consumer learnt, handed to result building."""

    frames_analyzed: int
    last_index: int
    tracks: dict[int, FinishedTrack]
    windows: dict[int, list[WindowScore]]
    heatmap_candidates: list[HeatmapCandidate]  # best first
    ignored_tracks: int
    unconfident_tracks: int


@dataclass
class _TopWindows:
    """The `size` most suspicious windows with their key crops (a min-heap)."""

    size: int
    heap: list = field(default_factory=list)
    _tiebreak: itertools.count = field(default_factory=itertools.count)

    def offer(self, probability: float, score: WindowScore, crop: np.ndarray | None) -> None:
        self._push((probability, next(self._tiebreak), score, crop))

    def merge(self, other: "_TopWindows") -> None:
        for entry in other.heap:
            self._push(entry)

    def ranked(self) -> list[HeatmapCandidate]:
        return [HeatmapCandidate(p, s, c) for p, _, s, c in sorted(self.heap, key=lambda e: -e[0])]

    def _push(self, entry: tuple) -> None:
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, entry)
        elif entry[0] > self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)


class WindowConsumer:
    """Embeds crops, fills each track's windows and scores the complete ones."""

    def __init__(self, *, engine, plan: WindowPlan, options, feature_checkpoint=None,
                 producer_ahead: Callable[[], bool] | None = None) -> None:
        """`producer_ahead` says whether the stage feeding this one is ahead of it (waiting for room,
        not working): then the CNN runs on every core of the engine's share, else on the cores the
        producer leaves it (`ThreadBudget.consumer`). None: always every core."""
        self.engine = engine
        self._producer_ahead = producer_ahead
        # shared.model.resume.FeatureCheckpoint: replays an earlier attempt's features, records this one's.
        self.feature_checkpoint = feature_checkpoint
        self.plan = plan
        self.batch_size = options.batch_size
        self.min_track_frames = options.min_track_frames
        self.min_face_score = options.min_face_score
        self.heatmaps = options.heatmaps
        # The seed's LSTM gives each frame one step from a zero state, so a frame's output does not
        # depend on its window: compute it once per frame and let overlapping windows share it.
        self.per_frame_outputs = hasattr(engine.model, "frame_outputs") and hasattr(engine.model, "classify_outputs")
        self.timings = {"embed_s": 0.0, "classify_s": 0.0}
        self.frames_analyzed = 0
        self.last_index = -1
        self._windowers: dict[int, TrackWindower] = {}
        self._pending_crops: list[tuple[np.ndarray | torch.Tensor, list[CropOwner]]] = []  # not yet embedded
        self._pending_count = 0
        self._ending: list[tuple[EndedTrack, bool]] = []  # (track, at end of video), closed after the next embed
        self._ready: list[Window] = []  # complete, not yet scored
        self._scores: dict[int, list[WindowScore]] = defaultdict(list)
        self._new_scores: list[WindowScore] = []  # scored since `take_new_windows`
        self._finished: dict[int, FinishedTrack] = {}
        self._live_top: dict[int, _TopWindows] = {}  # candidates of live tracks
        self._top = _TopWindows(self.heatmaps)
        self._ignored = 0
        self._unconfident = 0

    def accept(self, batch: PreparedBatch) -> None:
        """Take one prepared batch; runs the CNN whenever a full batch of crops has gathered."""
        if batch.crops is not None:
            self._pending_crops.append((batch.crops, batch.owners))
            self._pending_count += len(batch.owners)
        self.frames_analyzed += batch.count
        self.last_index = batch.last_index
        self._ending += [(track, batch.end_of_video) for track in batch.ended]
        if self._pending_count >= self.batch_size:
            self._embed_pending()

    def finish(self) -> ScoredVideo:
        """Embed what is left, close the remaining tracks and score their last windows."""
        self._embed_pending()
        return ScoredVideo(frames_analyzed=self.frames_analyzed, last_index=self.last_index,
                           tracks=dict(self._finished), windows=dict(self._scores),
                           heatmap_candidates=self._top.ranked(), ignored_tracks=self._ignored,
                           unconfident_tracks=self._unconfident)

    def take_new_windows(self) -> tuple[WindowScore, ...]:
        """The windows scored since the last call (for progress reports)."""
        windows, self._new_scores = tuple(self._new_scores), []
        return windows

    # --- embedding ---------------------------------------------------------------------------
    def _embed_pending(self) -> None:
        """Run the CNN on the crops gathered so far, feed the windows, close ended tracks, score."""
        if self._pending_crops:
            crops, host_crops = _joined([c for c, _ in self._pending_crops])
            owners = [o for _, group in self._pending_crops for o in group]
            self._pending_crops, self._pending_count = [], 0
            start = time.perf_counter()
            streams = self._streams()
            compute = self.engine.embedder if streams is None else partial(self.engine.embedder, streams=streams)
            if self.feature_checkpoint is None:
                features = compute(crops)
            else:  # the recording is keyed by the host crops' bytes, on every device alike
                features = self.feature_checkpoint.embed(host_crops, compute)
            self.timings["embed_s"] += time.perf_counter() - start
            crops = host_crops
            if self.per_frame_outputs:
                start = time.perf_counter()
                features = self._frame_outputs(features)
                self.timings["classify_s"] += time.perf_counter() - start
            self._push_features(features, crops, owners)
        self._close_ended()
        self._score_ready()

    def _streams(self) -> int | None:
        """How many of the trunk's streams this batch may use: None (all) while the producer is ahead
        or nothing says, else the cores the working producer leaves."""
        threads = getattr(self.engine, "threads", None)
        if threads is None or self._producer_ahead is None or self._producer_ahead():
            return None
        return threads.consumer

    def _frame_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """The seed model's per-frame LSTM outputs: independent of the window, so computed once."""
        with torch.inference_mode():
            outputs = self.engine.model.frame_outputs(features.to(self.engine.device, torch.float32))
        return outputs.float().cpu()

    def _push_features(self, features: torch.Tensor, crops: np.ndarray, owners: list[CropOwner]) -> None:
        for row, owner in enumerate(owners):
            windower = self._windowers.get(owner.track_id)
            if windower is None:
                windower = self._windowers[owner.track_id] = TrackWindower(
                    track_id=owner.track_id, length=self.plan.length, stride=self.plan.stride)
            window = windower.push(frame_index=owner.frame_index, time_s=owner.time_s, feature=features[row].clone(),
                                   crop=crops[row].copy())
            if window is not None:
                self._ready.append(window)

    # --- track ends ----------------------------------------------------------------------------
    def _close_ended(self) -> None:
        ending, self._ending = self._ending, []
        for track, at_end in ending:
            # At the end of the video a clip shorter than `min_track_frames` may still be judged whole.
            min_frames = min(self.min_track_frames, self.frames_analyzed) if at_end else self.min_track_frames
            self._close(track, min_frames=min_frames)

    def _close(self, track: EndedTrack, *, min_frames: int) -> None:
        windower = self._windowers.pop(track.track_id, None)
        if windower is None:
            return
        candidates = self._live_top.pop(track.track_id, None)
        if not windower.windows_emitted and windower.count < min_frames:
            self._ignored += 1
            return
        if track.best_score < self.min_face_score:
            # never one confident detection: likely not a face (the Haar fallback's false positives)
            self._unconfident += 1
            self._scores.pop(track.track_id, None)
            return
        if candidates is not None:
            self._top.merge(candidates)
        window = windower.finish()
        if window is not None:
            self._ready.append(window)
        # keep only the summary: the windower's buffers are freed with it
        self._finished[track.track_id] = FinishedTrack(windower.first_frame, windower.last_frame, windower.count,
                                                       track.boxes)

    # --- scores ------------------------------------------------------------------------------
    def _score_ready(self) -> None:
        windows, self._ready = self._ready, []
        if not windows:
            return
        start = time.perf_counter()
        by_length: dict[int, list[Window]] = defaultdict(list)
        for window in windows:
            by_length[len(window.frame_indices)].append(window)
        for group in by_length.values():
            probabilities = self._window_probabilities(torch.stack([w.features for w in group]))
            for window, probability in zip(group, probabilities):
                self._record(window, float(probability))
        self.timings["classify_s"] += time.perf_counter() - start

    def _window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        if not self.per_frame_outputs:
            return self.engine.embedder.fake_probabilities(features).numpy()
        with torch.inference_mode():
            logits = self.engine.model.classify_outputs(features.to(self.engine.device, torch.float32))
            return torch.softmax(logits.float(), dim=1)[:, self.engine.spec.fake_index].cpu().numpy()

    def _record(self, window: Window, probability: float) -> None:
        score = WindowScore(track_id=window.track_id, start_frame=window.start_frame,
                            end_frame=window.end_frame, start_s=window.times_s[0], end_s=window.times_s[-1],
                            fake_probability=probability)
        self._scores[window.track_id].append(score)
        self._new_scores.append(score)
        if self.heatmaps > 0:
            # A live track keeps its own candidates until it is kept or dropped at its end.
            if window.track_id in self._finished:
                top = self._top
            else:
                top = self._live_top.setdefault(window.track_id, _TopWindows(self.heatmaps))
            top.offer(probability, score, window.key_crop)


def _joined(parts: list[np.ndarray | torch.Tensor]) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """The pending crops as one batch for the CNN, and as (M, S, S, 3) host crops (what windows keep
    for heatmaps). Crops cut on the GPU go to the CNN from there; only the host copy crosses the bus."""
    if not isinstance(parts[0], torch.Tensor):
        joined = np.concatenate(parts)
        return joined, joined
    from shared.model.device_crops import to_host_crops

    joined = torch.cat(parts)
    return joined, to_host_crops(joined)
