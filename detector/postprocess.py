"""Inference post-processing (paper section 4, "Inference").

"To improve speed, we only decode box predictions from at most 1k
top-scoring predictions per FPN level, after thresholding detector
confidence at 0.05. The top predictions from all levels are merged and
non-maximum suppression with a threshold of 0.5 is applied."
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from detector.box_coder import BoxCoder
from detector.config import InferenceConfig


def _top_of_level(logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                  box_coder: BoxCoder, cfg: InferenceConfig) -> tuple[torch.Tensor, ...]:
    """Threshold then top-k the (anchor, class) pairs of one level of one image.

    logits (M_l, K), deltas (M_l, 4), anchors (M_l, 4) -> boxes (D, 4), scores (D,), labels (D,).
    """
    num_classes = logits.shape[1]
    scores = torch.sigmoid(logits).flatten()  # (M_l * K,), index = anchor * K + class
    keep = torch.nonzero(scores > cfg.score_thresh).squeeze(1)
    scores = scores[keep]
    scores, order = scores.topk(min(cfg.topk_per_level, keep.numel()))
    keep = keep[order]
    anchor_index = torch.div(keep, num_classes, rounding_mode="floor")
    boxes = box_coder.decode(anchors[anchor_index], deltas[anchor_index])
    return boxes, scores, keep % num_classes


def postprocess_image(cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor,
                      level_sizes: list[int], image_size: tuple[int, int],
                      box_coder: BoxCoder, cfg: InferenceConfig) -> dict[str, torch.Tensor]:
    """Detections of one image: cls_logits (M, K), box_deltas (M, 4), anchors (M, 4).

    `level_sizes` are the anchor counts of P3..P7 (they sum to M); `image_size`
    is (h, w) of the unpadded image, to clip boxes. Returns boxes (D, 4) xyxy,
    scores (D,), labels (D,) int64 with D <= detections_per_image.
    """
    parts = [
        _top_of_level(logits, deltas, level_anchors, box_coder, cfg)
        for logits, deltas, level_anchors in zip(
            cls_logits.split(level_sizes), box_deltas.split(level_sizes), anchors.split(level_sizes))
    ]
    boxes, scores, labels = (torch.cat(column) for column in zip(*parts))
    boxes = clip_boxes_to_image(boxes, image_size)
    keep = batched_nms(boxes, scores, labels, cfg.nms_thresh)[: cfg.detections_per_image]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
