"""`deepfake analyze VIDEO`: run the engine on one local video and print the verdict."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from shared.options import AGGREGATIONS, DEVICES, FACE_DETECTORS, PRECISIONS

SPARK = "▁▂▃▄▅▆▇█"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="analyse one video file",
                                   description="Analyse every frame of a local video for face manipulation.")
    parser.add_argument("video", type=Path, help="the video file to analyse")
    parser.add_argument("--weights", help="checkpoint path or file name in WEIGHTS_DIR (default: picked by name)")
    parser.add_argument("--sequence-length", type=int, help="frames per window (default: the checkpoint's)")
    parser.add_argument("--window-stride", type=int, help="frames between window starts (default: half a window)")
    parser.add_argument("--frame-stride", type=int, default=1, help="analyse every N-th frame (default 1: all)")
    parser.add_argument("--detect-every", type=int, default=5, help="run the face detector every K-th analysed frame")
    parser.add_argument("--full-detect-every", type=int, default=6,
                        help="search whole frames every N-th detection; between, only near tracked faces "
                             "(OpenCV detector; 1: always whole frames)")
    parser.add_argument("--face-detector", choices=FACE_DETECTORS, default="auto",
                        help="auto: RetinaFace when its weights are installed, else OpenCV; "
                             "none: the video is already cropped to one face")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: a GPU when one is usable, else the CPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: the fastest precision that agrees with fp32 on this machine")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="face crops per network pass (default 32; lower it if memory runs out)")
    parser.add_argument("--threshold", type=float, help="FAKE threshold (default: the checkpoint's)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="mean",
                        help="how a face track's windows combine into its probability")
    parser.add_argument("--crop-margin", type=float, default=0.0,
                        help="extra margin around each face box, as a fraction of its side (the seed used 0)")
    parser.add_argument("--heatmaps", type=int, default=3, help="heatmaps of the N most suspicious windows (0: none)")
    parser.add_argument("--json", action="store_true", help="print only the result JSON on stdout")
    parser.add_argument("--artifacts-dir", type=Path, help="write heatmaps and face thumbnails here")
    parser.add_argument("--plot", type=Path, help="write a timeline chart (PNG) of fake probability per face")
    parser.add_argument("--annotate", type=Path, metavar="OUT.mp4",
                        help="write a copy of the video with each track's box, name and fake probability drawn on "
                             "(H.264 MP4, at most 720p, no audio)")
    parser.add_argument("--no-preview", action="store_true",
                        help="with --artifacts-dir: skip the small preview.mp4 the job page plays")
    parser.set_defaults(handler=run)


def _options(args: argparse.Namespace):
    from shared.options import AnalysisOptions

    return AnalysisOptions.from_mapping({
        "weights": args.weights, "sequence_length": args.sequence_length, "window_stride": args.window_stride,
        "frame_stride": args.frame_stride, "detect_every": args.detect_every,
        "full_detect_every": args.full_detect_every,
        "face_detector": args.face_detector, "device": args.device, "precision": args.precision,
        "batch_size": args.batch_size, "threshold": args.threshold, "aggregation": args.aggregation,
        "crop_margin": args.crop_margin, "heatmaps": args.heatmaps, "preview": not args.no_preview,
    }, allow_paths=True)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shared.model.pipeline import EngineCache, analyze_video
    from shared.settings import Settings

    options = _options(args)
    cache = EngineCache(Settings.from_env())
    bar = tqdm(total=0, unit="frame", desc="analysing", file=sys.stderr, disable=not sys.stderr.isatty(),
               dynamic_ncols=True)

    def on_progress(progress) -> None:
        bar.total = progress.frames_total
        bar.update(progress.frames_done - bar.n)

    # Libraries (NNCF while quantizing, for one) may print; with --json stdout holds only the JSON.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet:
            result = analyze_video(args.video, options=options, cache=cache, on_progress=on_progress,
                                   preview_dir=args.artifacts_dir)
    finally:
        bar.close()
    data = result.to_dict()
    if args.artifacts_dir:
        _write_artifacts(result.artifacts, args.artifacts_dir)
    if args.annotate:
        _annotate(args.video, args.annotate, data=data, threads=cache.thread_budget.cnn)
    if args.plot:
        from shared.model.report import plot_timeline

        args.plot.write_bytes(plot_timeline(data))
    if args.json:
        json.dump(data, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(summary(data))
    return 0


def _write_artifacts(artifacts, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        if artifact.path is not None:  # a video, made in this folder under a temporary name
            artifact.path.replace(directory / artifact.name)
        else:
            (directory / artifact.name).write_bytes(artifact.data)


def _annotate(video: Path, target: Path, *, data: dict, threads: int) -> None:
    """The result's overlay burnt into a copy of the video, with a progress bar of its own."""
    from tqdm import tqdm

    from shared.model.annotate import annotate_video

    with tqdm(total=0, unit="frame", desc="annotating", file=sys.stderr, disable=not sys.stderr.isatty(),
              dynamic_ncols=True) as bar:
        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        annotate_video(video, target, result=data, threads=threads, on_progress=on_progress)


def summary(data: dict) -> str:
    """A readable summary in the job page's words: verdict, what it means, one timeline line per track."""
    from shared.model.report import percent, reasons_heading, track_name, verdict_note

    verdict, probability = data["verdict"], data["fake_probability"]
    lines = [f"Verdict: {verdict}"]
    if probability is not None:
        note = verdict_note(verdict=verdict, fake_probability=probability, threshold=data["model"]["threshold"])
        lines.append(f"Fake probability: {percent(probability)} ({note})")
    video = data["video"]
    lines.append(f"Video: {video['width']}x{video['height']}, {video['duration_s']:.1f} s, {video['fps']:.2f} fps; "
                 f"{data['frames_analyzed']} frames analysed with {data['model']['name']}")
    for track in data["tracks"]:
        spark = "".join(SPARK[min(int(w["fake_probability"] * len(SPARK)), len(SPARK) - 1)] for w in track["windows"])
        share = percent(track["fake_probability"])
        lines.append(f"  {track_name(track['id'])}: {track['verdict']:<12} {share:>4} fake  "
                     f"frames {track['first_frame']}–{track['last_frame']}  {spark}")
    for title, key in ((reasons_heading(verdict), "reasons"), ("Warning", "warnings")):
        for item in data[key]:
            lines.append(f"{title}: [{item['code']}] {item['message']}")
    fps = data["frames_analyzed"] / data["timings"]["total_s"] if data["timings"].get("total_s") else 0
    lines.append(f"Took {data['timings'].get('total_s', 0):.1f} s ({fps:.1f} frames/s)")
    return "\n".join(lines)
