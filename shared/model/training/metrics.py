"""Binary detection metrics in numpy. FAKE is the positive class; a score is P(FAKE).

A clip is called FAKE when its score is >= the threshold, the rule the engine applies.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RocCurve:
    """False- and true-positive rates at every distinct score used as a threshold (descending)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class Metrics:
    """Summary figures of one scored set of clips."""

    count: int
    fakes: int
    reals: int
    threshold: float
    accuracy: float
    roc_auc: float | None
    eer: float | None
    eer_threshold: float | None
    ece: float
    confusion: list[list[int]]
    target_fpr: float | None = None
    threshold_at_target_fpr: float | None = None
    fpr_at_target: float | None = None
    tpr_at_target: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _as_arrays(is_fake, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(is_fake, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def accuracy(is_fake, scores, *, threshold: float = 0.5) -> float:
    """Fraction of clips whose call (score >= threshold → FAKE) matches the label."""
    y, s = _as_arrays(is_fake, scores)
    return float(np.mean((s >= threshold) == y)) if y.size else float("nan")


def confusion_matrix(is_fake, scores, *, threshold: float = 0.5) -> list[list[int]]:
    """[[FAKE called FAKE, FAKE called REAL], [REAL called FAKE, REAL called REAL]] (rows: truth)."""
    y, s = _as_arrays(is_fake, scores)
    called = s >= threshold
    return [
        [int(np.sum(y & called)), int(np.sum(y & ~called))],
        [int(np.sum(~y & called)), int(np.sum(~y & ~called))],
    ]


def roc_curve(is_fake, scores) -> RocCurve:
    """ROC points from the strictest threshold (nothing called FAKE) to the loosest (everything)."""
    y, s = _as_arrays(is_fake, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    positives, negatives = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return RocCurve(
        fpr=np.r_[0.0, fp / negatives],
        tpr=np.r_[0.0, tp / positives],
        thresholds=np.r_[np.inf, s[last_of_tie]],
    )


def roc_auc(is_fake, scores) -> float | None:
    """Area under the ROC curve (trapezoids; ties count one half). None with a single class."""
    y, _ = _as_arrays(is_fake, scores)
    if y.all() or not y.any():
        return None
    curve = roc_curve(is_fake, scores)
    return float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2.0))


def equal_error_rate(is_fake, scores) -> tuple[float, float] | tuple[None, None]:
    """(EER, threshold): where the false-positive rate equals the false-negative rate, linearly
    interpolated between the two ROC points that bracket it. (None, None) with a single class."""
    y, _ = _as_arrays(is_fake, scores)
    if y.all() or not y.any():
        return None, None
    curve = roc_curve(is_fake, scores)
    gap = curve.fpr - (1.0 - curve.tpr)  # rises from -1 to +1 along the curve
    k = int(np.argmax(gap >= 0))
    if gap[k] == 0 or k == 0:
        return float(curve.fpr[k]), float(curve.thresholds[k])
    w = -gap[k - 1] / (gap[k] - gap[k - 1])
    eer = curve.fpr[k - 1] + w * (curve.fpr[k] - curve.fpr[k - 1])
    return float(eer), float(curve.thresholds[k])


def expected_calibration_error(is_fake, scores, *, bins: int = 10) -> float:
    """ECE of the call's confidence (max(p, 1-p)) in `bins` equal-width bins over [0.5, 1]:
    sum over bins of (share of clips) × |accuracy − mean confidence|."""
    y, s = _as_arrays(is_fake, scores)
    if not y.size:
        return float("nan")
    called = s >= 0.5
    confidence = np.where(called, s, 1.0 - s)
    correct = called == y
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def threshold_for_fpr(is_fake, scores, *, target_fpr: float) -> tuple[float, float, float]:
    """(threshold, fpr, tpr): the lowest threshold whose false-positive rate on REAL clips is at
    most `target_fpr`, i.e. the most FAKE clips caught within that budget of false alarms."""
    y, s = _as_arrays(is_fake, scores)
    reals = np.sort(s[~y])[::-1]
    if not reals.size:
        raise ValueError("no REAL clips: a false-positive rate cannot be set")
    allowed = int(np.floor(target_fpr * reals.size + 1e-9))
    if allowed >= reals.size:
        threshold = float(s.min())
    else:
        # Just above the first REAL score that must not be called FAKE.
        threshold = float(np.nextafter(reals[allowed], np.inf))
    called = s >= threshold
    fpr = float(np.mean(called[~y]))
    tpr = float(np.mean(called[y])) if y.any() else float("nan")
    return threshold, fpr, tpr


def summarize(is_fake, scores, *, threshold: float = 0.5, target_fpr: float | None = None) -> Metrics:
    """Every figure of the evaluation report for one set of scored clips."""
    y, s = _as_arrays(is_fake, scores)
    eer, eer_threshold = equal_error_rate(y, s)
    at_target: tuple[float | None, ...] = (None, None, None)
    if target_fpr is not None and (~y).any():
        at_target = threshold_for_fpr(y, s, target_fpr=target_fpr)
    return Metrics(
        count=int(y.size),
        fakes=int(y.sum()),
        reals=int((~y).sum()),
        threshold=float(threshold),
        accuracy=accuracy(y, s, threshold=threshold),
        roc_auc=roc_auc(y, s),
        eer=eer,
        eer_threshold=eer_threshold,
        ece=expected_calibration_error(y, s),
        confusion=confusion_matrix(y, s, threshold=threshold),
        target_fpr=target_fpr,
        threshold_at_target_fpr=at_target[0],
        fpr_at_target=at_target[1],
        tpr_at_target=at_target[2],
    )
