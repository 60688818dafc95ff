"""Priors, decoding and NMS checked against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import torch

from shared.model.faces.priors import decode_boxes, decode_landmarks, prior_boxes, select, select_decoded


def test_prior_count_for_known_sizes():
    # (80² + 40² + 20²) cells × 2 anchors: the classic 16,800 at 640×640.
    assert prior_boxes(640, 640).shape == (16800, 4)
    # 360×640: 45×80 + 23×40 + 12×20 cells (stride-2 convs round up) × 2.
    assert prior_boxes(360, 640).shape == (9520, 4)


def test_prior_positions_follow_cells_then_sizes():
    p = prior_boxes(360, 640).numpy()
    np.testing.assert_allclose(p[0], [4 / 640, 4 / 360, 16 / 640, 16 / 360], rtol=1e-6)
    np.testing.assert_allclose(p[1], [4 / 640, 4 / 360, 32 / 640, 32 / 360], rtol=1e-6)
    np.testing.assert_allclose(p[2], [12 / 640, 4 / 360, 16 / 640, 16 / 360], rtol=1e-6)
    np.testing.assert_allclose(p[160], [4 / 640, 12 / 360, 16 / 640, 16 / 360], rtol=1e-6)  # next row
    np.testing.assert_allclose(p[7200], [8 / 640, 8 / 360, 64 / 640, 64 / 360], rtol=1e-6)  # stride 16
    np.testing.assert_allclose(p[-1], [(19.5 * 32) / 640, (11.5 * 32) / 360, 512 / 640, 512 / 360], rtol=1e-6)


def test_priors_are_cached_per_size():
    assert prior_boxes(90, 160) is prior_boxes(90, 160)
    assert prior_boxes(90, 160) is not prior_boxes(160, 90)


def test_decode_matches_a_hand_computed_box():
    prior = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    loc = torch.tensor([[[1.0, -1.0, math.log(2) / 0.2, 0.0]]])
    # centre (0.5 + 1·0.1·0.1, 0.5 − 1·0.1·0.2) = (0.51, 0.48); size (0.1·2, 0.2·1) = (0.2, 0.2)
    # corners (0.41, 0.38, 0.61, 0.58) × (200, 100, 200, 100)
    box = decode_boxes(loc, prior, size=(100, 200))
    np.testing.assert_allclose(box.numpy(), [[[82.0, 38.0, 122.0, 58.0]]], rtol=1e-5)


def test_decode_landmarks_matches_hand_computed_points():
    prior = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    pred = torch.tensor([[[1.0, 1.0] + [0.0] * 8]])
    points = decode_landmarks(pred, prior, size=(100, 200)).numpy()[0, 0]
    np.testing.assert_allclose(points[0], [(0.5 + 0.01) * 200, (0.5 + 0.02) * 100], rtol=1e-5)
    np.testing.assert_allclose(points[1], [100.0, 50.0], rtol=1e-5)


def test_select_thresholds_then_suppresses_overlaps_per_image():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [80, 80, 90, 90]], dtype=torch.float32)
    scores = torch.tensor([0.8, 0.9, 0.7, 0.5])
    # Image 1 holds the same boxes: nothing in it may suppress or be suppressed by image 0.
    batch_boxes, batch_scores = torch.stack([boxes, boxes]), torch.stack([scores, scores])
    results = select(batch_boxes, batch_scores, score_threshold=0.6, iou_threshold=0.4)
    assert len(results) == 2
    for kept_boxes, kept_scores, _ in results:
        np.testing.assert_allclose(kept_scores.numpy(), [0.9, 0.7], rtol=1e-6)
        np.testing.assert_allclose(kept_boxes.numpy(), [[1, 0, 11, 10], [50, 50, 60, 60]])


def test_select_keeps_overlaps_below_the_iou_threshold():
    boxes = torch.tensor([[[0, 0, 10, 10], [6, 0, 16, 10]]], dtype=torch.float32)  # IoU 4/16 = 0.25
    [(kept, _, _)] = select(boxes, torch.tensor([[0.9, 0.8]]), score_threshold=0.5, iou_threshold=0.4)
    assert kept.shape[0] == 2


def test_own_batched_nms_keeps_what_torchvision_keeps():
    from torchvision.ops import batched_nms as reference

    from shared.model.faces.priors import batched_nms

    generator = torch.Generator().manual_seed(0)
    for trial in range(20):
        count = 1 + trial * 15
        corners = torch.rand(count, 2, generator=generator) * 200
        sizes = torch.rand(count, 2, generator=generator) * 60 + 5
        boxes = torch.cat([corners, corners + sizes], dim=1)
        scores = torch.rand(count, generator=generator)
        groups = torch.randint(0, 3, (count,), generator=generator)
        for threshold in (0.3, 0.4, 0.7):
            assert batched_nms(boxes, scores, groups, threshold).tolist() == \
                reference(boxes, scores, groups, threshold).tolist()
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.4).numel() == 0


def test_at_most_max_candidates_per_image_reach_nms_best_first():
    from shared.model.faces.priors import MAX_CANDIDATES

    count = MAX_CANDIDATES + 500
    x = torch.arange(count, dtype=torch.float32)[:, None] * 10  # disjoint boxes: NMS keeps them all
    boxes = torch.cat([x, torch.zeros(count, 1), x + 5, torch.full((count, 1), 5.0)], dim=1)[None]
    scores = torch.linspace(0.7, 0.99, count)[None]
    [(kept_boxes, kept_scores, _)] = select(boxes, scores, score_threshold=0.6)
    assert len(kept_scores) == MAX_CANDIDATES
    assert kept_scores.min() >= scores[0, -MAX_CANDIDATES]


def test_decoding_only_the_passing_priors_selects_what_decoding_all_does():
    size = (96, 160)
    priors = prior_boxes(*size)
    generator = torch.Generator().manual_seed(7)
    loc = torch.randn(3, priors.shape[0], 4, generator=generator)
    offsets = torch.randn(3, priors.shape[0], 10, generator=generator)
    scores = torch.rand(3, priors.shape[0], generator=generator)
    everything = select(decode_boxes(loc, priors, size=size), scores, decode_landmarks(offsets, priors, size=size),
                        score_threshold=0.95, iou_threshold=0.4)
    passing_only = select_decoded(loc, scores, offsets, priors, size=size, score_threshold=0.95, iou_threshold=0.4)
    assert sum(len(s) for _, s, _ in everything) > 3  # the comparison is over real detections
    for (boxes_a, scores_a, marks_a), (boxes_b, scores_b, marks_b) in zip(everything, passing_only):
        assert torch.equal(scores_a, scores_b)
        assert torch.allclose(boxes_a, boxes_b) and torch.allclose(marks_a, marks_b)
