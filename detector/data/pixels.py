"""Image tensors as pixel arrays for PIL: one conversion for every picture the project draws."""

from __future__ import annotations

import numpy as np
import torch


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8, or float in [0, 1] -> (H, W, 3) uint8; floats are clamped to [0, 1] first."""
    image = image.detach().cpu()
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().byte()
    return image.permute(1, 2, 0).numpy()
