"""Resume benchmark: what recording trunk features costs, and what resuming from them saves.

    .venv/bin/python bench/resume_bench.py [--seconds 60] [--height 720]

In one process, on one clip of a real face (RetinaFace, the default precision): an analysis without
recording, one recording its features (shared.model.resume) into a temporary folder, then one that
resumes from a recording of the first half (as after a worker killed half-way). Prints wall times, the
recording's size, the ratios, and the largest |Δp| against the run without recording. Asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.engine_bench import _vector_features, install_detector, make_clip, make_weights  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.shared.model.test_resume import FolderChunks  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resume-bench-") as folder:  # a clip and two recordings: removed after
        run(Path(folder), args)
    return 0


def run(work: Path, args: argparse.Namespace) -> None:
    from shared.errors import AnalysisCancelled
    from shared.model.pipeline import EngineCache, analyze_video
    from shared.model.resume import FeatureCheckpoint
    from shared.options import AnalysisOptions

    clip = make_clip(work / "clip.mp4", minutes=args.seconds / 60, width=args.height * 16 // 9, height=args.height)
    make_weights(work / "weights", sequence_length=20)
    install_detector(work / "weights")
    cache = EngineCache(replace(Settings(), weights_dir=work / "weights", data_dir=work / "data"))
    options = AnalysisOptions(sequence_length=20, device="cpu", preview=False, heatmaps=0)
    analyze_video(clip, options=options, cache=cache)  # load and compile once, untimed
    print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; {args.seconds:.0f} s of {args.height}p, one face")

    plain, plain_s = _timed(lambda: analyze_video(clip, options=options, cache=cache))
    recorded = FolderChunks(work / "full")
    checkpoint = FeatureCheckpoint(recorded)
    _, record_s = _timed(lambda: analyze_video(clip, options=options, cache=cache, feature_checkpoint=checkpoint))
    size_mb = sum(p.stat().st_size for p in recorded.folder.iterdir()) / 2**20

    half = FolderChunks(work / "half")
    first = FeatureCheckpoint(half)
    target = checkpoint.computed_crops // 2
    try:
        analyze_video(clip, options=options, cache=cache, feature_checkpoint=first,
                      should_cancel=lambda: first.computed_crops >= target)
    except AnalysisCancelled:
        pass
    resumed = FeatureCheckpoint(half)
    result, resume_s = _timed(lambda: analyze_video(clip, options=options, cache=cache, feature_checkpoint=resumed))

    delta = max((abs(a.fake_probability - b.fake_probability) for ta, tb in zip(plain.tracks, result.tracks)
                 for a, b in zip(ta.windows, tb.windows)), default=0.0)
    print(f"without recording {plain_s:.1f} s; recording {record_s:.1f} s (x{record_s / plain_s:.2f}), "
          f"{size_mb:.0f} MiB for {checkpoint.computed_crops} crops")
    print(f"resumed from half ({resumed.reused_crops} crops replayed, {resumed.computed_crops} computed): "
          f"{resume_s:.1f} s (x{resume_s / plain_s:.2f} of a fresh run); max |dp| vs uninterrupted {delta:.2g}")


def _timed(run):
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
