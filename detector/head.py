"""The classification and box subnets (paper section 4, Figure 3 c-d).

"The classification subnet ... applies four 3x3 conv layers, each with C
filters and each followed by ReLU activations, followed by a 3x3 conv layer
with KA filters." The box subnet is identical but ends in 4A outputs and does
not share parameters with it. Both are shared across pyramid levels.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

# model.head_norm -> the layer after each head conv (channels -> module), or
# None for the paper's head. "group" is torchvision's RetinaNet v2 head,
# which trains much faster from scratch.
HEAD_NORMS: dict[str, Optional[Callable[[int], nn.Module]]] = {
    "none": None,
    "group": lambda channels: nn.GroupNorm(min(32, channels), channels),
}


def _subnet(in_channels: int, channels: int, num_convs: int, out_channels: int, norm: str) -> nn.Sequential:
    """`num_convs` x (3x3 conv [+ norm] + ReLU) then a 3x3 conv to `out_channels`.

    `norm` is a name of `HEAD_NORMS`: "none" is the paper's head.
    """
    if norm not in HEAD_NORMS:
        raise ValueError(f"model.head_norm={norm!r} must be one of {', '.join(HEAD_NORMS)}")
    make_norm = HEAD_NORMS[norm]
    layers: list[nn.Module] = []
    for index in range(num_convs):
        layers.append(nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1))
        if make_norm is not None:
            layers.append(make_norm(channels))
        layers.append(nn.ReLU(inplace=True))
    last_in = channels if num_convs > 0 else in_channels
    layers.append(nn.Conv2d(last_in, out_channels, 3, padding=1))
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            # "All new conv layers ... initialized with bias b = 0 and a Gaussian weight fill with sigma = 0.01."
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0.0)
    return nn.Sequential(*layers)


def prior_bias(prior_prob: Optional[float]) -> float:
    """b = -log((1 - pi) / pi): every anchor starts with foreground confidence pi.

    Without it (None) the bias is 0, i.e. p = 0.5 for the ~10^5 background
    anchors, whose loss swamps the first iterations (paper section 3.3).
    """
    return 0.0 if prior_prob is None else -math.log((1.0 - prior_prob) / prior_prob)


def _flatten_level(output: torch.Tensor, width: int) -> torch.Tensor:
    """(N, A*width, H, W) -> (N, H*W*A, width): location-major, then anchor."""
    n, _, h, w = output.shape
    return output.view(n, -1, width, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, width)


class RetinaNetHead(nn.Module):
    """Class and box subnets applied to every pyramid level.

    forward(features: list of (N, C, H_l, W_l)) ->
        cls_logits (N, M, K), box_deltas (N, M, 4), M = sum_l H_l * W_l * A.
    """

    def __init__(self, *, in_channels: int, num_anchors: int, num_classes: int,
                 num_convs: int, channels: int, prior_prob: Optional[float], norm: str = "none") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_subnet = _subnet(in_channels, channels, num_convs, num_anchors * num_classes, norm)
        self.box_subnet = _subnet(in_channels, channels, num_convs, num_anchors * 4, norm)
        nn.init.constant_(self.cls_subnet[-1].bias, prior_bias(prior_prob))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits = [_flatten_level(self.cls_subnet(f), self.num_classes) for f in features]
        box_deltas = [_flatten_level(self.box_subnet(f), 4) for f in features]
        return torch.cat(cls_logits, dim=1), torch.cat(box_deltas, dim=1)
