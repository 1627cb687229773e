"""The typed sections of a trial's configuration: model, loss, data, train, eval.

Plain dataclasses with their defaults, no torch and no validation. They live
apart from `detector/config.py` (which puts them together as `TrialConfig`,
loads and validates it) because that validation reads the registries of the
modules implementing each name (`backbone.RESNETS`, `losses.BOX_LOSSES`, ...),
and those modules take their section from here: no module imports back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line for the user."""


SYNTHETIC_WEIGHTS = "synthetic"  # model.pretrained value: the backbone pretrained on synthetic crops


@dataclass
class AnchorConfig:
    """Anchors per FPN level P3..P7 (paper section 4)."""

    sizes: list[float] = field(default_factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0])
    scales_per_octave: int = 3  # scales 2^(i/n), i = 0..n-1
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # h / w
    offset: float = 0.0  # anchor centres at (x + offset) * stride; detectron2 uses 0.0


@dataclass
class MatcherConfig:
    """IoU thresholds of anchor assignment (positive >= fg, negative < bg)."""

    fg_iou: float = 0.5
    bg_iou: float = 0.4
    allow_low_quality: bool = False  # let each box claim its best anchors (Detectron)


@dataclass
class InferenceConfig:
    """Post-processing of the paper's section 4 (inference)."""

    score_thresh: float = 0.05
    topk_per_level: int = 1000
    nms_thresh: float = 0.5
    detections_per_image: int = 100


@dataclass
class PretrainConfig:
    """The offline stand-in for ImageNet pretraining (`model.pretrained=synthetic`).

    The ResNet first learns to classify object crops of a synthetic split of
    its own (never the detector's train or val images), then the detector
    fine-tunes it with frozen BN, as the paper fine-tunes ImageNet weights
    (detector/pretrain.py; docs/FIDELITY.md: why these values).
    """

    images: int = 2048  # scenes rendered for the crops (~4,000 objects with the cpu profile's scenes)
    steps: int = 300  # SGD steps, one-cycle lr: ResNet-18 reaches 99.0% held-out accuracy on the cpu profile's 20 classes, which more steps do not raise
    # Steps for the depths that `steps` leaves short of convergence, so every depth starts its detection
    # training from a converged classifier, as the paper's ImageNet models do: ResNet-34 reaches 95.5%
    # in 300 steps and 98.5% in 500 (docs/FIDELITY.md E26, E26b). A depth not listed uses `steps`.
    depth_steps: dict[int, int] = field(default_factory=lambda: {34: 500})
    batch_size: int = 64
    lr: float = 0.1  # the one-cycle peak
    # Crops resized to 64 x 64 (~2.5 min on 2 cores at 300 steps): the FL detector then reaches 18-21
    # AP, with 32-px crops (98% accuracy) only 13 (from scratch ~12): docs/FIDELITY.md E19-E22.
    crop_size: int = 64
    context: float = 1.25  # crop side / the box's long side: some background around each object
    label_smoothing: float = 0.1
    seed: int = 1  # the scenes' seed (the detector's data uses data.synthetic.seed, 0 by default)

    def for_depth(self, depth: int) -> "PretrainConfig":
        """These settings as ResNet-`depth` is pretrained: `steps` from `depth_steps` where listed."""
        return replace(self, steps=self.depth_steps.get(depth, self.steps), depth_steps={})


@dataclass
class ModelConfig:
    """RetinaNet: ResNet + FPN P3-P7 + class and box subnets."""

    depth: int = 50
    pretrained: Optional[str] = None  # None, "imagenet" (torchvision enum), "synthetic" (model.pretrain) or a state-dict path
    frozen_bn: bool = False  # True needs pretrained weights: frozen BN of a from-scratch ResNet is the identity
    fpn_channels: int = 256
    head_convs: int = 4
    head_channels: int = 256
    head_norm: str = "none"  # none (the paper) | group (GroupNorm, torchvision v2)
    prior_prob: Optional[float] = 0.01  # None: bias 0, to show the paper's divergence
    box_coder_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class OhemConfig:
    """Online hard example mining over CE (Table 1d)."""

    batch_per_image: int = 128  # the paper's row value (128 | 256 | 512)
    # Anchors mined per image = round(batch_per_image * batch_scale). The paper mines 128-512 of
    # COCO's ~134 positive anchors per image; a profile with fewer positives per image scales the
    # batch by its positives / the paper's, so a mined example weighs what it does in the paper.
    batch_scale: float = 1.0
    nms_thresh: float = 0.7
    max_pos_fraction: Optional[float] = None  # 0.25 is the paper's "1:3"
    # Which boxes OHEM's NMS compares: "anchors" (default: the box branch is never
    # trained on negatives, so its predictions there should not decide) or "predicted".
    nms_boxes: str = "anchors"


def mined_per_image(ohem: OhemConfig) -> int:
    """Anchors OHEM keeps per image: the row's batch scaled to the profile (at least 1)."""
    return max(1, round(ohem.batch_per_image * ohem.batch_scale))


@dataclass
class LossConfig:
    """Classification and box losses, and how they are normalised."""

    name: str = "focal"  # focal | ce | fl_star | ohem
    alpha: Optional[float] = 0.25  # None: no alpha balancing
    gamma: float = 2.0
    beta: float = 1.0  # FL* offset
    ohem: OhemConfig = field(default_factory=OhemConfig)
    box: str = "smooth_l1"  # smooth_l1 | l1
    box_beta: float = 0.11  # smooth-L1 transition (Detectron 0.11; 0 is L1)
    box_weight: float = 1.0
    normalizer: str = "num_pos"  # num_pos | num_pos_plus_images | ema
    normalizer_momentum: float = 0.9  # for "ema" (detectron2)


@dataclass
class SyntheticConfig:
    """The built-in synthetic scene generator (see detector.data.synthetic).

    The defaults are the cpu profile's scenes (docs/FIDELITY.md): 20 classes,
    1-3 objects of 12-96 px per 128-px image.
    """

    image_size: int = 128
    num_classes: int = 20  # > 10: one hue per class on a colour wheel
    min_objects: int = 1
    max_objects: int = 3
    min_object_size: float = 12.0  # short side, pixels; >= 12 keeps boxes matchable by 16-px anchors
    max_object_size: float = 96.0
    clutter: int = 20  # distractor blobs per image (not annotated)
    seed: int = 0


@dataclass
class DataConfig:
    """Where the images come from and how they are resized."""

    kind: str = "synthetic"  # synthetic | coco
    root: Optional[str] = None  # COCO 2017 root (annotations/, train2017/, val2017/)
    cache_dir: str = "~/.cache/retinanet-sweeps"  # where synthetic datasets are written
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_train_images: Optional[int] = None  # None: all (COCO) / generator default
    num_val_images: Optional[int] = None
    min_size: int = 600  # short side after resize
    max_size: int = 1000
    flip_prob: float = 0.5
    scale_jitter: Optional[list[int]] = None  # [min, max] short side while training
    num_workers: int = 0
    # Training images with no usable box (none, only crowd or only zero-size
    # boxes; ~1k of train2017's 118k) are dropped by default, as the reference
    # code does: Detectron (the paper's) keeps only roidb entries with a
    # foreground box (filter_for_training); detectron2 drops images without a
    # non-crowd annotation (DATALOADER.FILTER_EMPTY_ANNOTATIONS=True);
    # torchvision's reference drops train images with no annotation or only
    # boxes of <= 1 px (_coco_remove_images_without_annotations; it keeps
    # crowd-only ones). false keeps them as pure negatives. Validation images
    # are always all kept (COCOeval scores every image).
    drop_train_images_without_boxes: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrainConfig:
    """SGD with warm-up and step decay over an iteration schedule."""

    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    iterations: int = 90000
    steps: list[int] = field(default_factory=lambda: [60000, 80000])
    lr_decay: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3.0
    grad_clip: Optional[float] = None
    amp: bool = True  # only takes effect on CUDA
    # Train with the model in channels_last (NHWC). On one H100 (paper profile,
    # batch 16, 600 px) a step takes 0.76x the NCHW time under AMP, 0.81x in
    # fp32; on the 2-core CPU 0.97x, not worth changing the cpu profile's
    # numerics for (docs/BENCHMARKS.md). The paper profile turns it on.
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    num_threads: Optional[int] = None  # torch intra-op threads; None leaves torch's default
    log_every: int = 20
    eval_every: Optional[int] = None  # iterations between evaluations; None: only at the end
    checkpoint_every: Optional[int] = None


@dataclass
class EvalConfig:
    """COCO evaluation and the speed measurement."""

    backend: str = "faster_coco_eval"  # faster_coco_eval | pycocotools
    timing_images: int = 20  # images timed for ms/image (after warm-up)
    # Images per timed forward. 1 is the paper's measure (Figure 2); on a GPU a batch-1 forward is
    # bound by kernel launches, so ms/image stays flat with size and depth (docs/BENCHMARKS.md).
    timing_batch: int = 1
    warmup_images: int = 3
    # ms/image is timed with the model in channels_last (NHWC), the memory format
    # oneDNN's fast CPU convolutions and GPU tensor cores use. Measured on the
    # cpu profile (ResNet-18-FPN, 1 thread): NCHW takes 21.8 ms at 96 px but
    # 19.8 at 128 px; NHWC 13.5 and 17.5, rising with size (docs/FIDELITY.md E13).
    # Only the timing uses it: the AP evaluation keeps the model's own memory format.
    channels_last: bool = True
