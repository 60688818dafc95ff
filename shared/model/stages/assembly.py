"""The last stage: scored tracks → verdicts, reasons, warnings, heatmaps → `AnalysisResult`."""
from __future__ import annotations

import time

import numpy as np

from shared.model import aggregation
from shared.model.result import AnalysisResult, Artifact, TrackResult
from shared.model.stages.consumer import ScoredVideo, WindowPlan
from shared.model.types import Reason


def build_result(scored: ScoredVideo, *, engine, options, plan: WindowPlan, info, problems: list[Reason],
                 timings: dict[str, float], decoder: str = "pyav") -> AnalysisResult:
    """The result of one analysis; `timings` gains `heatmaps_s`; `decoder` names what decoded the frames."""
    tracks = track_results(scored, options=options, plan=plan)
    probabilities = [t.fake_probability for t in tracks if t.fake_probability is not None]
    verdict = aggregation.combine_tracks(probabilities, threshold=plan.threshold, band=options.uncertain_band)
    reasons = list(problems) + _reasons(verdict, tracks, scored=scored, engine=engine, options=options, plan=plan)
    start = time.perf_counter()
    artifacts = heatmap_artifacts(scored, engine=engine)
    timings["heatmaps_s"] = time.perf_counter() - start
    return AnalysisResult(
        verdict=verdict.verdict,
        fake_probability=verdict.fake_probability,
        reasons=reasons,
        warnings=_warnings(scored, engine=engine, options=options),
        video=_video_dict(info, last_index=scored.last_index),
        frames_analyzed=scored.frames_analyzed,
        model=_model_dict(engine.spec, threshold=plan.threshold),
        params=_params(engine, options=options, plan=plan, decoder=decoder),
        tracks=tracks,
        timings=dict(timings),
        artifacts=artifacts,
    )


def track_results(scored: ScoredVideo, *, options, plan: WindowPlan) -> list[TrackResult]:
    """One result per judged track, by id, with its windows in time order."""
    results = []
    for track_id in sorted(scored.tracks):
        track = scored.tracks[track_id]
        windows = sorted(scored.windows.get(track_id, []), key=lambda w: (w.start_frame, w.end_frame))
        probability = aggregation.aggregate_probabilities([w.fake_probability for w in windows],
                                                          method=options.aggregation)
        results.append(TrackResult(
            id=track_id, fake_probability=probability,
            verdict=aggregation.verdict_for(probability, threshold=plan.threshold, band=options.uncertain_band),
            first_frame=track.first_frame, last_frame=track.last_frame, frames=track.frames, windows=windows,
            boxes=list(track.boxes)))
    return results


def heatmap_artifacts(scored: ScoredVideo, *, engine) -> list[Artifact]:
    """CAM heatmaps and face thumbnails of the most suspicious windows, most suspicious first."""
    ranked = [c for c in scored.heatmap_candidates if c.crop is not None]
    if not ranked:
        return []
    from shared.model.heatmaps import cam, overlay_png, thumbnail_png

    artifacts = []
    maps = engine.embedder.feature_maps(np.stack([c.crop for c in ranked]))
    weights = engine.model.cam_weights()[engine.spec.fake_index].detach().float().cpu()
    for rank, (candidate, fmap) in enumerate(zip(ranked, maps), start=1):
        score, heat = candidate.score, cam(fmap, weights)
        label = (f"track {score.track_id}, frames {score.start_frame}–{score.end_frame} "
                 f"({score.start_s:.2f}–{score.end_s:.2f} s), fake probability {candidate.probability:.3f}")
        stem = f"rank{rank}-track{score.track_id}-f{score.start_frame}"
        artifacts.append(Artifact(f"{stem}-heatmap.png", "image/png", overlay_png(candidate.crop, heat, size=224),
                                  score.track_id, f"CAM heatmap, {label}"))
        artifacts.append(Artifact(f"{stem}-face.png", "image/png", thumbnail_png(candidate.crop),
                                  score.track_id, f"face thumbnail, {label}"))
    return artifacts


def _reasons(verdict: aggregation.VideoVerdict, tracks: list[TrackResult], *, scored: ScoredVideo, engine,
             options, plan: WindowPlan) -> list[Reason]:
    reasons = []
    if not tracks:
        hint = ("; if the video is already cropped to a face, use --face-detector none"
                if engine.detector is not None else "")
        reasons.append(Reason("no_faces", f"no face was found in any of the {scored.frames_analyzed} analysed "
                                          f"frames, so nothing could be judged{hint}"))
    elif verdict.verdict == aggregation.INCONCLUSIVE:
        borderline = [t.id for t in tracks if t.verdict == aggregation.INCONCLUSIVE]
        reasons.append(Reason("borderline", (
            f"track(s) {', '.join(map(str, borderline))} scored within ±{options.uncertain_band:g} of the "
            f"threshold {plan.threshold:g}; the model cannot tell these faces apart from real ones")))
    short = [t.id for t in tracks if t.frames < plan.length]
    if short:
        reasons.append(Reason("short_track", (
            f"track(s) {', '.join(map(str, short))} had fewer analysed frames than one window "
            f"({plan.length}); scored as one shorter window, which the model was not trained on")))
    return reasons


def _warnings(scored: ScoredVideo, *, engine, options) -> list[Reason]:
    warnings = list(engine.warnings)
    if scored.ignored_tracks:
        warnings.append(Reason("ignored_short_tracks", (
            f"{scored.ignored_tracks} face track(s) shorter than {options.min_track_frames} frames were "
            "ignored as likely spurious detections")))
    if scored.unconfident_tracks:
        warnings.append(Reason("ignored_unconfident_tracks", (
            f"{scored.unconfident_tracks} face track(s) whose best detection scored below "
            f"{options.min_face_score:g} were ignored as likely false detections")))
    return warnings


def _video_dict(info, *, last_index: int) -> dict:
    frames = info.frames if info.frames_exact else max(last_index + 1, 0)
    return {"frames": int(frames), "fps": float(info.fps), "duration_s": float(info.duration_s),
            "width": int(info.width), "height": int(info.height), "sha256": None,
            "container": info.container, "codec": info.codec, "rotation": info.rotation}


def _model_dict(spec, *, threshold: float) -> dict:
    return {"name": spec.name, "kind": spec.kind, "sha256": spec.sha256,
            "sequence_length": int(spec.sequence_length), "threshold": float(threshold),
            "class_names": list(spec.class_names)}


def _params(engine, *, options, plan: WindowPlan, decoder: str) -> dict:
    params = options.to_dict()
    params.update(sequence_length=plan.length, window_stride=plan.stride, threshold=plan.threshold,
                  face_detector=engine.detector_name, device=str(engine.device),
                  precision=getattr(engine.embedder, "precision", options.precision),
                  backend=getattr(engine.embedder, "backend", "torch"),
                  weights=engine.spec.name, decoder=decoder)
    return params
