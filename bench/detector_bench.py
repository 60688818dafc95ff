"""Face-detector benchmark: ms/frame for RetinaFace MobileNet0.25 and ResNet50 (random weights) at
640×360, batch sizes 1 and 8, and for the OpenCV Haar fallback.

Frames are the bundled face photos side by side (tests/media), so Haar has real faces to find.
Run: ``.venv/bin/python bench/detector_bench.py [--device cpu|cuda] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def frames(count: int):
    from tests.media import animated_frames

    return animated_frames(photos=("astronaut", "grace_hopper"), width=640, height=360, count=count)


def ms_per_frame(detect, batch, *, repeat: int) -> float:
    """Best of `repeat` timed runs after one warm-up, in milliseconds per frame."""
    detect(batch)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        detect(batch)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(batch)


def retinaface(backbone: str, device: str, backend: str = "torch"):
    import torch

    from shared.model.faces.inference import RetinaFaceDetector
    from shared.model.faces.retinaface import RetinaFace
    from shared.model.weights_registry import NORMALISATION

    torch.manual_seed(0)
    return RetinaFaceDetector(RetinaFace(backbone), normalisation=NORMALISATION["pytorch-retinaface"],
                              device=device, max_side=640, score_threshold=0.6, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    from shared.model.faces.opencv import HaarFaceDetector

    print(f"device {args.device}, torch threads {torch.get_num_threads()}, input 640x360")
    batch8 = frames(8)
    backends = ("torch", "openvino") if args.device == "cpu" else ("torch",)
    for backbone in ("mobilenet0.25", "resnet50"):
        for backend in backends:
            start = time.perf_counter()
            detector = retinaface(backbone, args.device, backend)
            load_s = time.perf_counter() - start
            # Random weights fire on many priors, so NMS works harder than with trained weights: the count is shown.
            hits = sum(len(f) for f in detector.detect(batch8)) / len(batch8)
            for size in (1, 8):
                ms = ms_per_frame(detector.detect, batch8[:size], repeat=args.repeat)
                print(f"retinaface-{backbone:14} {backend:8} bs {size}: {ms:8.1f} ms/frame  "
                      f"({1000 / ms:6.1f} frames/s), {hits:.0f} boxes/frame kept, set-up {load_s:.1f} s")
    haar = HaarFaceDetector()
    ms = ms_per_frame(haar.detect, batch8, repeat=args.repeat)
    found = [len(f) for f in haar.detect(batch8)]
    print(f"opencv-haar               : {ms:8.1f} ms/frame  ({1000 / ms:6.1f} frames/s), faces per frame {found}")


if __name__ == "__main__":
    main()
