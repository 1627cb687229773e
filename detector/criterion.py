"""Training targets and losses of RetinaNet: assign, compare, normalise.

Paper, section 3: "the total focal loss of an image is computed as the sum of
the focal loss over all ~100k anchors, normalized by the number of anchors
assigned to a ground-truth box." Section 4: box regression uses "smooth L1
loss" on the positives. What the paper leaves open (the normaliser when no
anchor is positive, smooth-L1 beta, low-quality matches) is a config value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detector.box_coder import BoxCoder
from detector.sections import LossConfig, mined_per_image
from detector.losses import BOX_LOSSES, CLASSIFICATION_LOSSES, box_regression_loss, ohem_select
from detector.matcher import POSITIVE, Matcher

# detectron2 starts its moving average of the positive count at 100 ("a
# reasonable guess" of positives per image) so the first iterations are not
# normalised by a tiny number.
EMA_INITIAL_NORMALIZER = 100.0


def _num_pos(state: dict[str, float], num_pos: float, num_images: int, momentum: float) -> float:
    """The paper: the number of positive anchors (at least 1)."""
    return max(1.0, num_pos)


def _num_pos_plus_images(state: dict[str, float], num_pos: float, num_images: int, momentum: float) -> float:
    """Detectron: positives + 1 per image, never zero."""
    return num_pos + num_images


def _ema(state: dict[str, float], num_pos: float, num_images: int, momentum: float) -> float:
    """detectron2: a moving average of max(1, positives), updated in `state` at every call."""
    state["ema_normalizer"] = momentum * state["ema_normalizer"] + (1.0 - momentum) * max(1.0, num_pos)
    return state["ema_normalizer"]


# loss.normalizer -> (state, num_pos, num_images, momentum) -> the divisor of the summed losses.
NORMALIZERS: dict[str, Callable[[dict[str, float], float, int, float], float]] = {
    "num_pos": _num_pos,
    "num_pos_plus_images": _num_pos_plus_images,
    "ema": _ema,
}


def _anchor_boxes(anchors: Tensor, box_deltas: Tensor, box_coder: BoxCoder) -> Tensor:
    """(M, 4): OHEM's NMS over the anchors themselves."""
    return anchors


def _predicted_boxes(anchors: Tensor, box_deltas: Tensor, box_coder: BoxCoder) -> Tensor:
    """(N, M, 4): OHEM's NMS over the decoded predictions (as for RoIs in Shrivastava et al.)."""
    return box_coder.decode(anchors, box_deltas.detach().float())


# Which boxes OHEM's NMS compares. "anchors" (the default): the box branch is
# never trained on negatives, so its outputs there are noise and should not
# decide which hard negatives suppress each other; the anchors are what the
# loss is attached to. "predicted" is kept for comparison.
OHEM_NMS_BOXES: dict[str, Callable[[Tensor, Tensor, BoxCoder], Tensor]] = {
    "anchors": _anchor_boxes,
    "predicted": _predicted_boxes,
}


@dataclass
class Assignment:
    """Anchors of a batch matched to the ground truth.

    labels:  (N, M) int8, 1 positive, 0 negative, -1 ignore.
    classes: (N, M) int64, class 0..K-1 of the matched box (meaningful where positive).
    boxes:   (N, M, 4) xyxy of the matched box (meaningful where positive).
    """

    labels: Tensor
    classes: Tensor
    boxes: Tensor


def one_hot_targets(classes: Tensor, positive: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(...,) classes and positive mask -> (..., K) targets: 1 at the class of positives, else 0.

    Negatives are all zeros: with one-vs-all sigmoids there is no background class.
    """
    targets = torch.zeros(*classes.shape, num_classes, dtype=dtype, device=classes.device)
    return targets.scatter_(-1, classes.unsqueeze(-1), positive.unsqueeze(-1).to(dtype))


class RetinaNetCriterion:
    """Classification loss (focal, CE, FL* or OHEM) and box loss of a batch.

    `loss_cfg.normalizer` (a name of `NORMALIZERS`) divides the focal / CE /
    FL* classification loss and the box loss: "num_pos" = max(1, positives in
    the batch) (the paper), "num_pos_plus_images" = positives + N (Detectron),
    "ema" = a moving average of max(1, positives) with `normalizer_momentum`
    (detectron2), updated at every call and saved by `state_dict`. OHEM
    averages both losses over the mined anchors instead; `loss.ohem.nms_boxes`
    (a name of `OHEM_NMS_BOXES`) says which boxes its NMS compares.
    """

    def __init__(self, *, matcher: Matcher, box_coder: BoxCoder, loss_cfg: LossConfig, num_classes: int) -> None:
        for key, value, registry in (("loss.name", loss_cfg.name, CLASSIFICATION_LOSSES),
                                     ("loss.box", loss_cfg.box, BOX_LOSSES),
                                     ("loss.normalizer", loss_cfg.normalizer, NORMALIZERS),
                                     ("loss.ohem.nms_boxes", loss_cfg.ohem.nms_boxes, OHEM_NMS_BOXES)):
            if value not in registry:
                raise ValueError(f"{key}={value!r} must be one of {', '.join(registry)}")
        self.matcher = matcher
        self.box_coder = box_coder
        self.loss_cfg = loss_cfg
        self.num_classes = int(num_classes)
        self.state: dict[str, float] = {"ema_normalizer": EMA_INITIAL_NORMALIZER}

    def __call__(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                 targets: list[dict[str, Tensor]]) -> dict[str, Any]:
        """cls_logits (N, M, K), box_deltas (N, M, 4), anchors (M, 4), targets[n] = {"boxes" (G, 4), "labels" (G,)}.

        Returns {"loss_cls": scalar, "loss_box": scalar, "num_pos": float (positives in the batch)}.
        """
        assignment = self.assign(anchors, targets)
        positive = assignment.labels == POSITIVE  # (N, M)
        num_pos = float(positive.sum())
        box_terms = self._positive_box_loss(box_deltas, anchors, assignment.boxes, positive).sum(-1)  # (P,)
        if self.loss_cfg.name == "ohem":
            loss_cls, loss_box = self._ohem_losses(cls_logits, box_deltas, anchors, assignment, box_terms)
        else:
            normalizer = self._normalizer(num_pos, len(targets))
            loss_cls = self._dense_classification_loss(cls_logits, assignment) / normalizer
            loss_box = box_terms.sum() / normalizer
        return {"loss_cls": loss_cls, "loss_box": loss_box, "num_pos": num_pos}

    # ---- targets -------------------------------------------------------------

    def assign(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> Assignment:
        """Match the anchors (M, 4) to each image's boxes; see `Assignment` for the shapes."""
        per_image = [self._assign_image(anchors, t["boxes"], t["labels"]) for t in targets]
        labels, classes, boxes = (torch.stack(parts) for parts in zip(*per_image))
        return Assignment(labels=labels, classes=classes, boxes=boxes)

    def _assign_image(self, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(M,) labels, (M,) classes, (M, 4) matched boxes of one image."""
        gt_boxes = gt_boxes.to(device=anchors.device, dtype=anchors.dtype)
        gt_labels = gt_labels.to(device=anchors.device, dtype=torch.int64)
        index, label = self.matcher(box_iou(gt_boxes, anchors))  # IoU (G, M)
        if gt_boxes.shape[0] == 0:  # nothing to point at: the matcher made every anchor negative
            return label, torch.zeros_like(index), torch.zeros_like(anchors)
        return label, gt_labels[index], gt_boxes[index]

    def classification_targets(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """(cls_targets (N, M, K) float in {0, 1}, valid (N, M) bool = not ignored)."""
        assignment = self.assign(anchors, targets)
        positive = assignment.labels == POSITIVE
        return one_hot_targets(assignment.classes, positive, self.num_classes), assignment.labels >= 0

    # ---- losses --------------------------------------------------------------

    def _element_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-element classification loss (..., K) of `CLASSIFICATION_LOSSES[loss_cfg.name]`."""
        cfg = self.loss_cfg
        return CLASSIFICATION_LOSSES[cfg.name](logits, targets, alpha=cfg.alpha, gamma=cfg.gamma, beta=cfg.beta)

    def _dense_classification_loss(self, cls_logits: Tensor, assignment: Assignment) -> Tensor:
        """Sum of the loss over all non-ignored anchors and all K classes (not normalised)."""
        valid = assignment.labels >= 0  # (N, M); ignored anchors do not contribute
        positive = assignment.labels[valid] == POSITIVE  # (V,)
        targets = one_hot_targets(assignment.classes[valid], positive, self.num_classes)  # (V, K)
        return self._element_loss(cls_logits[valid].float(), targets).sum()  # float32 also under AMP

    def _positive_box_loss(self, box_deltas: Tensor, anchors: Tensor, matched_boxes: Tensor, positive: Tensor) -> Tensor:
        """(P, 4) box loss terms of the P positive anchors, times box_weight (not normalised)."""
        cfg = self.loss_cfg
        anchors = anchors.unsqueeze(0).expand_as(matched_boxes)  # (N, M, 4)
        target_deltas = self.box_coder.encode(anchors[positive], matched_boxes[positive])  # (P, 4)
        terms = box_regression_loss(box_deltas[positive].float(), target_deltas, kind=cfg.box,
                                    beta=cfg.box_beta, reduction="none")
        return cfg.box_weight * terms

    def _ohem_losses(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, assignment: Assignment,
                     positive_box_loss: Tensor) -> tuple[Tensor, Tensor]:
        """(loss_cls, loss_box) of OHEM: both averaged over the anchors mined per image.

        As in Shrivastava et al. (OHEM), whose backward pass sees only the
        selected RoIs and averages their multi-task loss (Fast R-CNN), the box
        loss covers only the mined positives, not all positives: an easy
        positive left out of the minibatch trains neither branch.
        `positive_box_loss` (P,) is each positive's box loss (row-major over (N, M)).
        """
        positive = assignment.labels == POSITIVE  # (N, M)
        targets = one_hot_targets(assignment.classes, positive, self.num_classes)
        per_anchor = self._element_loss(cls_logits.float(), targets).sum(-1)  # (N, M)
        chosen = self._mine(per_anchor, box_deltas, anchors, assignment, positive_box_loss)  # (N, M)
        count = chosen.sum().clamp(min=1)
        return per_anchor[chosen].sum() / count, positive_box_loss[chosen[positive]].sum() / count

    @torch.no_grad()  # the mining itself is not differentiated
    def _mine(self, per_anchor: Tensor, box_deltas: Tensor, anchors: Tensor, assignment: Assignment,
              positive_box_loss: Tensor) -> Tensor:
        """(N, M) bool: the anchors OHEM keeps, scored by their whole loss (CE + box loss for positives)."""
        positive = assignment.labels == POSITIVE
        score = per_anchor.detach().clone()
        score[positive] += positive_box_loss.detach()
        boxes = OHEM_NMS_BOXES[self.loss_cfg.ohem.nms_boxes](anchors, box_deltas, self.box_coder)
        ohem = self.loss_cfg.ohem
        return ohem_select(score, boxes, positive, assignment.labels >= 0, batch_size=mined_per_image(ohem),
                           nms_thresh=ohem.nms_thresh, max_pos_fraction=ohem.max_pos_fraction)

    # ---- normaliser ----------------------------------------------------------

    def _normalizer(self, num_pos: float, num_images: int) -> float:
        """The divisor of the summed losses, by loss_cfg.normalizer (may update `state`)."""
        cfg = self.loss_cfg
        return NORMALIZERS[cfg.normalizer](self.state, num_pos, num_images, cfg.normalizer_momentum)

    def state_dict(self) -> dict[str, float]:
        """The moving-average normaliser, for checkpoints (plain floats)."""
        return {key: float(value) for key, value in self.state.items()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.state.update({key: float(state[key]) for key in self.state})
