"""Anchors of RetinaNet on the FPN levels P3..P7.

Paper, section 4: "The anchors have areas of 32^2 to 512^2 on pyramid levels P3
to P7 ... at each level we use anchors at three aspect ratios {1:2, 1:1, 2:1}
... and anchors of sizes {2^0, 2^(1/3), 2^(2/3)} of the original set".

Order of the anchors (shared with the head, the criterion and the
post-processing; see docs/ARCHITECTURE.md): level-major (P3..P7); inside a
level row-major over (y, x); inside a location the A anchors aspect-ratio-major
then scale, `a = ratio_index * scales_per_octave + scale_index` (torchvision).
Boxes are `(x1, y1, x2, y2)` in pixels of the (resized, padded) input image.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)  # P3..P7


def feature_map_sizes(height: int, width: int, num_levels: int = 5) -> list[tuple[int, int]]:
    """Sizes `(H_l, W_l)` of P3.. for an input of `height x width` pixels.

    Every stride-2 layer on the way (ResNet conv1 7x7 pad 3, the 3x3 max-pool
    pad 1, the stride-2 stages C3-C5, the 3x3 pad-1 convs making P6 and P7)
    maps n to floor((n - 1) / 2) + 1 = ceil(n / 2); P3 is three halvings in.
    An 800x800 input gives 100, 50, 25, 13, 7.
    """
    h, w = int(height), int(width)
    for _ in range(3):  # conv1, max-pool, C3: stride 8
        h, w = _ceil_half(h), _ceil_half(w)
    sizes = [(h, w)]
    for _ in range(num_levels - 1):  # C4, C5 (-> P4, P5), then the P6, P7 convs
        h, w = _ceil_half(h), _ceil_half(w)
        sizes.append((h, w))
    return sizes


def _ceil_half(n: int) -> int:
    return (n + 1) // 2


class AnchorGenerator:
    """Anchors of `scales_per_octave x len(aspect_ratios)` shapes at every location.

    `sizes[l]` is the base side (sqrt of the area) of level l with stride
    `strides[l]`; a scale index i multiplies it by 2^(i / scales_per_octave);
    an aspect ratio r is h / w at constant area. Anchors are not rounded to
    integers (torchvision rounds its base anchors; Detectron does too).
    """

    def __init__(
        self,
        *,
        sizes: Sequence[float],
        scales_per_octave: int,
        aspect_ratios: Sequence[float],
        strides: Sequence[int] = DEFAULT_STRIDES,
        offset: float = 0.0,
    ) -> None:
        if len(sizes) != len(strides):
            raise ValueError(f"need one anchor size per level: {len(sizes)} sizes for {len(strides)} strides")
        if scales_per_octave < 1 or not aspect_ratios:
            raise ValueError("need scales_per_octave >= 1 and at least one aspect ratio")
        self.sizes = [float(s) for s in sizes]
        self.scales_per_octave = int(scales_per_octave)
        self.aspect_ratios = [float(r) for r in aspect_ratios]
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        # The cell anchors depend only on the config: build them once (float64, CPU).
        self._cell_anchors = [self._make_cell_anchors(size) for size in self.sizes]

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_anchors_per_location(self) -> int:
        """A = scales_per_octave * len(aspect_ratios) (9 in the paper)."""
        return self.scales_per_octave * len(self.aspect_ratios)

    def _make_cell_anchors(self, size: float) -> Tensor:
        """(A, 4) anchors centred at (0, 0), ratio-major then scale."""
        rows = []
        for ratio in self.aspect_ratios:
            for i in range(self.scales_per_octave):
                area = (size * 2.0 ** (i / self.scales_per_octave)) ** 2
                w = math.sqrt(area / ratio)
                h = w * ratio
                rows.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(rows, dtype=torch.float64)

    def cell_anchors(self, level: int) -> Tensor:
        """(A, 4) anchors of level index `level` (0 = P3) centred at (0, 0), float64."""
        return self._cell_anchors[level].clone()

    def grid_anchors(
        self,
        feature_shapes: Sequence[tuple[int, int]],
        device: Optional[torch.device | str] = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """All anchors, (sum_l H_l * W_l * A, 4) xyxy in image pixels.

        `feature_shapes[l] = (H_l, W_l)` of level l (P3 first). The centre of
        location (y, x) is ((x + offset) * stride, (y + offset) * stride).
        """
        if len(feature_shapes) != self.num_levels:
            raise ValueError(f"got {len(feature_shapes)} feature maps for {self.num_levels} anchor levels")
        per_level = [
            self._level_anchors(level, int(h), int(w), device, dtype)
            for level, (h, w) in enumerate(feature_shapes)
        ]
        return torch.cat(per_level, dim=0)

    def _level_anchors(self, level: int, height: int, width: int, device, dtype: torch.dtype) -> Tensor:
        """(H * W * A, 4) anchors of one level, row-major over (y, x), then A."""
        stride = self.strides[level]
        xs = (torch.arange(width, device=device, dtype=dtype) + self.offset) * stride
        ys = (torch.arange(height, device=device, dtype=dtype) + self.offset) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W): y is the slow index
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (HW, 1, 4)
        cell = self._cell_anchors[level].to(device=device, dtype=dtype).unsqueeze(0)  # (1, A, 4)
        return (shifts + cell).reshape(-1, 4)

    def __repr__(self) -> str:
        return (
            f"AnchorGenerator(sizes={self.sizes}, scales_per_octave={self.scales_per_octave}, "
            f"aspect_ratios={self.aspect_ratios}, strides={self.strides}, offset={self.offset})"
        )
