"""Plain, typed configuration of one trial: model, loss, data, training.

`detector/` knows nothing of Hydra: `sweeps/` composes a Hydra config, turns it
into a plain dict and calls `TrialConfig.from_dict`, which builds these
dataclasses, rejects unknown keys and validates every value. A bad value
raises `ConfigError` with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional


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
    steps: int = 300  # SGD steps, one-cycle lr: 99.0% held-out accuracy on the cpu profile's 20 classes, as at 500
    batch_size: int = 64
    lr: float = 0.1  # the one-cycle peak
    # Crops resized to 64 x 64 (~2.5 min on 2 cores at 300 steps): the FL detector then reaches 18-21
    # AP, with 32-px crops (98% accuracy) only 13 (from scratch ~12): docs/FIDELITY.md E19-E22.
    crop_size: int = 64
    context: float = 1.25  # crop side / the box's long side: some background around each object
    label_smoothing: float = 0.1
    seed: int = 1  # the scenes' seed (the detector's data uses data.synthetic.seed, 0 by default)


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
    warmup_images: int = 3
    # ms/image is timed with the model in channels_last (NHWC), the memory format
    # oneDNN's fast CPU convolutions and GPU tensor cores use. Measured on the
    # cpu profile (ResNet-18-FPN, 1 thread): NCHW takes 21.8 ms at 96 px but
    # 19.8 at 128 px; NHWC 13.5 and 17.5, rising with size (docs/FIDELITY.md E13).
    # Only the timing: AP is computed as before.
    channels_last: bool = True


@dataclass
class TrialConfig:
    """Everything one trial needs: build, fit, evaluate."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        """Build from a nested dict (unknown keys rejected), then validate."""
        config = _build(cls, values, prefix="")
        validate(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(kind: type, values: Any, prefix: str) -> Any:
    """Recursively turn `values` into dataclass `kind`, naming bad keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; allowed: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        kwargs[name] = _build(hint, value, f"{prefix}{name}.") if dataclasses.is_dataclass(hint) else value
    return kind(**kwargs)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _in_unit(name: str, value: Optional[float], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _check(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, f"{name}={value!r} must be in [0, 1]")


def validate(config: TrialConfig) -> None:
    """Raise ConfigError (one line) for the first invalid value.

    The allowed names come from the registries of the modules that implement
    them (imported here, so that importing this module needs no torch).
    """
    from detector.evaluate import BACKENDS

    _validate_model(config.model)
    _validate_loss(config.loss)
    _validate_data(config.data)
    _check(config.model.pretrained != SYNTHETIC_WEIGHTS or config.data.kind == "synthetic",
           "model.pretrained=synthetic needs data.kind=synthetic (its crops come from the synthetic scenes); "
           "with COCO use model.pretrained=imagenet or a state-dict path")
    _validate_train(config.train)
    _check(config.eval.backend in BACKENDS,
           f"eval.backend={config.eval.backend!r} must be one of {', '.join(BACKENDS)}")


def _one_of(name: str, value: Any, registry: dict) -> None:
    """`value` must be a key of `registry` (name -> callable); the message lists the keys."""
    allowed = ", ".join(map(str, registry))
    _check(isinstance(value, typing.Hashable) and value in registry, f"{name}={value!r} must be one of {allowed}")


def _validate_model(model: ModelConfig) -> None:
    from detector.backbone import RESNETS
    from detector.head import HEAD_NORMS

    _one_of("model.depth", model.depth, RESNETS)
    _check(model.fpn_channels > 0 and model.head_channels > 0, "model.fpn_channels and model.head_channels must be > 0")
    _one_of("model.head_norm", model.head_norm, HEAD_NORMS)
    _check(model.head_convs >= 0, f"model.head_convs={model.head_convs} must be >= 0")
    # Frozen BN of an untrained ResNet is the identity (weight 1, bias 0, mean 0,
    # var 1): the network would train with no normalisation at all.
    _check(not (model.frozen_bn and model.pretrained is None),
           "model.frozen_bn=true needs pretrained weights (frozen BN of an untrained ResNet is the identity): "
           "set model.frozen_bn=false to train BN from scratch, or model.pretrained=imagenet, synthetic "
           "or a state-dict path")
    if model.prior_prob is not None:
        _check(0.0 < model.prior_prob < 1.0, f"model.prior_prob={model.prior_prob!r} must be in (0, 1) or null")
    p = model.pretrain
    _check(min(p.images, p.steps, p.batch_size, p.crop_size) > 0 and p.lr > 0 and p.context >= 1.0,
           "model.pretrain needs images, steps, batch_size, crop_size and lr > 0, and context >= 1")
    _check(0.0 <= p.label_smoothing < 1.0, f"model.pretrain.label_smoothing={p.label_smoothing} must be in [0, 1)")
    _check(len(model.box_coder_weights) == 4, "model.box_coder_weights must have 4 values")
    anchors = model.anchors
    _check(len(anchors.sizes) == 5 and all(s > 0 for s in anchors.sizes),
           f"model.anchors.sizes={anchors.sizes} must be 5 positive sizes (P3-P7)")
    _check(1 <= anchors.scales_per_octave <= 4,
           f"model.anchors.scales_per_octave={anchors.scales_per_octave} must be in 1..4")
    _check(len(anchors.aspect_ratios) > 0, "model.anchors.aspect_ratios is empty; give at least one ratio, e.g. [1.0]")
    _check(all(r > 0 for r in anchors.aspect_ratios), f"model.anchors.aspect_ratios={anchors.aspect_ratios} must be > 0")
    m = model.matcher
    _check(0.0 < m.bg_iou <= m.fg_iou <= 1.0,
           f"model.matcher needs 0 < bg_iou <= fg_iou <= 1, got bg_iou={m.bg_iou}, fg_iou={m.fg_iou}")
    inf = model.inference
    _in_unit("model.inference.score_thresh", inf.score_thresh)
    _in_unit("model.inference.nms_thresh", inf.nms_thresh)
    _check(inf.topk_per_level > 0 and inf.detections_per_image > 0,
           "model.inference.topk_per_level and detections_per_image must be > 0")


def _validate_loss(loss: LossConfig) -> None:
    from detector.criterion import NORMALIZERS, OHEM_NMS_BOXES
    from detector.losses import BOX_LOSSES, CLASSIFICATION_LOSSES

    _one_of("loss.name", loss.name, CLASSIFICATION_LOSSES)
    _in_unit("loss.alpha", loss.alpha, allow_none=True)
    gamma = f"{loss.gamma:g}" if isinstance(loss.gamma, float) else repr(loss.gamma)  # -1.0 -> -1, as typed
    _check(isinstance(loss.gamma, (int, float)) and loss.gamma >= 0 and math.isfinite(loss.gamma),
           f"loss.gamma={gamma} must be >= 0")
    if loss.name == "fl_star":
        _check(loss.gamma > 0, f"loss.gamma={loss.gamma!r} must be > 0 for fl_star")
    _one_of("loss.box", loss.box, BOX_LOSSES)
    _check(loss.box_beta >= 0, f"loss.box_beta={loss.box_beta} must be >= 0")
    _one_of("loss.normalizer", loss.normalizer, NORMALIZERS)
    _check(loss.ohem.batch_per_image > 0, f"loss.ohem.batch_per_image={loss.ohem.batch_per_image} must be > 0")
    _check(loss.ohem.batch_scale > 0, f"loss.ohem.batch_scale={loss.ohem.batch_scale} must be > 0")
    _in_unit("loss.ohem.nms_thresh", loss.ohem.nms_thresh)
    _in_unit("loss.ohem.max_pos_fraction", loss.ohem.max_pos_fraction, allow_none=True)
    _one_of("loss.ohem.nms_boxes", loss.ohem.nms_boxes, OHEM_NMS_BOXES)


def _validate_data(data: DataConfig) -> None:
    _check(data.kind in ("synthetic", "coco"), f"data.kind={data.kind!r} must be synthetic or coco")
    if data.kind == "coco":
        _check(bool(data.root), "data.root is missing: set data.root=/path/to/coco (with annotations/ and train2017/)")
    _check(isinstance(data.drop_train_images_without_boxes, bool),
           f"data.drop_train_images_without_boxes={data.drop_train_images_without_boxes!r} must be true or false")
    _check(0 < data.min_size <= data.max_size, f"data.min_size={data.min_size} must be > 0 and <= data.max_size={data.max_size}")
    _in_unit("data.flip_prob", data.flip_prob)
    if data.scale_jitter is not None:
        j = data.scale_jitter
        _check(len(j) == 2 and 0 < j[0] <= j[1], f"data.scale_jitter={j} must be [min, max] with 0 < min <= max")
    s = data.synthetic
    _check(s.num_classes >= 1 and 0 < s.min_objects <= s.max_objects, "data.synthetic needs num_classes >= 1 and 0 < min_objects <= max_objects")
    _check(0 < s.min_object_size <= s.max_object_size, "data.synthetic needs 0 < min_object_size <= max_object_size")


def _validate_train(train: TrainConfig) -> None:
    _check(train.batch_size > 0, f"train.batch_size={train.batch_size} must be > 0")
    _check(train.lr > 0, f"train.lr={train.lr} must be > 0")
    _check(train.iterations > 0, f"train.iterations={train.iterations} must be > 0")
    _check(list(train.steps) == sorted(train.steps), f"train.steps={train.steps} must be increasing")
    _check(train.warmup_iters >= 0 and 0 < train.warmup_factor <= 1, "train.warmup_iters must be >= 0 and warmup_factor in (0, 1]")
