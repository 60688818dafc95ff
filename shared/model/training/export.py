"""`deepfake export`: a run's best checkpoint into the weights directory, in the project's format,
carrying its metadata and the chosen decision threshold, so `deepfake analyze --weights NAME`
and the workers load it by name; the engine's CPU fast path (its cached OpenVINO graph) is built
from it at once."""
from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from shared.model.checkpoints import ModelSpec, load_model, save_checkpoint
from shared.errors import InvalidOptionsError
from shared.model.training.errors import RunStateError
from shared.model.training.metrics import threshold_for_fpr
from shared.model.training.train import BEST_CHECKPOINT, PREDICTIONS_FILE


@dataclass(frozen=True)
class Export:
    path: Path
    spec: ModelSpec
    threshold_source: str
    fast_path: str | None = None


def export_run(
    run_dir: Path,
    *,
    weights_dir: Path,
    name: str | None = None,
    threshold: float | None = None,
    target_fpr: float | None = None,
    force: bool = False,
    fast_path: bool = True,
) -> Export:
    """Write RUN_DIR/best.pt to WEIGHTS_DIR/NAME.pt with its threshold (explicit, else the one that
    keeps the run's validation false-positive rate at `target_fpr`, else the checkpoint's own)."""
    run_dir = Path(run_dir)
    best = run_dir / BEST_CHECKPOINT
    if not best.is_file():
        raise RunStateError(f"{run_dir} has no {BEST_CHECKPOINT}; train first (deepfake train ... --out {run_dir})")
    model, spec = load_model(best, device="cpu")
    chosen, source = _threshold(run_dir, spec, threshold=threshold, target_fpr=target_fpr)
    name = _check_name(name or spec.name)
    target = Path(weights_dir) / f"{name}.pt"
    if target.exists() and not force:
        raise RunStateError(f"{target} already exists; pass --force to replace it or choose another --name")
    training = {**spec.training, "exported_from": str(run_dir.resolve()), "threshold_source": source}
    spec = replace(spec, name=name, threshold=float(chosen), training=training)
    save_checkpoint(model, spec, target)
    built = build_fast_path(target) if fast_path else None
    return Export(path=target, spec=spec, threshold_source=source, fast_path=built)


def build_fast_path(checkpoint: Path) -> str:
    """Let the engine build its CPU runtime for `checkpoint` now, as `analyze` would on first use,
    so the OpenVINO graph it converts (cached beside the checkpoint, keyed by its sha256) is ready.
    Returns the backend and precision the engine chose, with its warnings."""
    import torch

    from shared.model.runtime import build_embedder

    model, spec = load_model(checkpoint, device="cpu")
    embedder = build_embedder(model, spec, device=torch.device("cpu"), precision="auto")
    notes = "; ".join(w.message for w in embedder.warnings)
    return f"{embedder.backend} {embedder.precision}" + (f" ({notes})" if notes else "")


def _threshold(run_dir: Path, spec: ModelSpec, *, threshold: float | None, target_fpr: float | None) -> tuple[float, str]:
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise InvalidOptionsError(f"threshold must be between 0 and 1, got {threshold}")
        return threshold, "given"
    if target_fpr is not None:
        is_fake, scores = _validation_scores(run_dir)
        chosen, fpr, _ = threshold_for_fpr(is_fake, scores, target_fpr=target_fpr)
        return min(chosen, 1.0), f"validation FPR {fpr:.4f} for target {target_fpr:g}"
    return spec.threshold, "checkpoint"


def _validation_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise RunStateError(f"{path} is missing: the run's validation scores are needed for --target-fpr")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([r["label"] == "FAKE" for r in rows]), np.array([float(r["fake_probability"]) for r in rows])


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidOptionsError(f"export name must be a plain file name, got {name!r}")
    return name[:-3] if name.endswith(".pt") else name
