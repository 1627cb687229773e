"""Assignment of anchors to ground-truth boxes by IoU.

Paper, section 4: "anchors are assigned to ground-truth object boxes using an
intersection-over-union (IoU) threshold of 0.5; and to background if their IoU
is in [0, 0.4). ... Unassigned anchors, which have overlap in [0.4, 0.5), are
ignored during training."
"""

from __future__ import annotations

import torch
from torch import Tensor

POSITIVE = 1  # matched to the ground-truth box `index[a]`
NEGATIVE = 0  # background
IGNORE = -1  # neither: left out of the classification loss


class Matcher:
    """IoU matrix (G, A) -> per anchor the matched box index and a label.

    Labels: 1 positive (max IoU >= fg_iou), 0 negative (max IoU < bg_iou),
    -1 ignore (in between). With `allow_low_quality` (Detectron and
    detectron2; the paper does not say), every box also claims the anchors
    of its highest IoU (all ties, if that IoU > 0): they become positive and
    are matched to that box, so no box is left without a positive anchor.
    """

    def __init__(self, *, fg_iou: float = 0.5, bg_iou: float = 0.4, allow_low_quality: bool = False) -> None:
        if not 0.0 <= bg_iou <= fg_iou <= 1.0:
            raise ValueError(f"Matcher needs 0 <= bg_iou <= fg_iou <= 1, got bg_iou={bg_iou}, fg_iou={fg_iou}")
        self.fg_iou = float(fg_iou)
        self.bg_iou = float(bg_iou)
        self.allow_low_quality = bool(allow_low_quality)

    def __call__(self, iou: Tensor) -> tuple[Tensor, Tensor]:
        """`iou` (G, A) -> (index (A,) int64 into the G boxes, label (A,) int8 in {-1, 0, 1}).

        `index` is the box of highest IoU for every anchor (also for negative
        and ignored ones, where it means nothing). With G == 0 every anchor is
        negative and its index is 0.
        """
        num_anchors = iou.shape[1]
        if iou.shape[0] == 0:  # an image without boxes: all background
            index = torch.zeros(num_anchors, dtype=torch.int64, device=iou.device)
            return index, torch.full_like(index, NEGATIVE, dtype=torch.int8)
        max_iou, index = iou.max(dim=0)
        label = torch.full((num_anchors,), IGNORE, dtype=torch.int8, device=iou.device)
        label[max_iou < self.bg_iou] = NEGATIVE
        label[max_iou >= self.fg_iou] = POSITIVE
        if self.allow_low_quality:
            self._claim_best_anchors(iou, index, label)
        return index, label

    @staticmethod
    def _claim_best_anchors(iou: Tensor, index: Tensor, label: Tensor) -> None:
        """Make each box's highest-IoU anchors (ties included, IoU > 0) positive, in place.

        An anchor claimed by several boxes goes to the claimant of highest IoU.
        """
        best_per_box = iou.max(dim=1, keepdim=True).values  # (G, 1)
        claims = (iou == best_per_box) & (best_per_box > 0)  # (G, A)
        claimed_iou = torch.where(claims, iou, torch.full_like(iou, -1.0))
        claimant = claimed_iou.argmax(dim=0)  # (A,)
        claimed = claims.any(dim=0)
        index[claimed] = claimant[claimed]
        label[claimed] = POSITIVE
