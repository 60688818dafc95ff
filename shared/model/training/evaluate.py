"""`deepfake evaluate`: score a checkpoint (this project's or the seed's) on a clip manifest and
write a report: metrics.json, predictions.csv, report.md and PNG plots (ROC, confusion matrix,
score histograms)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from shared.model.checkpoints import ModelSpec, load_model
from shared.errors import InvalidOptionsError
from shared.model.networks import SEED_KIND
from shared.model.runtime.devices import select_device
from shared.model.training import metrics, plots
from shared.model.training.data import EVAL_SAMPLINGS, ClipDataset, Preprocess
from shared.model.training.manifest import ClipRecord, read_manifest
from shared.model.training.scoring import Scores, score_clips


@dataclass(frozen=True)
class Evaluation:
    """The figures and where the report went (`out_dir` None: nothing written)."""

    metrics: metrics.Metrics
    spec: ModelSpec
    sequence_length: int
    sampling: str
    out_dir: Path | None


def default_sampling(spec: ModelSpec) -> str:
    """Validate as the model was validated: the run's own choice, the first frames for the seed."""
    if spec.kind == SEED_KIND:
        return "first"
    return str(spec.training.get("eval_sampling", "center"))


def evaluate(
    checkpoint: Path,
    manifest: Path,
    *,
    out_dir: Path | None,
    target_fpr: float = 0.01,
    threshold: float | None = None,
    sequence_length: int | None = None,
    sampling: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
) -> Evaluation:
    """Score every clip of `manifest` with `checkpoint` (one window per clip) and report."""
    if not 0.0 <= target_fpr < 1.0:
        raise InvalidOptionsError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    torch_device = select_device(device)
    model, spec = load_model(Path(checkpoint), device=torch_device)
    records = read_manifest(Path(manifest))
    length = sequence_length or spec.sequence_length
    sampling = sampling or default_sampling(spec)
    if sampling not in EVAL_SAMPLINGS:
        raise InvalidOptionsError(f"sampling must be one of {', '.join(EVAL_SAMPLINGS)}, got {sampling!r}")
    dataset = ClipDataset(records, sequence_length=length, sampling=sampling, training=False,
                          preprocess=Preprocess.from_spec(spec), fake_index=spec.fake_index)
    scores = score_clips(model, dataset, device=torch_device, batch_size=batch_size, workers=workers, progress=progress)
    chosen = spec.threshold if threshold is None else threshold
    figures = metrics.summarize(scores.is_fake, scores.fake_probability, threshold=chosen, target_fpr=target_fpr)
    result = Evaluation(metrics=figures, spec=spec, sequence_length=length, sampling=sampling, out_dir=out_dir)
    if out_dir is not None:
        write_report(result, records, scores, checkpoint=Path(checkpoint), manifest=Path(manifest))
    return result


def write_report(result: Evaluation, records: list[ClipRecord], scores: Scores, *, checkpoint: Path, manifest: Path) -> Path:
    """Write metrics.json, predictions.csv, the plots and report.md into `result.out_dir`."""
    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = result.metrics
    payload = {"checkpoint": str(checkpoint), "manifest": str(manifest), "model": result.spec.name,
               "sequence_length": result.sequence_length, "sampling": result.sampling, "metrics": figures.to_dict()}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    _write_predictions(out / "predictions.csv", records, scores)
    curve = metrics.roc_curve(scores.is_fake, scores.fake_probability)
    if figures.roc_auc is not None:
        plots.roc_plot(curve, auc=figures.roc_auc, eer=figures.eer, path=out / "roc.png")
    plots.confusion_plot(figures.confusion, threshold=figures.threshold, path=out / "confusion.png")
    plots.score_histogram(scores.is_fake, scores.fake_probability, threshold=figures.threshold, path=out / "scores.png")
    report = out / "report.md"
    report.write_text(_markdown(result, checkpoint=checkpoint, manifest=manifest), encoding="utf-8")
    return report


def _write_predictions(path: Path, records: list[ClipRecord], scores: Scores) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "source", "track", "label", "fake_probability"])
        for record, probability in zip(records, scores.fake_probability):
            writer.writerow([record.clip.as_posix(), record.source, record.track, record.label, f"{probability:.6f}"])


def _fmt(value: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a (one class only)" if value is None else pattern.format(value)


def _markdown(result: Evaluation, *, checkpoint: Path, manifest: Path) -> str:
    m = result.metrics
    (ff, fr), (rf, rr) = m.confusion
    lines = [
        f"# Evaluation of `{checkpoint.name}`",
        "",
        f"- model: `{result.spec.name}` ({result.spec.kind}, {result.spec.backbone}), sha256 `{result.spec.sha256[:16]}…`",
        f"- clips: {m.count} from `{manifest}` ({m.fakes} FAKE, {m.reals} REAL)",
        f"- one window of {result.sequence_length} frames per clip, sampling `{result.sampling}`",
        "",
        "| figure | value |",
        "|---|---|",
        f"| accuracy at threshold {m.threshold:.4g} | {m.accuracy:.4f} |",
        f"| ROC-AUC | {_fmt(m.roc_auc)} |",
        f"| equal error rate | {_fmt(m.eer)} (threshold {_fmt(m.eer_threshold)}) |",
        f"| expected calibration error (10 bins) | {m.ece:.4f} |",
    ]
    if m.threshold_at_target_fpr is not None:
        lines.append(
            f"| threshold for FPR ≤ {m.target_fpr:g} | {m.threshold_at_target_fpr:.6f} "
            f"(FPR {m.fpr_at_target:.4f}, TPR {_fmt(m.tpr_at_target)}) |"
        )
    lines += [
        "",
        "## Confusion matrix (rows: truth, columns: call)",
        "",
        "| | called FAKE | called REAL |",
        "|---|---|---|",
        f"| FAKE | {ff} | {fr} |",
        f"| REAL | {rf} | {rr} |",
        "",
        "![ROC](roc.png) ![confusion matrix](confusion.png) ![score histograms](scores.png)",
        "",
    ]
    return "\n".join(lines)
