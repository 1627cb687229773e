"""Pure loss functions on logits: focal loss, FL*, box regression, OHEM selection.

Notation of the paper (section 3): p = sigmoid(x) for one class of one anchor,
y in {0, 1}; p_t = p if y = 1 else 1 - p; alpha_t = alpha if y = 1 else
1 - alpha; x_t = x if y = 1 else -x, so that p_t = sigmoid(x_t).

Everything is computed from logits with log-sigmoid-type primitives
(`binary_cross_entropy_with_logits`, `softplus`), never log(sigmoid(x)), so
values and gradients stay finite for saturated logits.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms

REDUCTIONS = ("none", "sum", "mean")
BOX_LOSSES = ("smooth_l1", "l1")


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
        kind: "smooth_l1" or "l1"; smooth_l1 with beta = 0 is L1.
        beta: the smooth-L1 transition point between quadratic and linear.
        reduction: "none" -> (..., 4), "sum" or "mean" -> scalar.
    """
    if kind not in BOX_LOSSES:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(BOX_LOSSES)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} must be one of {', '.join(REDUCTIONS)}")
    target = target.to(pred.dtype)
    if kind == "l1" or beta == 0:
        return F.l1_loss(pred, target, reduction=reduction)
    return F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)


def ohem_select(
    anchor_losses: Tensor,
    boxes: Tensor,
    is_positive: Tensor,
    candidate: Tensor,
    *,
    batch_size: int,
    nms_thresh: float,
    max_pos_fraction: Optional[float] = None,
) -> Tensor:
    """Online hard example mining over the anchors of one image.

    Paper, section 5.1 (Table 1d): "in OHEM each example is scored by its loss,
    non-maximum suppression (nms) is then applied, and a minibatch is
    constructed with the highest-loss examples."

    Args:
        anchor_losses: (M,) loss of every anchor, the NMS score (not differentiated).
        boxes: (M, 4) xyxy boxes for the NMS (the decoded predictions).
        is_positive: (M,) bool, anchors matched to a box.
        candidate: (M,) bool, anchors that may be chosen (not ignored).
        batch_size: how many anchors to keep (B).
        nms_thresh: IoU above which a lower-loss box is suppressed.
        max_pos_fraction: None keeps the B highest-loss survivors; otherwise
            at most floor(B * fraction) positives (the hardest), the rest of
            the B negatives (0.25 is the paper's "1:3").

    Returns:
        (M,) bool mask of the chosen anchors.
    """
    losses = anchor_losses.detach().float()
    index = torch.nonzero(candidate, as_tuple=False).squeeze(1)
    order = index[torch.argsort(losses[index], descending=True, stable=True)]  # hardest first
    chosen = _mine(order, losses, boxes.detach().float(), is_positive, batch_size, nms_thresh, max_pos_fraction)
    mask = torch.zeros_like(candidate, dtype=torch.bool)
    mask[chosen] = True
    return mask


def _mine(order: Tensor, losses: Tensor, boxes: Tensor, is_positive: Tensor,
          batch_size: int, nms_thresh: float, max_pos_fraction: Optional[float]) -> Tensor:
    """Indices chosen by OHEM, running NMS on growing prefixes of `order`.

    Greedy NMS keeps a box unless a kept box of higher score overlaps it, so
    the survivors of a prefix of the score order are exactly the full NMS's
    survivors inside that prefix. Once a prefix yields a complete minibatch the
    rest cannot change it; this avoids an NMS over ~10^5 anchors (its CUDA
    kernel needs M^2 / 8 bytes) when a few hundred suffice.
    """
    max_pos = None if max_pos_fraction is None else math.floor(batch_size * max_pos_fraction)
    length = min(order.numel(), 4 * batch_size)
    while True:
        prefix = order[:length]
        survivors = prefix[nms(boxes[prefix], losses[prefix], nms_thresh)]  # by decreasing loss
        chosen, complete = _fill_minibatch(survivors, is_positive, batch_size, max_pos)
        if complete or length == order.numel():
            return chosen
        length = min(order.numel(), 2 * length)


def _fill_minibatch(survivors: Tensor, is_positive: Tensor, batch_size: int,
                    max_pos: Optional[int]) -> tuple[Tensor, bool]:
    """Pick from NMS survivors (hardest first); also say whether more survivors could change it."""
    if max_pos is None:
        return survivors[:batch_size], survivors.numel() >= batch_size
    positive = is_positive[survivors]
    pos, neg = survivors[positive], survivors[~positive]
    num_pos = min(max_pos, pos.numel())
    chosen = torch.cat([pos[:num_pos], neg[: batch_size - num_pos]])
    complete = pos.numel() >= max_pos and neg.numel() >= batch_size - max_pos
    return chosen, complete
