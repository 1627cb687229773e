"""The configuration of one trial: its sections put together, loaded and validated.

`detector/` knows nothing of Hydra: `sweeps/` composes a Hydra config, turns it
into a plain dict and calls `TrialConfig.from_dict`, which builds the section
dataclasses (detector/sections.py, re-exported here), rejects unknown keys and
validates every value. A bad value raises `ConfigError` with one line naming
the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from detector.sections import (  # noqa: F401 - the sections are read through this module
    SYNTHETIC_WEIGHTS, AnchorConfig, ConfigError, DataConfig, EvalConfig, InferenceConfig, LossConfig,
    MatcherConfig, ModelConfig, OhemConfig, PretrainConfig, SyntheticConfig, TrainConfig, mined_per_image)


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
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _int_keys(hint, value, f"{prefix}{name}")
    return kind(**kwargs)


def _int_keys(hint: Any, value: Any, name: str) -> Any:
    """A `dict[int, ...]` value with its keys as ints: a config read back from JSON (an MLflow
    artifact, a Tune checkpoint) has them as strings ("34"), which would match no depth."""
    if typing.get_origin(hint) is not dict or typing.get_args(hint)[:1] != (int,) or not isinstance(value, dict):
        return value
    try:
        return {int(key): item for key, item in value.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: its keys must be integers") from None


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
    _check(config.eval.timing_batch >= 1, f"eval.timing_batch={config.eval.timing_batch} must be >= 1")


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
    _check(all(depth in RESNETS and steps > 0 for depth, steps in p.depth_steps.items()),
           f"model.pretrain.depth_steps={p.depth_steps!r}: each key must be a depth "
           f"({', '.join(map(str, RESNETS))}) and each value > 0")
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
