"""One analysis, stage by stage: the producer in a background thread, the consumer in this one.

    VideoReader ─► CropProducer (prefetch thread) ─► PreparedBatch queue ─► WindowConsumer ─► build_result

Only values cross between the stages: prepared batches (crops, their owners, the tracks that
ended) into the consumer, a `ScoredVideo` out of it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from shared.errors import AnalysisCancelled, NoDecodableFramesError
from shared.model.prefetch import Prefetcher
from shared.model.result import AnalysisResult
from shared.model.stages.assembly import build_result
from shared.model.stages.consumer import WindowConsumer, WindowPlan
from shared.model.stages.producer import CropProducer
from shared.model.types import Progress, Reason

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]
PROGRESS_EVERY_S = 0.5
# Decoded frames held per batch are capped by bytes, not by the CNN batch size: 32 frames of 4K
# video would be 800 MB. The CNN still gets full batches: crops accumulate across decode batches.
# 24 MiB (9 frames of 720p) measured as fast as 48 here, with ~90 MiB less peak RSS.
DECODE_BATCH_BYTES = 24 * 2**20
# Prepared batches queued ahead of the CNN, counted in CNN batches: two, so the CNN never waits
# for a half-decoded batch, at a few MB of crops.
CNN_BATCHES_AHEAD = 2


class _ProgressReporter:
    """At most one report every PROGRESS_EVERY_S (always the last), with the windows scored since."""

    def __init__(self, callback: ProgressCallback | None, *, expected_frames: int) -> None:
        self.callback = callback
        self.expected_frames = expected_frames
        self._windows: list = []
        self._last = 0.0

    def report(self, consumer: WindowConsumer, *, final: bool) -> None:
        new = consumer.take_new_windows()
        if self.callback is None:
            return
        self._windows += new
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        done = consumer.frames_analyzed
        windows, self._windows = tuple(self._windows), []
        self.callback(Progress(frames_done=done, frames_total=max(done, self.expected_frames), windows=windows))


def _analysed_frame_s(info, options) -> float:
    """Seconds between analysed frames (0 when the stream does not say its frame rate)."""
    return options.frame_stride / info.fps if info.fps and info.fps > 0 else 0.0


def run_analysis(path: Path, *, info, engine, options, on_progress: ProgressCallback | None = None,
                 should_cancel: CancelCheck | None = None, timings: dict[str, float],
                 preview_dir: Path | None = None, feature_checkpoint=None, decoder: str = "auto") -> AnalysisResult:
    """Analyse the video at `path` (already probed as `info`) with a loaded engine; `timings` gains
    the stages' own (decode_s, detect_s, crop_s, embed_s, classify_s, heatmaps_s).

    With `preview_dir`, the decoded frames also feed a preview video (a temporary file there), which
    the result carries as its `preview.mp4` artifact; `timings` gains `preview_s`.

    `decoder` "auto" decodes on the engine's GPU (NVDEC) where `choose_decoder` says it can, so the
    frames, detection and crops stay there, and with PyAV on the CPU otherwise; "cpu" always uses PyAV;
    "device" decodes with torchcodec on the engine's device whatever it is (how the tests run the
    device path on a CPU). The result's `params.decoder` says which one decoded."""
    threads = engine.threads  # the producer's decoder and crop pool keep to their share of the cores
    reader, decoder_notes = _open_reader(path, info=info, engine=engine, options=options, decoder=decoder)
    decode_batch = reader.batch_size
    producer = CropProducer(detector=engine.detector, detect_every=options.detect_every,
                            full_detect_every=options.full_detect_every, input_size=engine.spec.input_size,
                            crop_margin=options.crop_margin, frame_s=_analysed_frame_s(info, options),
                            crop_threads=threads.producer)
    plan = WindowPlan.of(options, engine.spec)
    threads.apply_to_torch(engine.embedder.backend)
    progress = _ProgressReporter(on_progress, expected_frames=-(-info.frames // options.frame_stride))
    depth = max(2, -(-CNN_BATCHES_AHEAD * options.batch_size // decode_batch))
    recorder = _preview_recorder(preview_dir, info=info, options=options, threads=threads.producer)
    batches = Prefetcher(producer.batches(reader if recorder is None else recorder.tap(reader)), depth=depth)
    consumer = WindowConsumer(engine=engine, plan=plan, options=options, feature_checkpoint=feature_checkpoint,
                              producer_ahead=batches.is_ahead)
    decoded = False
    try:
        for prepared in batches:
            if should_cancel is not None and should_cancel():
                raise AnalysisCancelled("the analysis was cancelled")
            consumer.accept(prepared)
            if not prepared.end_of_video:
                progress.report(consumer, final=False)
        decoded = True
    finally:
        batches.close()  # joins the producer thread, which records the preview
        producer.close()
        reader.close()
        if recorder is not None and not decoded:
            recorder.discard()
        timings.update(producer.timings)
        recorded_s = recorder.busy_s if recorder is not None else 0.0
        timings["decode_s"] = batches.busy_s - producer.timings["detect_s"] - producer.timings["crop_s"] - recorded_s
    try:
        if consumer.frames_analyzed == 0:
            raise NoDecodableFramesError(f"no frame of {path.name} could be decoded")
        scored = consumer.finish()
        timings.update(consumer.timings)
        progress.report(consumer, final=True)
        result = build_result(scored, engine=engine, options=options, plan=plan, info=info,
                              problems=list(reader.problems), timings=timings,
                              decoder=getattr(reader, "decoder_name", "pyav"))
        result.warnings.extend(decoder_notes)
        fallback = getattr(reader, "fallback", None)  # NVDEC gave up on this file midway: the CPU decoded it
        if fallback is not None:
            result.warnings.append(fallback)
    except BaseException:
        if recorder is not None:
            recorder.discard()
        raise
    if recorder is not None:
        _attach_preview(result, recorder)
    return result


def _open_reader(path: Path, *, info, engine, options, decoder: str) -> tuple[object, list[Reason]]:
    """The reader for this file, and why a GPU engine decodes it on the CPU (when it does).

    Frames go to the device only where the face detector takes device frames (RetinaFace, or none:
    the Haar fallback searches host frames)."""
    from shared.model.video import VideoReader

    if decoder not in ("auto", "cpu", "device"):
        raise ValueError(f"decoder must be auto, cpu or device, got {decoder!r}")
    notes: list[Reason] = []
    on_device = decoder == "device"
    if decoder == "auto" and engine.device.type == "cuda" and not hasattr(engine.detector, "detect_near"):
        from shared.model.video.device_reader import choose_decoder

        choice = choose_decoder(info, engine.device)
        on_device = choice.name == "nvdec"
        notes += [choice.reason] if choice.reason is not None else []
    if on_device:
        from shared.model.video.device_reader import DeviceVideoReader

        return DeviceVideoReader(path, batch_size=options.batch_size, frame_stride=options.frame_stride, info=info,
                                 device=engine.device), notes
    frame_bytes = max(1, info.width * info.height * 3)
    decode_batch = max(1, min(options.batch_size, DECODE_BATCH_BYTES // frame_bytes))
    return VideoReader(path, batch_size=decode_batch, frame_stride=options.frame_stride, info=info,
                       threads=engine.threads.producer, stacked=False), notes


def _preview_recorder(directory: Path | None, *, info, options, threads: int):
    """A recorder of the analysed frames into a temporary preview file in `directory`, or None."""
    if directory is None:
        return None
    from shared.model.preview import PreviewRecorder, temporary_preview_path

    return PreviewRecorder(temporary_preview_path(directory), info=info, frame_stride=options.frame_stride,
                           threads=threads)


def _attach_preview(result: AnalysisResult, recorder) -> None:
    """The finished preview as the result's artifact; a failed one is a warning, not a failed analysis."""
    from shared.model.preview import PreviewFailed, as_artifact

    try:
        result.artifacts.append(as_artifact(recorder.finish()))
    except PreviewFailed as exc:
        result.warnings.append(Reason("preview_failed", str(exc)))
    result.timings["preview_s"] = recorder.busy_s
