"""End-to-end engine benchmark: `deepfake analyze` on 720p30 h264 clips of real faces.

Makes its own clips (the bundled face photos, animated) and its own checkpoint (the seed layout with
random weights: the compute is the real model's, the probabilities mean nothing). Each analysis runs
in a fresh `deepfake analyze --json` process so its peak RSS is its own.

Prints, per run: end-to-end frames/s and face crops/s, per-stage seconds and frames/s, the precision
and backend used, peak RSS, and |Δp| of every window against the fp32 run of the same clip; and, in
the same run, the CNN trunk alone (same checkpoint, precision and process set-up) in crops/s, with
the ratio end-to-end / trunk alone: how much of the CNN's speed reaches the user. The face detector
is the published RetinaFace from weights/ (install it with `deepfake weights fetch`).

    .venv/bin/python bench/engine_bench.py                # 1-minute and 10-minute clips
    .venv/bin/python bench/engine_bench.py --minutes 1 --device cuda --height 1080
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


PHOTOS = {1: ("astronaut",), 2: ("astronaut", "grace_hopper")}


def make_clip(path: Path, *, minutes: float, width: int, height: int, faces: int = 1, base_seconds: int = 10) -> Path:
    """A base clip of real faces, looped (stream copy) to the wanted length."""
    from tests.media import make_face_clip

    if path.exists():
        return path
    base = path.with_name(f"base-{width}x{height}-{faces}faces.mp4")
    if not base.exists():
        make_face_clip(base, seconds=base_seconds, fps=30, width=width, height=height,
                       photos=PHOTOS[faces], extra_args=("-preset", "veryfast", "-crf", "23"))
    loops = max(0, int(round(minutes * 60 / base_seconds)) - 1)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(base), "-c", "copy",
                    str(path)], check=True)
    return path


def make_weights(weights_dir: Path, *, sequence_length: int) -> None:
    import torch

    from shared.model.networks import SeedResNeXtLSTM

    path = weights_dir / f"model_90_acc_{sequence_length}_frames_bench.pt"
    if not path.exists():
        torch.manual_seed(0)
        weights_dir.mkdir(parents=True, exist_ok=True)
        torch.save(SeedResNeXtLSTM().state_dict(), path)


def install_detector(weights_dir: Path) -> str:
    """The published RetinaFace beside the bench checkpoint (copied from the repo's weights/)."""
    from shared.model.weights_registry import known_weights

    entry = next(e for e in known_weights() if e.name == "retinaface-mobilenet0.25")
    target = weights_dir / entry.filename
    source = ROOT / "weights" / entry.filename
    if not target.exists():
        if not source.exists():
            raise SystemExit(f"{source} is missing: run `.venv/bin/deepfake weights fetch {entry.name}` first")
        target.write_bytes(source.read_bytes())
    return entry.name


TRUNK_ALONE = """
import json, sys, time
import numpy as np, torch
from pathlib import Path
from shared.model.checkpoints import find_checkpoint, load_model
from shared.model.runtime import build_embedder
from shared.model.runtime.calibration import calibration_crops
weights_dir, length, precision, batch = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
model, spec = load_model(find_checkpoint(weights_dir, sequence_length=length), device=torch.device("cpu"))
embedder = build_embedder(model, spec, device=torch.device("cpu"), precision=precision, batch_size=batch)
crops = np.concatenate([calibration_crops(size=spec.input_size)] * 4)[: batch * 8]
embedder(crops[:batch])
best = 0.0
for _ in range(3):
    start = time.perf_counter(); embedder(crops); best = max(best, len(crops) / (time.perf_counter() - start))
print(json.dumps({"crops_per_s": best, "precision": embedder.precision, "backend": embedder.backend}))
"""


PRODUCER_ALONE = """
import json, sys, time
from pathlib import Path
from shared.model.faces import build_face_detector
from shared.model.stages.producer import CropProducer
from shared.media import probe_video
from shared.model.video import VideoReader
video, weights_dir, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
detector, _ = build_face_detector(kind="auto", device="cpu", weights_dir=weights_dir, threads=1)
info = probe_video(video)
producer = CropProducer(detector=detector, detect_every=5, full_detect_every=6, input_size=112, crop_margin=0.0,
                        frame_s=1.0 / info.fps, crop_threads=1)
frames = crops = 0
reader = VideoReader(video, batch_size=batch, info=info, threads=1)
start = time.perf_counter()
for prepared in producer.batches(reader):
    frames += prepared.count
    crops += len(prepared.owners)
seconds = time.perf_counter() - start
producer.close()
print(json.dumps({"frames_per_s": frames / seconds, "crops_per_frame": crops / max(frames, 1)}))
"""


def producer_alone(video: Path, *, weights_dir: Path) -> dict:
    """Decode → detect/track → crop on one thread with no CNN running: that stage's own cost."""
    from shared.model.stages.run import DECODE_BATCH_BYTES
    from shared.media import probe_video

    info = probe_video(video)
    batch = max(1, min(32, DECODE_BATCH_BYTES // max(1, info.width * info.height * 3)))
    done = subprocess.run([sys.executable, "-c", PRODUCER_ALONE, str(video), str(weights_dir), str(batch)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def trunk_alone(*, weights_dir: Path, sequence_length: int, precision: str, batch_size: int) -> dict:
    """The embedder by itself on real-face crops, in a fresh process set up as `analyze`'s is."""
    done = subprocess.run([sys.executable, "-c", TRUNK_ALONE, str(weights_dir), str(sequence_length), precision,
                           str(batch_size)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def crops_per_s(result: dict) -> float:
    """Face crops the CNN embedded per second of the analysis, model load excluded."""
    crops = sum(track["frames"] for track in result["tracks"])
    steady = result["timings"]["total_s"] - result["timings"].get("load_s", 0.0)
    return crops / steady


def _anonymous_bytes(pid: int) -> int:
    """The process's resident anonymous memory (heap, buffers): unlike RSS, it does not depend on
    how much of the shared libraries the page cache happens to map in (fault-around)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def run_analyze(video: Path, *, weights_dir: Path, extra: list[str]) -> tuple[dict, float, float, float]:
    """(result JSON, wall seconds, peak RSS MiB, peak anonymous MiB) of one `deepfake analyze` process."""
    env = dict(os.environ, WEIGHTS_DIR=str(weights_dir))
    cmd = [sys.executable, "-m", "cli", "analyze", str(video), "--json", *extra]
    start = time.perf_counter()
    # Output goes to files, not pipes: a long video's JSON outgrows a pipe's buffer while we poll.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = psutil.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
        peak = peak_anon = 0
        while process.poll() is None:
            try:
                peak = max(peak, process.memory_info().rss)
                peak_anon = max(peak_anon, _anonymous_bytes(process.pid))
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.2)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"analyze failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return json.loads(stdout), wall, peak / 2**20, peak_anon / 2**20


def max_delta(a: dict, b: dict) -> float:
    deltas = [abs(wa["fake_probability"] - wb["fake_probability"])
              for ta, tb in zip(a["tracks"], b["tracks"]) for wa, wb in zip(ta["windows"], tb["windows"])]
    return max(deltas) if deltas else float("nan")


def report(label: str, result: dict, wall: float, peak_mb: float, peak_anon_mb: float) -> None:
    frames = result["frames_analyzed"]
    timings = result["timings"]
    params = result["params"]
    print(f"\n== {label}: {frames} frames, {len(result['tracks'])} track(s), "
          f"detector {params['face_detector']}, precision {params['precision']} ({params['backend']}), "
          f"device {params['device']}")
    steady = timings["total_s"] - timings.get("load_s", 0.0)
    print(f"   end-to-end {frames / steady:.1f} frames/s with the model loaded ({steady:.1f} s; a worker loads once); "
          f"{crops_per_s(result):.1f} face crops/s")
    print(f"   end-to-end {frames / timings['total_s']:.1f} frames/s incl. model load ({timings['total_s']:.1f} s); "
          f"process wall {wall:.1f} s, {frames / wall:.1f} frames/s incl. interpreter start-up")
    for stage in ("decode_s", "detect_s", "crop_s", "embed_s", "classify_s", "heatmaps_s", "load_s", "hash_s"):
        seconds = timings.get(stage, 0.0)
        rate = f"{frames / seconds:.0f} frames/s" if seconds > 0 else "-"
        print(f"   {stage:<11} {seconds:8.2f} s   {rate}")
    print(f"   peak RSS {peak_mb:.0f} MiB, of which anonymous (heap, buffers) {peak_anon_mb:.0f} MiB")


def _vector_features() -> str:
    """The CPU's vector extensions that decide int8/bf16 speed (VNNI and AMX roughly double int8)."""
    from shared.model.runtime.devices import cpu_features

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    found = [f for f in wanted if f in cpu_features()]
    return "vector extensions: " + (", ".join(found) or "none of " + ", ".join(wanted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sequence-length", type=int, default=20)
    parser.add_argument("--faces", type=int, choices=(1, 2), default=1, help="people on screen")
    parser.add_argument("--fp32-minutes", type=float, default=1.0, help="clip length of the fp32 comparison run")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "deepfake-bench")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `deepfake analyze` flags")
    args = parser.parse_args()

    width = args.height * 16 // 9
    args.workdir.mkdir(parents=True, exist_ok=True)
    weights_dir = args.workdir / "weights"
    make_weights(weights_dir, sequence_length=args.sequence_length)
    detector = install_detector(weights_dir)
    common = ["--device", args.device, "--sequence-length", str(args.sequence_length), *args.extra]
    print(f"CPU: {os.cpu_count()} logical cores, {_vector_features()}; "
          f"clips {width}x{args.height} h264 30 fps, {args.faces} face(s), detector {detector}")

    results: dict[tuple[float, str], tuple[dict, float, float]] = {}
    for minutes in args.minutes:
        clip = make_clip(args.workdir / f"faces{args.faces}-{minutes:g}min-{args.height}p.mp4", minutes=minutes,
                         width=width, height=args.height, faces=args.faces)
        runs = ["auto"] + (["fp32"] if minutes == args.fp32_minutes else [])
        for precision in runs:
            results[(minutes, precision)] = run_analyze(clip, weights_dir=weights_dir,
                                                        extra=[*common, "--precision", precision])
            report(f"{minutes:g} min, --precision {precision}", *results[(minutes, precision)])

    print("\n== summary")
    if args.device == "cpu":
        cores = os.cpu_count() or 1
        for (minutes, precision), (result, *_rest) in results.items():
            alone = trunk_alone(weights_dir=weights_dir, sequence_length=args.sequence_length,
                                precision=precision, batch_size=result["params"]["batch_size"])
            ratio = crops_per_s(result) / alone["crops_per_s"]
            print(f"   {minutes:g} min --precision {precision}: trunk alone {alone['crops_per_s']:.1f} crops/s "
                  f"({alone['precision']}, {alone['backend']}); end to end {crops_per_s(result):.1f} crops/s "
                  f"= ×{ratio:.2f} of the trunk alone")
            clip = args.workdir / f"faces{args.faces}-{minutes:g}min-{args.height}p.mp4"
            stage = producer_alone(clip, weights_dir=weights_dir)
            # The ceiling: producer (one core-second per `1/frames_per_s` frames) and trunk (all cores)
            # overlapping perfectly, each frame costing both stages' core time and nothing else.
            trunk_core_s = cores / alone["crops_per_s"] * stage["crops_per_frame"]
            producer_core_s = 1.0 / stage["frames_per_s"]
            ceiling = trunk_core_s / (trunk_core_s + producer_core_s)
            print(f"      decode → detect → crop alone on one core: {stage['frames_per_s']:.1f} frames/s; "
                  f"ceiling with perfect overlap on {cores} cores: ×{ceiling:.2f} of the trunk alone; "
                  f"achieved {ratio / ceiling:.0%} of that ceiling")
    if (args.fp32_minutes, "fp32") in results and (args.fp32_minutes, "auto") in results:
        auto, fp32 = results[(args.fp32_minutes, "auto")][0], results[(args.fp32_minutes, "fp32")][0]
        speed = [r["frames_analyzed"] / (r["timings"]["total_s"] - r["timings"].get("load_s", 0.0))
                 for r in (auto, fp32)]
        print(f"   auto vs fp32 ({args.fp32_minutes:g} min): {speed[0]:.1f} vs {speed[1]:.1f} frames/s "
              f"(×{speed[0] / speed[1]:.2f}); max |Δp| over windows {max_delta(auto, fp32):.5f}")
    if len(args.minutes) >= 2:
        short, long = (results[(m, "auto")] for m in (min(args.minutes), max(args.minutes)))
        print(f"   peak RSS {max(args.minutes):g} min / {min(args.minutes):g} min: "
              f"{long[2]:.0f} / {short[2]:.0f} MiB = ×{long[2] / short[2]:.2f}; anonymous "
              f"{long[3]:.0f} / {short[3]:.0f} MiB = ×{long[3] / short[3]:.2f}")


if __name__ == "__main__":
    main()
