"""RetinaNet: orchestrates backbone, head, anchors, loss and post-processing.

It holds no maths of its own: every concept lives in its module and is passed
in (keyword-only), so a test or a sweep can swap any part.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from detector.anchors import AnchorGenerator
from detector.backbone import build_backbone
from detector.box_coder import BoxCoder
from detector.config import ConfigError, InferenceConfig, LossConfig, ModelConfig
from detector.criterion import RetinaNetCriterion
from detector.head import RetinaNetHead
from detector.matcher import Matcher
from detector.postprocess import postprocess_image

# ImageNet statistics of torchvision's ResNet weights, for images in [0, 1].
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def unit_float(image: torch.Tensor) -> torch.Tensor:
    """A uint8 image (3, H, W) as float in [0, 1] (x / 255, on its device); a float image as it is."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image
SIZE_DIVISIBLE = 32  # inputs are zero-padded to a multiple of C5's stride: the FPN's upsampled maps then line up


class RetinaNet(nn.Module):
    """forward(images, targets=None).

    images: list of (3, H_i, W_i) floats in [0, 1]. Training (targets given,
    each {"boxes": (G, 4) xyxy, "labels": (G,) in 0..K-1}) returns
    {"loss_cls", "loss_box"} scalars and "num_pos"; inference returns one
    {"boxes" (D, 4), "scores" (D,), "labels" (D,)} per image, in input pixels.
    """

    def __init__(self, *, backbone: nn.Module, head: RetinaNetHead, anchor_generator: AnchorGenerator,
                 box_coder: BoxCoder, criterion: RetinaNetCriterion, inference: InferenceConfig,
                 size_divisible: int = SIZE_DIVISIBLE) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.criterion = criterion
        self.inference = inference
        self.size_divisible = size_divisible
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1), persistent=False)
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    def batch_images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Normalise, then zero-pad to a common size divisible by `size_divisible`: (N, 3, H, W).

        Images are (3, H_i, W_i), uint8 (as the datasets read them) or float in
        [0, 1]; uint8 is converted here, on the model's device."""
        images = [unit_float(image) for image in images]
        height = max(image.shape[1] for image in images)
        width = max(image.shape[2] for image in images)
        d = self.size_divisible
        height, width = -(-height // d) * d, -(-width // d) * d
        padded = [F.pad((image - self.pixel_mean) / self.pixel_std,
                        (0, width - image.shape[2], 0, height - image.shape[1])) for image in images]
        return torch.stack(padded)

    def anchors(self, feature_shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Anchors (M, 4) for these feature map shapes, cached: they depend on shapes only."""
        key = (tuple(feature_shapes), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = self.anchor_generator.grid_anchors(feature_shapes, device=device)
        return self._anchor_cache[key]

    def raw_outputs(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """cls_logits (N, M, K), box_deltas (N, M, 4), anchors (M, 4), anchors per level."""
        features = list(self.backbone(self.batch_images(images)).values())
        cls_logits, box_deltas = self.head(features)
        shapes = [tuple(f.shape[-2:]) for f in features]
        a = self.anchor_generator.num_anchors_per_location
        return cls_logits, box_deltas, self.anchors(shapes, cls_logits.device), [h * w * a for h, w in shapes]

    def forward(self, images: list[torch.Tensor], targets: Optional[list[dict]] = None):
        cls_logits, box_deltas, anchors, level_sizes = self.raw_outputs(images)
        if targets is not None:
            # The loss is computed in float32 even under autocast: the focal
            # term and the normaliser are sensitive to half precision.
            return self.criterion(cls_logits.float(), box_deltas.float(), anchors, targets)
        return [
            postprocess_image(logits.float(), deltas.float(), anchors, level_sizes,
                              tuple(image.shape[-2:]), self.box_coder, self.inference)
            for logits, deltas, image in zip(cls_logits, box_deltas, images)
        ]


def build_model(model_cfg: ModelConfig, loss_cfg: LossConfig, num_classes: int) -> RetinaNet:
    """RetinaNet for `num_classes` classes from the typed config."""
    anchor_generator = build_anchor_generator(model_cfg)
    head = RetinaNetHead(in_channels=model_cfg.fpn_channels, num_anchors=anchor_generator.num_anchors_per_location,
                         num_classes=num_classes, num_convs=model_cfg.head_convs,
                         channels=model_cfg.head_channels, prior_prob=model_cfg.prior_prob,
                         norm=model_cfg.head_norm)
    box_coder = BoxCoder(weights=tuple(model_cfg.box_coder_weights))
    criterion = RetinaNetCriterion(matcher=build_matcher(model_cfg), box_coder=box_coder, loss_cfg=loss_cfg,
                                   num_classes=num_classes)
    return RetinaNet(backbone=build_backbone(model_cfg), head=head, anchor_generator=anchor_generator,
                     box_coder=box_coder, criterion=criterion, inference=model_cfg.inference)


def load_trained(model_cfg: ModelConfig, loss_cfg: LossConfig, num_classes: int, path: Path) -> RetinaNet:
    """The RetinaNet a trial saved (`path`: run_trial's model.pt state dict), on the CPU.

    Built without its starting backbone weights: the state dict holds every weight, and
    `model.pretrained` (imagenet, synthetic) would otherwise download or pretrain first.
    Weights of another configuration are a one-line ConfigError."""
    model = build_model(dataclasses.replace(model_cfg, pretrained=None), loss_cfg, num_classes)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except RuntimeError as error:
        raise ConfigError(f"{Path(path).name} does not fit its config: {str(error).splitlines()[0]}") from None
    return model


def build_anchor_generator(model_cfg: ModelConfig) -> AnchorGenerator:
    """The model's AnchorGenerator of `model_cfg.anchors` (detector/regime.py counts with the same one)."""
    a = model_cfg.anchors
    return AnchorGenerator(sizes=a.sizes, scales_per_octave=a.scales_per_octave, aspect_ratios=a.aspect_ratios,
                           offset=a.offset)


def build_matcher(model_cfg: ModelConfig) -> Matcher:
    """The model's Matcher of `model_cfg.matcher`."""
    m = model_cfg.matcher
    return Matcher(fg_iou=m.fg_iou, bg_iou=m.bg_iou, allow_low_quality=m.allow_low_quality)
