"""The whole-video pipeline: decode → detect/track → crop → CNN features → windows → verdicts.

Frames stream through in batches; each analysed frame's features are computed once and shared by
every window that contains it; per track only the last `sequence_length` frames are kept, so memory
does not grow with the video's length. The stages live in `shared.model.stages`; this module holds
what is loaded once per process (`EngineCache`) and the entry point, `analyze_video`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from shared.model.result import AnalysisResult
from shared.model.stages.run import CancelCheck, ProgressCallback, run_analysis
from shared.model.types import Reason
from shared.model.runtime.threads import ThreadBudget
from shared.options import AnalysisOptions
from shared.settings import Settings


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
    threads: ThreadBudget = field(default_factory=ThreadBudget.for_process)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def detector_name(self) -> str:
        return "none" if self.detector is None else self.detector.name


class EngineCache:
    """Loads each (checkpoint, device, precision, detector) combination once per process.

    Each combination loads under its own lock: a job never waits for another combination's load
    (a worker preloads the default one at start while its first job may ask for another).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One budget for every library in this process that starts threads (see runtime/threads.py).
        self.thread_budget = ThreadBudget.for_process(requested=settings.engine_threads,
                                                      processes=settings.engine_processes)
        self._engines: dict[tuple, LoadedEngine] = {}
        self._loading: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts

    def get(self, options: AnalysisOptions) -> LoadedEngine:
        from shared.model.checkpoints import find_checkpoint

        path = find_checkpoint(
            Path(self.settings.weights_dir), name=options.weights, sequence_length=options.sequence_length
        )
        key = (str(Path(path).resolve()), options.device, options.precision, options.face_detector,
               options.detect_max_side, options.batch_size)
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # a second caller for the same combination waits, then finds it loaded
            if key not in self._engines:
                engine = self._load(Path(path), options)
                with self._lock:
                    self._engines[key] = engine
            return self._engines[key]

    def _load(self, path: Path, options: AnalysisOptions) -> LoadedEngine:
        from shared.model.checkpoints import load_model
        from shared.model.faces import build_face_detector
        from shared.model.runtime import build_embedder, select_device

        start = time.perf_counter()
        device = select_device(options.device)
        threads = self.thread_budget
        threads.apply_to_torch()
        model, spec = load_model(path, device=device)
        cache_dir = self.settings.model_cache_dir  # writable, unlike a weights mount: converted models are kept
        embedder = build_embedder(model, spec, device=device, precision=options.precision,
                                  batch_size=options.batch_size, cache_dir=cache_dir, threads=threads.cnn)
        detector, detector_warnings = build_face_detector(
            kind=options.face_detector, device=device.type, weights_dir=Path(self.settings.weights_dir),
            max_side=options.detect_max_side, cache_dir=cache_dir, threads=threads.producer,
        )
        warnings = list(detector_warnings) + list(getattr(embedder, "warnings", []))
        return LoadedEngine(model=model, spec=spec, embedder=embedder, detector=detector, device=device,
                            warnings=warnings, load_s=time.perf_counter() - start, threads=threads)


def analyze_video(
    path: str | Path,
    *,
    options: AnalysisOptions,
    cache: EngineCache,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    sha256: str | None = None,
    preview_dir: Path | None = None,
    feature_checkpoint: object | None = None,
    decoder: str = "auto",
) -> AnalysisResult:
    """Analyse every (frame_stride-th) frame of the video; raises the engine's typed errors.

    `sha256` is the file's digest when the caller already knows it (the service hashed the upload
    as it arrived), so the file is not read a second time. `timings["load_s"]` is what this
    analysis spent getting its model: 0 when it was already loaded. With `preview_dir` (and the
    `preview` option on) the result gains a `preview.mp4` artifact whose temporary file lies there.
    With `feature_checkpoint` (shared.model.resume.FeatureCheckpoint) the trunk's features are recorded
    as the analysis goes, and an earlier attempt's recording is replayed instead of computed again.
    `decoder` chooses where frames are decoded (see `run_analysis`): auto, cpu or device.
    """
    from shared.media.limits import VideoLimits
    from shared.files import sha256_file
    from shared.media import probe_video

    started = time.perf_counter()
    # The configured limits again: the CLI and imported files do not pass the web's probe.
    info = probe_video(path, limits=VideoLimits.from_settings(cache.settings))
    probe_s = time.perf_counter() - started
    engine = cache.get(options)
    load_s = time.perf_counter() - started - probe_s
    with engine.lock:  # one analysis at a time per loaded model (threads share it safely this way)
        timings = {"probe_s": probe_s, "load_s": load_s}
        result = run_analysis(Path(path), info=info, engine=engine, options=options, on_progress=on_progress,
                              should_cancel=should_cancel, timings=timings,
                              preview_dir=Path(preview_dir) if preview_dir is not None and options.preview else None,
                              feature_checkpoint=feature_checkpoint, decoder=decoder)
    hash_start = time.perf_counter()
    result.video["sha256"] = sha256 or sha256_file(path)
    result.timings["hash_s"] = time.perf_counter() - hash_start
    result.timings["total_s"] = time.perf_counter() - started
    return result

