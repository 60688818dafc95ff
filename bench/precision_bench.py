"""Embedder benchmark: frames/s of each CPU (or CUDA) path at one batch size, and |Δp| vs fp32.

Every path embeds the same crops; window FAKE probabilities over the deterministic calibration
crops (real face photo) are compared with plain PyTorch fp32. With no --weights, a seed-layout
checkpoint with random weights is generated (its probabilities mean little; pass a real one).
Also prints which path `--precision auto` chooses here and the CPU's relevant features.

Run: ``.venv/bin/python bench/precision_bench.py [--weights PATH] [--batch-size 32] [--batches 4]``
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (label, precision, backend) — "auto" last: it reuses the cached trunks and decisions
CPU_PATHS = [
    ("torch fp32", "fp32", "torch"),
    ("torch bf16", "bf16", "torch"),
    ("openvino fp32", "fp32", "openvino"),
    ("openvino int8", "int8", "openvino"),
    ("auto", "auto", "auto"),
]
CUDA_PATHS = [("cuda fp32", "fp32", "auto"), ("cuda fp16", "auto", "auto"), ("cuda bf16", "bf16", "auto")]


def _reference(model, spec, calibration):
    """Window probabilities of plain PyTorch fp32 on the CPU: every path is compared with these."""
    import torch

    from shared.model.runtime import build_embedder

    embedder = build_embedder(model, spec, device=torch.device("cpu"), precision="fp32", backend="torch")
    return _probabilities(embedder, calibration, spec.sequence_length)


def _random_seed_checkpoint(directory: Path) -> Path:
    import torch

    from shared.model.networks import SeedResNeXtLSTM

    torch.manual_seed(0)
    model = SeedResNeXtLSTM()
    with torch.no_grad():
        model.linear1.weight.normal_(0, 0.3)
    path = directory / "model_87_acc_20_frames_random.pt"
    torch.save(model.state_dict(), path)
    return path


def _frames_per_s(embedder, crops, *, batches: int) -> float:
    embedder(crops)  # warm-up
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(batches):
            embedder(crops)
        best = max(best, batches * len(crops) / (time.perf_counter() - start))
    return best


def _probabilities(embedder, crops, sequence_length: int):
    from shared.model.runtime.calibration import calibration_windows

    return embedder.fake_probabilities(calibration_windows(embedder(crops), sequence_length=sequence_length))


def _measure(label, precision, backend, *, model, spec, device, args, crops, calibration, reference):
    import torch

    from shared.model.runtime import build_embedder

    start = time.perf_counter()
    embedder = build_embedder(model, spec, device=device, precision=precision, backend=backend,
                              batch_size=args.batch_size, cache_dir=args.cache_dir)
    built_s = time.perf_counter() - start
    fps = _frames_per_s(embedder, crops, batches=args.batches)
    probs = _probabilities(embedder, calibration, spec.sequence_length)
    if device.type == "cuda":
        torch.cuda.synchronize()
    delta = float((probs - reference).abs().max())
    warnings = "; ".join(w.code for w in embedder.warnings) or "-"
    print(f"{label:<15} {embedder.backend:<9} {embedder.precision:<6} {fps:8.1f} {delta:10.2e} {built_s:8.1f}  {warnings}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, help="keep converted OpenVINO IR here between runs")
    parser.add_argument("--paths", help="comma-separated labels to run (default: all for the device)")
    args = parser.parse_args(argv)

    import torch

    from shared.model.checkpoints import load_model
    from shared.model.runtime import cpu_features, native_bf16, native_int8, select_device
    from shared.model.runtime.calibration import calibration_crops

    tmp = tempfile.TemporaryDirectory()
    args.cache_dir = args.cache_dir or Path(tmp.name) / "cache"
    path = args.weights or _random_seed_checkpoint(Path(tmp.name))
    device = select_device(args.device)
    model, spec = load_model(path)
    features = cpu_features()
    print(f"checkpoint {path.name} ({spec.kind}), device {device}, torch threads {torch.get_num_threads()}, "
          f"CPU {torch.backends.cpu.get_cpu_capability()}, native int8 {native_int8(features)}, "
          f"native bf16 {native_bf16(features)}")
    crops = calibration_crops(size=spec.input_size, count=args.batch_size)
    calibration = calibration_crops(size=spec.input_size)
    print(f"{'path':<15} {'backend':<9} {'prec':<6} {'frames/s':>8} {'max|Δp|':>10} {'build_s':>8}  warnings")
    reference = _reference(model, spec, calibration)
    paths = CUDA_PATHS if device.type == "cuda" else CPU_PATHS
    wanted = {p.strip() for p in args.paths.split(",")} if args.paths else {label for label, _, _ in paths}
    for label, precision, backend in (p for p in paths if p[0] in wanted):
        _measure(label, precision, backend, model=model, spec=spec, device=device, args=args,
                 crops=crops, calibration=calibration, reference=reference)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
