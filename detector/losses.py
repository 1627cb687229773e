"""Pure loss functions on logits: focal loss, FL*, box regression, OHEM selection.

`CLASSIFICATION_LOSSES` and `BOX_LOSSES` are the registries (name ->
callable) that the criterion calls and config validation reads: the one
list of allowed `loss.name` and `loss.box` values.

Notation of the paper (section 3): p = sigmoid(x) for one class of one anchor,
y in {0, 1}; p_t = p if y = 1 else 1 - p; alpha_t = alpha if y = 1 else
1 - alpha; x_t = x if y = 1 else -x, so that p_t = sigmoid(x_t).

Everything is computed from logits with log-sigmoid-type primitives
(`binary_cross_entropy_with_logits`, `softplus`), never log(sigmoid(x)), so
values and gradients stay finite for saturated logits.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

REDUCTIONS = ("none", "sum", "mean")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction={reduction!r} must be one of {', '.join(REDUCTIONS)}")


def _signed_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """x_t = x where y = 1, -x where y = 0 (targets in {0, 1})."""
    return logits * (2.0 * targets - 1.0)


def _alpha_t(targets: Tensor, alpha: float) -> Tensor:
    """alpha_t = alpha where y = 1, 1 - alpha where y = 0."""
    return alpha * targets + (1.0 - alpha) * (1.0 - targets)


def _modulating_factor(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma, computed as exp(-gamma * softplus(x_t)).

    1 - p_t = sigmoid(-x_t), so log(1 - p_t) = -softplus(x_t). Going through
    the log keeps the gradient finite where p_t rounds to 1 even for
    gamma < 1 (pow(0, gamma - 1) would be inf there, and inf * 0 = nan).
    """
    return torch.exp(-gamma * F.softplus(_signed_logits(logits, targets)))


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """Focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), elementwise.

    Paper, eq. 5: "we propose to add a modulating factor (1 - p_t)^gamma to
    the cross entropy loss". gamma = 0 is alpha-balanced CE; alpha=None drops
    the alpha_t factor (plain CE when gamma = 0 too).

    Args:
        logits: (...) raw scores x, any shape.
        targets: (...) same shape, 1 for the anchor's class, 0 otherwise.
        alpha: weight of the positives in [0, 1] (negatives get 1 - alpha), or None.
        gamma: focusing parameter >= 0.
        reduction: "none" -> (...), "sum" or "mean" -> scalar.
    """
    targets = targets.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t)
    if gamma != 0:
        loss = _modulating_factor(logits, targets, gamma) * loss
    if alpha is not None:
        loss = _alpha_t(targets, alpha) * loss
    return _reduce(loss, reduction)


def fl_star_loss(
    logits: Tensor,
    targets: Tensor,
    gamma: float,
    beta: float,
    alpha: Optional[float] = None,
    reduction: str = "none",
) -> Tensor:
    """FL*(x_t) = -log(sigmoid(gamma * x_t + beta)) / gamma, elementwise.

    Paper, appendix A: an alternative loss with the focal loss's behaviour,
    "FL* ... has two parameters, gamma and beta, that control the steepness
    and shift of the loss curve". Computed as softplus(-(gamma x_t + beta)) / gamma.

    Args:
        logits: (...) raw scores x.
        targets: (...) same shape, in {0, 1}.
        gamma: steepness, > 0.  beta: shift.
        alpha: optional alpha_t weighting as in the focal loss (None: none).
        reduction: "none" -> (...), "sum" or "mean" -> scalar.
    """
    if gamma <= 0:
        raise ValueError(f"fl_star_loss needs gamma > 0, got {gamma}")
    targets = targets.to(logits.dtype)
    loss = F.softplus(-(gamma * _signed_logits(logits, targets) + beta)) / gamma
    if alpha is not None:
        loss = _alpha_t(targets, alpha) * loss
    return _reduce(loss, reduction)


ClassificationLoss = Callable[..., Tensor]


def _focal(logits: Tensor, targets: Tensor, *, alpha: Optional[float], gamma: float, beta: float) -> Tensor:
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)


def _cross_entropy(logits: Tensor, targets: Tensor, *, alpha: Optional[float], gamma: float, beta: float) -> Tensor:
    # CE ignores gamma: it is the focal loss at gamma = 0 (alpha None: plain CE).
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=0.0)


def _fl_star(logits: Tensor, targets: Tensor, *, alpha: Optional[float], gamma: float, beta: float) -> Tensor:
    return fl_star_loss(logits, targets, gamma=gamma, beta=beta, alpha=alpha)


# loss.name -> elementwise loss (logits (...), targets (...), *, alpha, gamma, beta) -> (...).
# "ohem" scores and trains with CE; the criterion adds the mining.
CLASSIFICATION_LOSSES: dict[str, ClassificationLoss] = {
    "focal": _focal,
    "ce": _cross_entropy,
    "fl_star": _fl_star,
    "ohem": _cross_entropy,
}


def _smooth_l1(pred: Tensor, target: Tensor, beta: float, reduction: str) -> Tensor:
    if beta == 0:  # smooth L1 with beta 0 is L1 (torch's smooth_l1_loss divides by beta)
        return F.l1_loss(pred, target, reduction=reduction)
    return F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)


def _l1(pred: Tensor, target: Tensor, beta: float, reduction: str) -> Tensor:
    return F.l1_loss(pred, target, reduction=reduction)


# loss.box -> (pred (..., 4), target (..., 4), beta, reduction) -> loss.
BOX_LOSSES: dict[str, Callable[[Tensor, Tensor, float, str], Tensor]] = {
    "smooth_l1": _smooth_l1,
    "l1": _l1,
}


def box_regression_loss(
    pred: Tensor,
    target: Tensor,
    kind: str = "smooth_l1",
    beta: float = 0.11,
    reduction: str = "sum",
) -> Tensor:
    """Smooth-L1 (Detectron, beta = 0.11) or L1 (detectron2, beta = 0) loss of deltas.

    Args:
        pred, target: (..., 4) box deltas (dx, dy, dw, dh).
        kind: a name of `BOX_LOSSES`; smooth_l1 with beta = 0 is L1.
        beta: the smooth-L1 transition point between quadratic and linear.
        reduction: "none" -> (..., 4), "sum" or "mean" -> scalar.
    """
    if kind not in BOX_LOSSES:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(BOX_LOSSES)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} must be one of {', '.join(REDUCTIONS)}")
    return BOX_LOSSES[kind](pred, target.to(pred.dtype), beta, reduction)


# OHEM runs NMS on at most this many times B candidates per image (the
# highest-loss ones), which bounds its cost: NMS over all ~10^5 anchors took
# seconds per image on a CPU and needs an M^2 / 8-byte mask on CUDA. Greedy
# NMS keeps a box unless a higher-scoring kept box overlaps it, so the
# survivors inside a score prefix are exactly the full NMS's survivors
# there: without a quota the result is the full NMS's whenever B of them
# survive. With the 1:3 quota positives and negatives are pre-selected
# apart, so a positive may survive that a negative outside the pre-selection
# (but of higher loss) would have suppressed: a small, bounded difference.
OHEM_PRESELECT_FACTOR = 4


def ohem_select(
    anchor_losses: Tensor,
    boxes: Tensor,
    is_positive: Tensor,
    candidate: Tensor,
    *,
    batch_size: int,
    nms_thresh: float,
    max_pos_fraction: Optional[float] = None,
    preselect_factor: int = OHEM_PRESELECT_FACTOR,
) -> Tensor:
    """Online hard example mining over the anchors of each image of a batch.

    Paper, section 5.1 (Table 1d): "in OHEM each example is scored by its loss,
    non-maximum suppression (nms) is then applied, and a minibatch is
    constructed with the highest-loss examples."

    Bounded and vectorised: per image the `preselect_factor * B` highest-loss
    candidates (with a quota: that many positives and negatives, each by
    loss) go through one `batched_nms` over the whole batch, then the
    survivors fill the quota, hardest first. At most B anchors per image are
    chosen; fewer when fewer survive.

    Args:
        anchor_losses: (N, M) or (M,) loss of every anchor, the NMS score (not differentiated).
        boxes: (M, 4) xyxy boxes shared by the images (the anchors) or (N, M, 4) per image.
        is_positive: (N, M) or (M,) bool, anchors matched to a box.
        candidate: (N, M) or (M,) bool, anchors that may be chosen (not ignored).
        batch_size: how many anchors to keep per image (B).
        nms_thresh: IoU above which a lower-loss box is suppressed.
        max_pos_fraction: None keeps the B highest-loss survivors; otherwise
            at most floor(B * fraction) positives (the hardest), the rest of
            the B negatives (0.25 is the paper's "1:3").
        preselect_factor: candidates per image entering NMS, in units of B.

    Returns:
        bool mask of the chosen anchors, shaped like `candidate`.
    """
    single = candidate.dim() == 1
    if single:
        anchor_losses, is_positive, candidate = anchor_losses[None], is_positive[None], candidate[None]
        boxes = boxes if boxes.dim() == 2 else boxes[None]
    losses = anchor_losses.detach().float()
    max_pos = None if max_pos_fraction is None else math.floor(batch_size * max_pos_fraction)
    image, anchor = _preselect(losses, is_positive, candidate, preselect_factor * batch_size, max_pos)
    picked = boxes[anchor] if boxes.dim() == 2 else boxes[image, anchor]  # (C, 4)
    keep = batched_nms(picked.detach().float(), losses[image, anchor], image, nms_thresh)  # by decreasing loss
    image, anchor = image[keep], anchor[keep]
    chosen = _fill_quota(image, is_positive[image, anchor], losses.shape[0], batch_size, max_pos)
    mask = torch.zeros_like(candidate, dtype=torch.bool)
    mask[image[chosen], anchor[chosen]] = True
    return mask[0] if single else mask


def _top_per_image(scores: Tensor, allowed: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(image, anchor) index pairs (C,) of the <= k highest `scores` (N, M) per image where `allowed`."""
    k = min(k, scores.shape[1])
    masked = scores.masked_fill(~allowed, float("-inf"))
    values, anchor = masked.topk(k, dim=1)  # (N, k) each
    image = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(anchor)
    valid = values > float("-inf")  # images with fewer than k allowed anchors
    return image[valid], anchor[valid]


def _preselect(losses: Tensor, is_positive: Tensor, candidate: Tensor, k: int,
               max_pos: Optional[int]) -> tuple[Tensor, Tensor]:
    """The candidates that enter NMS: top-k by loss, or top-k of each kind under a quota."""
    if max_pos is None:
        return _top_per_image(losses, candidate, k)
    # With a quota the rarer positives are pre-selected apart from the
    # negatives: a top-k over both could leave no positive to take.
    pos = _top_per_image(losses, candidate & is_positive, k)
    neg = _top_per_image(losses, candidate & ~is_positive, k)
    return torch.cat([pos[0], neg[0]]), torch.cat([pos[1], neg[1]])


def _rank_in_group(group: Tensor) -> Tensor:
    """(C,) position of each element among those of its group, in the current order."""
    order = torch.sort(group, stable=True).indices  # groups together, current order inside
    sorted_group = group[order]
    starts = torch.searchsorted(sorted_group, sorted_group, right=False)
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.numel(), device=group.device) - starts
    return rank


def _fill_quota(image: Tensor, positive: Tensor, num_images: int, batch_size: int,
                max_pos: Optional[int]) -> Tensor:
    """(C,) bool: which NMS survivors (sorted by decreasing loss) form each image's minibatch."""
    if max_pos is None:
        return _rank_in_group(image) < batch_size
    rank = _rank_in_group(2 * image + positive.long())  # rank among the image's positives / negatives
    pos_taken = torch.bincount(image[positive & (rank < max_pos)], minlength=num_images)  # (N,)
    quota = torch.where(positive, torch.full_like(rank, max_pos), batch_size - pos_taken[image])
    return rank < quota
