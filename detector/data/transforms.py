"""Joint image/target transforms: resize (with optional scale jitter) and flip.

Every transform is a callable `(image, target) -> (image, target)` where
`image` is a tensor (3, H, W), uint8 as the datasets read it (or float in
[0, 1]), and `target["boxes"]` is a
(G, 4) float32 tensor of (x1, y1, x2, y2) pixels of the current image.
Randomness comes from torch's global generator, which training seeds.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

Target = dict[str, Any]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def resize_scale(height: int, width: int, short: float, max_size: float) -> float:
    """Factor that makes the short side `short` unless the long side would pass `max_size`."""
    return min(short / min(height, width), max_size / max(height, width))


class Resize:
    """Resize so the short side is `min_size` (capped by `max_size` on the long side).

    With `jitter=(lo, hi)` the short side is drawn uniformly from the integers
    lo..hi on each call (the paper's scale jitter, used only in training).
    Boxes are multiplied by the same scalar `s` that is recorded in
    `target["scale"]` (multiplied into any earlier scale), so predictions map
    back to the original image exactly by dividing by it; the image size is
    `round(H * s) x round(W * s)`.
    """

    def __init__(self, min_size: int, max_size: int, jitter: Optional[tuple[int, int]] = None) -> None:
        if jitter is not None and not 0 < jitter[0] <= jitter[1]:
            raise ValueError(f"jitter={jitter} must be (min, max) with 0 < min <= max")
        self.min_size, self.max_size = min_size, max_size
        self.jitter = None if jitter is None else (int(jitter[0]), int(jitter[1]))

    def short_side(self) -> int:
        """Target short side: fixed, or drawn from torch's global generator."""
        if self.jitter is None:
            return self.min_size
        return int(torch.randint(self.jitter[0], self.jitter[1] + 1, (1,)).item())

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        scale = resize_scale(h, w, self.short_side(), self.max_size)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size != (h, w):  # at scale 1 (the synthetic profiles) skip the copy
            image = _resize(image, size)
        target = dict(target)
        target["boxes"] = target["boxes"] * scale
        target["scale"] = float(target.get("scale", 1.0)) * scale
        return image, target

    def __repr__(self) -> str:
        return f"Resize(min_size={self.min_size}, max_size={self.max_size}, jitter={self.jitter})"


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (3, H, W) to `size`, keeping the dtype (uint8 stays uint8, rounded)."""
    if image.dtype == torch.uint8:  # torchvision's uint8 kernel: no float copy in the loader's workers
        return TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    # (3, H, W) -> (1, 3, H, W) -> interpolate -> (3, H', W')
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]


class RandomHorizontalFlip:
    """Mirror the image left-right with probability `p`; boxes become x1' = W - x2, x2' = W - x1."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if self.p <= 0 or torch.rand(1).item() >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target["boxes"]
        target = dict(target)
        # (G, 4) columns (x1, y1, x2, y2) -> (W - x2, y1, W - x1, y2)
        target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"
