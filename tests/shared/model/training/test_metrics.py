import numpy as np
import pytest

from shared.model.training import metrics

# Four FAKE and four REAL clips, scores chosen so every figure can be worked out by hand.
IS_FAKE = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
SCORES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1])


def test_accuracy_and_confusion_at_half() -> None:
    # Called FAKE (>= 0.5): 0.9, 0.8, 0.6 (fakes) and 0.7 (a real).
    assert metrics.confusion_matrix(IS_FAKE, SCORES) == [[3, 1], [1, 3]]
    assert metrics.accuracy(IS_FAKE, SCORES) == pytest.approx(6 / 8)


def test_threshold_is_inclusive() -> None:
    assert metrics.confusion_matrix([True], [0.5], threshold=0.5) == [[1, 0], [0, 0]]


def test_auc_by_pair_counting() -> None:
    # Pairs (fake, real) with fake scored higher: 0.9 beats 4, 0.8 beats 4, 0.6 beats 3, 0.3 beats 2 → 13/16.
    assert metrics.roc_auc(IS_FAKE, SCORES) == pytest.approx(13 / 16)


def test_auc_counts_ties_as_half() -> None:
    assert metrics.roc_auc([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([True, True, False], [0.7, 0.5, 0.5]) == pytest.approx(0.75)


def test_auc_undefined_with_one_class() -> None:
    assert metrics.roc_auc([True, True], [0.1, 0.9]) is None


def test_roc_points() -> None:
    curve = metrics.roc_curve(IS_FAKE, SCORES)
    assert curve.fpr.tolist() == pytest.approx([0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    assert curve.tpr.tolist() == pytest.approx([0, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0])


def test_equal_error_rate() -> None:
    # At threshold 0.6: FPR 1/4, FNR 1/4 — the curve passes exactly through an equal point.
    eer, threshold = metrics.equal_error_rate(IS_FAKE, SCORES)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.6)


def test_equal_error_rate_interpolates_across_a_tie() -> None:
    # FAKE 0.9, FAKE 0.5, REAL 0.5, REAL 0.1: ROC (0,0) (0,.5) (.5,1) (1,1). On the tied segment
    # FPR = 1 − TPR at its midpoint (.25, .75): EER 0.25.
    eer, threshold = metrics.equal_error_rate([True, True, False, False], [0.9, 0.5, 0.5, 0.1])
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.5)
    # Perfect separation: 0.
    assert metrics.equal_error_rate([True, False], [0.9, 0.1])[0] == pytest.approx(0.0)


def test_expected_calibration_error_by_hand() -> None:
    # Confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right).
    # Bin (0.85, 0.9]: accuracy 0.5, confidence 0.9 → 0.4 × 2/4; bin (0.55, 0.6]: |1 − 0.6| × 2/4.
    is_fake = [True, False, True, False]
    scores = [0.9, 0.9, 0.6, 0.4]
    assert metrics.expected_calibration_error(is_fake, scores) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert metrics.expected_calibration_error([True, False], [1.0, 0.0]) == pytest.approx(0.0)


def test_threshold_for_target_fpr() -> None:
    # REAL scores 0.7, 0.4, 0.2, 0.1. FPR ≤ 0.25 allows one false alarm: threshold just above 0.4.
    threshold, fpr, tpr = metrics.threshold_for_fpr(IS_FAKE, SCORES, target_fpr=0.25)
    assert 0.4 < threshold < 0.4 + 1e-9
    assert fpr == pytest.approx(0.25)
    assert tpr == pytest.approx(0.75)
    # FPR 0: above the highest REAL score; only 0.9 and 0.8 are caught.
    threshold, fpr, tpr = metrics.threshold_for_fpr(IS_FAKE, SCORES, target_fpr=0.0)
    assert 0.7 < threshold < 0.7 + 1e-9 and fpr == 0.0 and tpr == pytest.approx(0.5)


def test_summarize_collects_everything() -> None:
    summary = metrics.summarize(IS_FAKE, SCORES, threshold=0.5, target_fpr=0.25)
    assert (summary.count, summary.fakes, summary.reals) == (8, 4, 4)
    assert summary.accuracy == pytest.approx(0.75)
    assert summary.roc_auc == pytest.approx(13 / 16)
    assert summary.fpr_at_target == pytest.approx(0.25)
    assert summary.to_dict()["confusion"] == [[3, 1], [1, 3]]
