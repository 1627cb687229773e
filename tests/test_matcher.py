"""Matcher: a hand-written 3x4 IoU matrix, low-quality matches, no boxes."""

import torch

from detector.matcher import Matcher

# rows: ground-truth boxes, columns: anchors
IOU = torch.tensor([
    [0.90, 0.45, 0.10, 0.00],
    [0.20, 0.42, 0.30, 0.00],
    [0.10, 0.20, 0.30, 0.00],
])


def test_thresholds():
    index, label = Matcher(fg_iou=0.5, bg_iou=0.4)(IOU)
    # a0: 0.90 with gt0 -> positive; a1: best 0.45 (gt0) in [0.4, 0.5) -> ignored;
    # a2: best 0.30 (gt1, first of a tie) -> negative; a3: nothing -> negative.
    assert index.tolist() == [0, 0, 1, 0]
    assert label.tolist() == [1, -1, 0, 0]
    assert index.dtype == torch.int64 and label.dtype == torch.int8


def test_low_quality_matches():
    index, label = Matcher(fg_iou=0.5, bg_iou=0.4, allow_low_quality=True)(IOU)
    # gt1's best anchor is a1 (0.42): positive and matched to gt1 although gt0 overlaps it more;
    # gt2's best is a2 (0.30): positive, matched to gt2; a3 has IoU 0 with every box: still negative.
    assert index.tolist() == [0, 1, 2, 0]
    assert label.tolist() == [1, 1, 1, 0]


def test_low_quality_keeps_all_ties():
    iou = torch.tensor([[0.3, 0.1, 0.3]])
    index, label = Matcher(allow_low_quality=True)(iou)
    assert label.tolist() == [1, 0, 1]
    assert index.tolist() == [0, 0, 0]


def test_a_box_without_overlap_claims_nothing():
    index, label = Matcher(allow_low_quality=True)(torch.zeros(2, 3))
    assert label.tolist() == [0, 0, 0]


def test_no_boxes_means_all_negative():
    index, label = Matcher(allow_low_quality=True)(torch.zeros(0, 5))
    assert index.tolist() == [0] * 5
    assert label.tolist() == [0] * 5
    assert index.dtype == torch.int64 and label.dtype == torch.int8
