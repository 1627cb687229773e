"""The R-CNN box parameterisation between anchors and boxes.

Paper, section 4: "we use the standard [box] parameterization" (Girshick et al.):
dx = wx (gx - ax) / aw, dy = wy (gy - ay) / ah, dw = ww log(gw / aw),
dh = wh log(gh / ah), with (ax, ay, aw, ah) the anchor's centre and size and
(gx, gy, gw, gh) the box's. Boxes are xyxy with width = x2 - x1 (no "+1").
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

# Largest dw / dh decode accepts: a box at most 1000/16 times its anchor's side
# (Detectron's bbox_xform_clip), so exp() never overflows on a bad prediction.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(..., 4) xyxy -> centre x, centre y, width, height, each (...)."""
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


class BoxCoder:
    """Encode boxes as deltas from anchors and decode deltas back to boxes."""

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clamp: float = DEFAULT_SCALE_CLAMP) -> None:
        if len(weights) != 4:
            raise ValueError(f"BoxCoder needs 4 weights (wx, wy, ww, wh), got {list(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """Deltas (M, 4) = (dx, dy, dw, dh) that take `anchors` (M, 4) to `boxes` (M, 4)."""
        wx, wy, ww, wh = self.weights
        boxes = boxes.to(anchors.dtype)
        ax, ay, aw, ah = _centres_and_sizes(anchors)
        gx, gy, gw, gh = _centres_and_sizes(boxes)
        dx = wx * (gx - ax) / aw
        dy = wy * (gy - ay) / ah
        dw = ww * torch.log(gw / aw)
        dh = wh * torch.log(gh / ah)
        return torch.stack([dx, dy, dw, dh], dim=-1)

    def decode(self, anchors: Tensor, deltas: Tensor) -> Tensor:
        """Boxes (..., M, 4) xyxy from `deltas` (..., M, 4) relative to `anchors` (M, 4).

        dw and dh are clamped at `clamp` before exp().
        """
        wx, wy, ww, wh = self.weights
        anchors = anchors.to(deltas.dtype)
        ax, ay, aw, ah = _centres_and_sizes(anchors)  # each (M,), broadcast over the leading dims
        cx = deltas[..., 0] / wx * aw + ax
        cy = deltas[..., 1] / wy * ah + ay
        w = torch.exp((deltas[..., 2] / ww).clamp(max=self.clamp)) * aw
        h = torch.exp((deltas[..., 3] / wh).clamp(max=self.clamp)) * ah
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, clamp={self.clamp:.4f})"
