"""PNG figures of training and evaluation (matplotlib's Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.model.training.metrics import RocCurve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def training_curves(history: list[dict], path: Path) -> Path:
    """Loss, accuracy and ROC-AUC per epoch (train and validation) in one PNG."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy"), ("ROC-AUC", None, "val_auc"))
    for ax, (title, train_key, val_key) in zip(axes, panels):
        if train_key:
            ax.plot(epochs, [row[train_key] for row in history], marker="o", label="train")
        ax.plot(epochs, [_nan(row.get(val_key)) for row in history], marker="o", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, plt, path)


def roc_plot(curve: RocCurve, *, auc: float | None, eer: float | None, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(curve.fpr, curve.tpr, label=f"ROC (AUC {auc:.3f})" if auc is not None else "ROC")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    if eer is not None:
        ax.scatter([eer], [1 - eer], color="red", zorder=3, label=f"EER {eer:.3f}")
    ax.set_xlabel("false-positive rate (REAL called FAKE)")
    ax.set_ylabel("true-positive rate (FAKE caught)")
    ax.legend(loc="lower right")
    return _save(fig, plt, path)


def confusion_plot(confusion: list[list[int]], *, threshold: float, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3.6))
    matrix = np.asarray(confusion)
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(value), ha="center", va="center", fontsize=12)
    ax.set_xticks([0, 1], ["FAKE", "REAL"])
    ax.set_yticks([0, 1], ["FAKE", "REAL"])
    ax.set_xlabel("called")
    ax.set_ylabel("truth")
    ax.set_title(f"threshold {threshold:.3g}")
    return _save(fig, plt, path)


def score_histogram(is_fake: np.ndarray, scores: np.ndarray, *, threshold: float, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bins = np.linspace(0, 1, 26)
    ax.hist(scores[is_fake], bins=bins, alpha=0.6, label="FAKE clips")
    ax.hist(scores[~is_fake], bins=bins, alpha=0.6, label="REAL clips")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("P(FAKE)")
    ax.set_ylabel("clips")
    ax.legend()
    return _save(fig, plt, path)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
