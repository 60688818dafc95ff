"""The whole-video pipeline: decode → detect/track → crop → CNN features → windows → verdicts.

Frames stream through in batches; each analysed frame's features are computed once and shared by
every window that contains it; per track only the last `sequence_length` frames are kept, so memory
does not grow with the video's length.
"""
from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from shared.model import aggregation
from shared.errors import AnalysisCancelled, NoDecodableFramesError
from shared.model.result import AnalysisResult, Artifact, TrackResult
from shared.model.types import FrameBatch, Progress, Reason, WindowScore
from shared.model.windows import TrackWindower, Window
from shared.options import AnalysisOptions
from shared.settings import Settings

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]
PROGRESS_EVERY_S = 0.5
# Decoded frames held per batch are capped by bytes, not by the CNN batch size: 32 frames of 4K
# video would be 800 MB. The CNN still gets full batches: crops accumulate across decode batches.
# 24 MiB (9 frames of 720p) measured as fast as 48 here, with ~90 MiB less peak RSS.
DECODE_BATCH_BYTES = 24 * 2**20


@dataclass
class LoadedEngine:
    """A model, its preprocessing and a face detector, loaded once and reused across videos."""

    model: torch.nn.Module
    spec: object  # checkpoints.ModelSpec
    embedder: object  # runtime.Embedder
    detector: object | None  # faces.FaceDetector, None = whole frame
    device: torch.device
    warnings: list[Reason]
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def detector_name(self) -> str:
        return "none" if self.detector is None else self.detector.name


@dataclass(frozen=True)
class _Prepared:
    """One decoded batch after detection, tracking and cropping: the frames themselves are gone."""

    count: int  # analysed frames in the batch
    last_index: int  # source index of its last frame
    crops: np.ndarray | None  # (M, S, S, 3) uint8, in frame order
    owners: list[tuple[int, int, float]]  # (track id, frame index, time) of each crop


@dataclass(frozen=True)
class _TrackSpan:
    first_frame: int
    last_frame: int
    frames: int


class EngineCache:
    """Loads each (checkpoint, device, precision, detector) combination once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[tuple, LoadedEngine] = {}
        self._lock = threading.Lock()

    def get(self, options: AnalysisOptions) -> LoadedEngine:
        from shared.model.checkpoints import find_checkpoint

        path = find_checkpoint(
            Path(self.settings.weights_dir), name=options.weights, sequence_length=options.sequence_length
        )
        key = (str(Path(path).resolve()), options.device, options.precision, options.face_detector,
               options.detect_max_side, options.batch_size)
        with self._lock:
            if key not in self._engines:
                self._engines[key] = self._load(Path(path), options)
            return self._engines[key]

    def _load(self, path: Path, options: AnalysisOptions) -> LoadedEngine:
        from shared.model.checkpoints import load_model
        from shared.model.faces import build_face_detector
        from shared.model.runtime import build_embedder, select_device

        start = time.perf_counter()
        device = select_device(options.device)
        model, spec = load_model(path, device=device)
        embedder = build_embedder(model, spec, device=device, precision=options.precision,
                                  batch_size=options.batch_size)
        detector, detector_warnings = build_face_detector(
            kind=options.face_detector, device=device.type, weights_dir=Path(self.settings.weights_dir),
            max_side=options.detect_max_side,
        )
        warnings = list(detector_warnings) + list(getattr(embedder, "warnings", []))
        return LoadedEngine(model=model, spec=spec, embedder=embedder, detector=detector, device=device,
                            warnings=warnings, load_s=time.perf_counter() - start)


def analyze_video(
    path: str | Path,
    *,
    options: AnalysisOptions,
    cache: EngineCache,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> AnalysisResult:
    """Analyse every (frame_stride-th) frame of the video; raises the engine's typed errors."""
    from shared.model.video import probe_video, sha256_file

    started = time.perf_counter()
    info = probe_video(path)
    probe_s = time.perf_counter() - started
    engine = cache.get(options)
    with engine.lock:  # one analysis at a time per loaded model (threads share it safely this way)
        run = _Run(path=Path(path), info=info, engine=engine, options=options,
                   on_progress=on_progress, should_cancel=should_cancel)
        run.timings["probe_s"] = probe_s
        run.timings["load_s"] = engine.load_s
        result = run.execute()
    hash_start = time.perf_counter()
    result.video["sha256"] = sha256_file(path)
    result.timings["hash_s"] = time.perf_counter() - hash_start
    result.timings["total_s"] = time.perf_counter() - started
    return result


class _Run:
    """The state of one analysis: trackers, windowers, scores, timings."""

    def __init__(self, *, path: Path, info, engine: LoadedEngine, options: AnalysisOptions,
                 on_progress: ProgressCallback | None, should_cancel: CancelCheck | None) -> None:
        self.path, self.info, self.engine, self.options = path, info, engine, options
        self.spec = engine.spec
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.length = options.sequence_length or self.spec.sequence_length
        self.stride = options.window_stride or max(1, self.length // 2)
        self.threshold = options.threshold if options.threshold is not None else self.spec.threshold
        # The seed's LSTM gives each frame one step from a zero state, so a frame's output does not
        # depend on its window: compute it once per frame and let overlapping windows share it.
        self.per_frame_outputs = hasattr(engine.model, "frame_outputs") and hasattr(engine.model, "classify_outputs")
        self.timings: dict[str, float] = defaultdict(float)
        self.windowers: dict[int, TrackWindower] = {}
        self.last_seen: dict[int, int] = {}
        self.scores: dict[int, list[WindowScore]] = defaultdict(list)
        self.finished_tracks: dict[int, _TrackSpan] = {}
        self.ignored_tracks = 0
        self.unconfident_tracks = 0
        self.best_score: dict[int, float] = {}  # each track's most confident detection
        self.track_top: dict[int, list] = defaultdict(list)  # heatmap candidates of live tracks
        self.frames_analyzed = 0
        self.detection_rounds = 0
        self.last_index = -1
        self.pending_windows: list[WindowScore] = []  # scored, not yet reported as progress
        self.ready_windows: list[Window] = []  # complete, not yet scored
        self.pending_crops: list[tuple[np.ndarray, list[tuple[int, int, float]]]] = []  # not yet embedded
        self.pending_count = 0
        self.top: list[tuple[float, int, WindowScore, np.ndarray | None]] = []
        self._tiebreak = itertools.count()
        self._last_progress = 0.0
        from shared.model.tracking import FaceTracker

        self.tracker = FaceTracker()

    # --- the loop -------------------------------------------------------------------------
    def execute(self) -> AnalysisResult:
        from shared.model.prefetch import Prefetcher
        from shared.model.video import VideoReader

        frame_bytes = max(1, self.info.width * self.info.height * 3)
        decode_batch = max(1, min(self.options.batch_size, DECODE_BATCH_BYTES // frame_bytes))
        reader = VideoReader(self.path, batch_size=decode_batch, frame_stride=self.options.frame_stride,
                             info=self.info)
        # Decoding, face detection/tracking and cropping run in a background thread; only the small
        # crops queue up for the CNN and the windows in this one, so the queue can hold two CNN
        # batches (the CNN never waits for a half-decoded batch) at a few MB.
        self.crop_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="crop")
        depth = max(2, -(-2 * self.options.batch_size // decode_batch))
        batches = Prefetcher(self._prepared_batches(reader), depth=depth)
        try:
            for prepared in batches:
                self._check_cancel()
                self._process_batch(prepared)
                self._report_progress(final=False)
        finally:
            batches.close()
            self.crop_pool.shutdown(wait=True)
            self.timings["decode_s"] = batches.busy_s - self.timings["detect_s"] - self.timings["crop_s"]
            reader.close()
        if self.frames_analyzed == 0:
            raise NoDecodableFramesError(f"no frame of {self.path.name} could be decoded")
        self._embed_pending()
        self._finish_all_tracks()
        self._report_progress(final=True)
        return self._build_result(problems=list(reader.problems))

    def _check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise AnalysisCancelled("the analysis was cancelled")

    def _prepared_batches(self, reader) -> Iterator[_Prepared]:
        """Decoded batches, tracked and cropped (runs in the prefetch thread)."""
        position = 0
        for batch in reader:
            tracked = self._track(batch, first_position=position)
            position += len(batch)
            start = time.perf_counter()
            crops, owners = self._crop(batch, tracked)
            self.timings["crop_s"] += time.perf_counter() - start
            yield _Prepared(count=len(batch), last_index=int(batch.indices[-1]), crops=crops, owners=owners)

    def _process_batch(self, prepared: _Prepared) -> None:
        if prepared.crops is not None:
            self.pending_crops.append((prepared.crops, prepared.owners))
            self.pending_count += len(prepared.owners)
        self.frames_analyzed += prepared.count
        self.last_index = prepared.last_index
        if self.pending_count >= self.options.batch_size:
            self._embed_pending()

    def _embed_pending(self) -> None:
        """Run the CNN on the crops gathered so far, feed the windows, score the complete ones."""
        if self.pending_crops:
            crops = np.concatenate([c for c, _ in self.pending_crops])
            owners = [o for _, group in self.pending_crops for o in group]
            self.pending_crops, self.pending_count = [], 0
            start = time.perf_counter()
            features = self.engine.embedder(crops)
            self.timings["embed_s"] += time.perf_counter() - start
            if self.per_frame_outputs:
                start = time.perf_counter()
                features = self._frame_outputs(features)
                self.timings["classify_s"] += time.perf_counter() - start
            self._push_features(features, crops, owners)
        self._finish_lost_tracks(current_index=self.last_index)
        self._score_ready_windows()

    def _track(self, batch: FrameBatch, *, first_position: int) -> list[list]:
        """Boxes per frame of the batch: detect every k-th analysed frame, carry boxes between."""
        from shared.model.tracking import TrackedBox

        count = len(batch)
        if self.engine.detector is None:
            height, width = batch.frames.shape[1:3]
            whole = np.array([0, 0, width, height], dtype=np.float32)
            return [[TrackedBox(track_id=0, box=whole, score=1.0, detected=True)] for _ in range(count)]
        every = self.options.detect_every
        positions = [i for i in range(count) if (first_position + i) % every == 0]
        if hasattr(self.engine.detector, "detect_near"):
            return self._track_near(batch, positions)
        start = time.perf_counter()
        detections = self.engine.detector.detect(batch.frames[positions]) if positions else []
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

    def _track_near(self, batch: FrameBatch, positions: list[int]) -> list[list]:
        """Frame by frame, for detectors that can search near known faces (the Haar fallback).

        Every `full_detect_every`-th detection round, and whenever no face is tracked, searches the
        whole frame; the rounds between search only around the tracks' predicted boxes, which costs a
        tenth as much. A face that enters the picture is therefore found at the next whole-frame round.
        """
        detector, tracker = self.engine.detector, self.tracker
        wanted = set(positions)
        tracked = []
        for i in range(len(batch)):
            index = int(batch.indices[i])
            if i not in wanted:
                tracked.append(tracker.carry(index))
                continue
            start = time.perf_counter()
            near = tracker.predicted_boxes(index)
            if near and self.detection_rounds % self.options.full_detect_every:
                detections = detector.detect_near(batch.frames[i], near)
            else:
                detections = detector.detect(batch.frames[i : i + 1])[0]
            self.detection_rounds += 1
            self.timings["detect_s"] += time.perf_counter() - start
            tracked.append(tracker.update(index, detections))
        return tracked

    def _crop(self, batch: FrameBatch, tracked: list[list]) -> tuple[np.ndarray | None, list[tuple[int, int, float]]]:
        """Face crops of the batch in frame order, and (track, frame index, time) for each crop.

        Frames are cropped in parallel threads: PIL releases the GIL while resizing, which pays
        on many-core machines (a 1080p whole frame takes ~10 ms to shrink with antialiasing).
        """
        jobs = [(batch.frames[i], boxes) for i, boxes in enumerate(tracked) if boxes]
        owners = [(b.track_id, int(batch.indices[i]), float(batch.times_s[i]))
                  for i, boxes in enumerate(tracked) for b in boxes]
        for boxes in tracked:
            for box in boxes:
                self.best_score[box.track_id] = max(self.best_score.get(box.track_id, 0.0), float(box.score))
        if not jobs:
            return None, owners
        crops = list(self.crop_pool.map(self._crop_frame, jobs)) if len(jobs) > 1 else [self._crop_frame(jobs[0])]
        return np.concatenate(crops), owners

    def _crop_frame(self, job: tuple[np.ndarray, list]) -> np.ndarray:
        from shared.model.crops import crop_faces, whole_frames

        frame, boxes = job
        size = self.spec.input_size
        if self.engine.detector is None:
            return whole_frames(frame[None], size=size)
        return crop_faces(frame, [b.box for b in boxes], size=size, margin=self.options.crop_margin)

    def _push_features(self, features: torch.Tensor, crops: np.ndarray, owners) -> None:
        for row, (track_id, index, time_s) in enumerate(owners):
            windower = self.windowers.get(track_id)
            if windower is None:
                windower = self.windowers[track_id] = TrackWindower(
                    track_id=track_id, length=self.length, stride=self.stride)
            self.last_seen[track_id] = index
            window = windower.push(frame_index=index, time_s=time_s, feature=features[row].clone(),
                                   crop=crops[row].copy())
            if window is not None:
                self._queue_window(window)

    # --- windows and scores -----------------------------------------------------------------
    def _queue_window(self, window: Window) -> None:
        self.ready_windows.append(window)

    def _score_ready_windows(self) -> None:
        windows, self.ready_windows = self.ready_windows, []
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

    def _frame_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """The seed model's per-frame LSTM outputs: independent of the window, so computed once."""
        with torch.inference_mode():
            outputs = self.engine.model.frame_outputs(features.to(self.engine.device, torch.float32))
        return outputs.float().cpu()

    def _window_probabilities(self, features: torch.Tensor) -> np.ndarray:
        if not self.per_frame_outputs:
            return self.engine.embedder.fake_probabilities(features).numpy()
        with torch.inference_mode():
            logits = self.engine.model.classify_outputs(features.to(self.engine.device, torch.float32))
            return torch.softmax(logits.float(), dim=1)[:, self.spec.fake_index].cpu().numpy()

    def _record(self, window: Window, probability: float) -> None:
        score = WindowScore(track_id=window.track_id, start_frame=window.start_frame,
                            end_frame=window.end_frame, start_s=window.times_s[0], end_s=window.times_s[-1],
                            fake_probability=probability)
        self.scores[window.track_id].append(score)
        self.pending_windows.append(score)
        if self.options.heatmaps > 0:
            entry = (probability, next(self._tiebreak), score, window.key_crop)
            # A live track keeps its own candidates until it is kept or dropped at its end.
            heap = self.top if window.track_id in self.finished_tracks else self.track_top[window.track_id]
            self._keep_top(heap, entry)

    def _keep_top(self, heap: list, entry: tuple) -> None:
        if len(heap) < self.options.heatmaps:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)

    # --- track lifetimes -------------------------------------------------------------------
    def _finish_lost_tracks(self, *, current_index: int) -> None:
        """Close tracks not seen for a while so their buffers are freed (long videos, many people)."""
        patience = self.options.frame_stride * self.options.detect_every * 4
        for track_id in [t for t, seen in self.last_seen.items() if current_index - seen > patience]:
            self._finish_track(track_id, min_frames=self.options.min_track_frames)

    def _finish_all_tracks(self) -> None:
        min_frames = min(self.options.min_track_frames, self.frames_analyzed)
        for track_id in list(self.windowers):
            self._finish_track(track_id, min_frames=min_frames)
        self._score_ready_windows()

    def _finish_track(self, track_id: int, *, min_frames: int) -> None:
        windower = self.windowers.pop(track_id)
        self.last_seen.pop(track_id, None)
        if not windower.windows_emitted and windower.count < min_frames:
            self.ignored_tracks += 1
            return
        candidates = self.track_top.pop(track_id, [])
        if self.best_score.get(track_id, 1.0) < self.options.min_face_score:
            # never one confident detection: likely not a face (the Haar fallback's false positives)
            self.unconfident_tracks += 1
            self.scores.pop(track_id, None)
            return
        for entry in candidates:
            self._keep_top(self.top, entry)
        window = windower.finish()
        if window is not None:
            self._queue_window(window)
        # keep only the summary: the windower's buffers are freed with it
        self.finished_tracks[track_id] = _TrackSpan(windower.first_frame, windower.last_frame, windower.count)

    def _report_progress(self, *, final: bool) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not final and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        total = max(self.frames_analyzed, self._expected_frames())
        windows, self.pending_windows = tuple(self.pending_windows), []
        self.on_progress(Progress(frames_done=self.frames_analyzed, frames_total=total, windows=windows))

    def _expected_frames(self) -> int:
        stride = self.options.frame_stride
        return (self.info.frames + stride - 1) // stride

    # --- the result ----------------------------------------------------------------------
    def _build_result(self, *, problems: list[Reason]) -> AnalysisResult:
        tracks = self._track_results()
        scored = [t.fake_probability for t in tracks if t.fake_probability is not None]
        verdict = aggregation.combine_tracks(scored, threshold=self.threshold, band=self.options.uncertain_band)
        reasons = list(problems) + self._reasons(verdict, tracks)
        start = time.perf_counter()
        artifacts = self._artifacts()
        self.timings["heatmaps_s"] = time.perf_counter() - start
        return AnalysisResult(
            verdict=verdict.verdict,
            fake_probability=verdict.fake_probability,
            reasons=reasons,
            warnings=self._warnings(),
            video=self._video_dict(),
            frames_analyzed=self.frames_analyzed,
            model=self._model_dict(),
            params=self._params(),
            tracks=tracks,
            timings=dict(self.timings),
            artifacts=artifacts,
        )

    def _track_results(self) -> list[TrackResult]:
        results = []
        for track_id in sorted(self.finished_tracks):
            span = self.finished_tracks[track_id]
            windows = sorted(self.scores[track_id], key=lambda w: (w.start_frame, w.end_frame))
            probability = aggregation.aggregate_probabilities(
                [w.fake_probability for w in windows], method=self.options.aggregation)
            results.append(TrackResult(
                id=track_id, fake_probability=probability,
                verdict=aggregation.verdict_for(probability, threshold=self.threshold,
                                                band=self.options.uncertain_band),
                first_frame=span.first_frame, last_frame=span.last_frame, frames=span.frames, windows=windows))
        return results

    def _reasons(self, verdict: aggregation.VideoVerdict, tracks: list[TrackResult]) -> list[Reason]:
        reasons = []
        if not tracks:
            hint = ("; if the video is already cropped to a face, use --face-detector none"
                    if self.engine.detector is not None else "")
            reasons.append(Reason("no_faces", f"no face was found in any of the {self.frames_analyzed} analysed "
                                              f"frames, so nothing could be judged{hint}"))
        elif verdict.verdict == aggregation.INCONCLUSIVE:
            borderline = [t.id for t in tracks if t.verdict == aggregation.INCONCLUSIVE]
            reasons.append(Reason("borderline", (
                f"track(s) {', '.join(map(str, borderline))} scored within ±{self.options.uncertain_band:g} of the "
                f"threshold {self.threshold:g}; the model cannot tell these faces apart from real ones")))
        short = [t.id for t in tracks if t.frames < self.length]
        if short:
            reasons.append(Reason("short_track", (
                f"track(s) {', '.join(map(str, short))} had fewer analysed frames than one window "
                f"({self.length}); scored as one shorter window, which the model was not trained on")))
        return reasons

    def _warnings(self) -> list[Reason]:
        warnings = list(self.engine.warnings)
        if self.ignored_tracks:
            warnings.append(Reason("ignored_short_tracks", (
                f"{self.ignored_tracks} face track(s) shorter than {self.options.min_track_frames} frames were "
                "ignored as likely spurious detections")))
        if self.unconfident_tracks:
            warnings.append(Reason("ignored_unconfident_tracks", (
                f"{self.unconfident_tracks} face track(s) whose best detection scored below "
                f"{self.options.min_face_score:g} were ignored as likely false detections")))
        return warnings

    def _video_dict(self) -> dict:
        info = self.info
        frames = info.frames if info.frames_exact else max(self.last_index + 1, 0)
        return {"frames": int(frames), "fps": float(info.fps), "duration_s": float(info.duration_s),
                "width": int(info.width), "height": int(info.height), "sha256": None,
                "container": info.container, "codec": info.codec, "rotation": info.rotation}

    def _model_dict(self) -> dict:
        spec = self.spec
        return {"name": spec.name, "kind": spec.kind, "sha256": spec.sha256,
                "sequence_length": int(spec.sequence_length), "threshold": float(self.threshold),
                "class_names": list(spec.class_names)}

    def _params(self) -> dict:
        params = self.options.to_dict()
        params.update(sequence_length=self.length, window_stride=self.stride, threshold=self.threshold,
                      face_detector=self.engine.detector_name, device=str(self.engine.device),
                      precision=getattr(self.engine.embedder, "precision", self.options.precision),
                      backend=getattr(self.engine.embedder, "backend", "torch"),
                      weights=self.spec.name)
        return params

    def _artifacts(self) -> list[Artifact]:
        ranked = sorted(self.top, key=lambda entry: -entry[0])
        crops = [entry[3] for entry in ranked if entry[3] is not None]
        if not crops:
            return []
        from shared.model.heatmaps import cam, overlay_png, thumbnail_png

        artifacts = []
        maps = self.engine.embedder.feature_maps(np.stack(crops))
        weights = self.engine.model.cam_weights()[self.spec.fake_index].detach().float().cpu()
        for rank, ((probability, _, score, crop), fmap) in enumerate(zip(ranked, maps), start=1):
            heat = cam(fmap, weights)
            label = (f"track {score.track_id}, frames {score.start_frame}–{score.end_frame} "
                     f"({score.start_s:.2f}–{score.end_s:.2f} s), fake probability {probability:.3f}")
            stem = f"rank{rank}-track{score.track_id}-f{score.start_frame}"
            artifacts.append(Artifact(f"{stem}-heatmap.png", "image/png", overlay_png(crop, heat, size=224),
                                      score.track_id, f"CAM heatmap, {label}"))
            artifacts.append(Artifact(f"{stem}-face.png", "image/png", thumbnail_png(crop),
                                      score.track_id, f"face thumbnail, {label}"))
        return artifacts
