"""The synthetic pretraining (model.pretrained=synthetic): crops, cache, loading, validation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from detector.backbone import build_backbone
from detector.config import ConfigError, ModelConfig, PretrainConfig, SyntheticConfig, TrialConfig
from detector.pretrain import (_square, ensure_pretrained, object_crops, pretrain_resnet, pretrained_path,
                               resolve_weights)
from detector.trial import run_trial
from tests.conftest import compose_trial

# A tiny pretraining: 6 scenes of the smoke profile's kind, 3 steps of 4 crops of 32 px (lr .01: at
# .1, 3 steps of 4 crops blow the stem's weights up, and the frozen BN passes that on).
TINY = {"images": 6, "steps": 3, "batch_size": 4, "crop_size": 32, "lr": 0.01}
SCENES = SyntheticConfig(image_size=64, num_classes=3, min_objects=2, max_objects=4, min_object_size=14,
                         max_object_size=40, clutter=4)


def test_square_crop_is_context_times_the_long_side_around_the_centre():
    # box x 10, y 20, w 8, h 4: centre (14, 22), long side 8, context 1.25 -> side 10
    assert _square((10.0, 20.0, 8.0, 4.0), 1.25) == [9.0, 17.0, 19.0, 27.0]


def test_one_crop_per_object_of_every_scene():
    cfg = PretrainConfig(**TINY)
    crops, labels = object_crops(cfg, SCENES)
    assert crops.dtype == torch.uint8 and crops.shape[1:] == (3, 32, 32)
    assert len(crops) == len(labels) >= 2 * cfg.images  # every scene has 2-4 objects
    assert 0 <= int(labels.min()) and int(labels.max()) < SCENES.num_classes
    again, _ = object_crops(cfg, SCENES)
    assert torch.equal(crops, again)  # the pretraining split is fixed by its seed
    other, _ = object_crops(dataclasses.replace(cfg, seed=2), SCENES)
    assert not torch.equal(crops[: len(other)], other[: len(crops)])


def test_made_once_then_cached_and_keyed_by_its_settings(tmp_path):
    model = ModelConfig(depth=18, pretrained="synthetic", frozen_bn=True, pretrain=PretrainConfig(**TINY))
    data = dataclasses.replace(TrialConfig().data, cache_dir=str(tmp_path), synthetic=SCENES)
    lines: list[str] = []
    path = ensure_pretrained(model, data, log=lines.append)
    assert path.is_file() and path.parent == tmp_path and len(lines) == 2  # "pretraining ..." and its accuracy
    summary = json.loads(path.with_suffix(".json").read_text())
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["crops"] >= 2 * TINY["images"]
    stamp = path.stat().st_mtime_ns
    assert ensure_pretrained(model, data, log=lines.append) == path and path.stat().st_mtime_ns == stamp
    assert len(lines) == 2  # the second call trained nothing
    longer = dataclasses.replace(model, pretrain=dataclasses.replace(model.pretrain, steps=4))
    assert pretrained_path(longer, data) != path
    deeper = dataclasses.replace(model, depth=34)
    assert pretrained_path(deeper, data) != path
    # The detector loads it as it would ImageNet weights: frozen BN, stem and res2 frozen.
    backbone = build_backbone(dataclasses.replace(model, pretrained=str(path), fpn_channels=8))
    body = backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    state = torch.load(path, weights_only=True)
    assert torch.equal(body.conv1.weight, state["conv1.weight"]) and "fc.weight" not in state


def test_resolve_weights_replaces_only_the_synthetic_keyword(tmp_path):
    plain = TrialConfig()
    assert resolve_weights(plain) is plain
    cfg = dataclasses.replace(plain, model=dataclasses.replace(
        plain.model, depth=18, pretrained="synthetic", frozen_bn=True, pretrain=PretrainConfig(**TINY)),
        data=dataclasses.replace(plain.data, cache_dir=str(tmp_path), synthetic=SCENES))
    resolved = resolve_weights(cfg, log=lambda line: None)
    assert resolved.model.pretrained == str(pretrained_path(cfg.model, cfg.data))
    assert cfg.model.pretrained == "synthetic"  # the input is not changed


def test_one_config_pretrains_to_the_same_weights_from_any_global_seed():
    """The initial weights come from model.pretrain.seed, not from torch's global generator."""
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        expected_next = torch.rand(1)  # the global stream's next draw, had nothing run in between
        torch.manual_seed(global_seed)
        state, _ = pretrain_resnet(18, PretrainConfig(**TINY), SCENES)
        runs.append(state)
        assert torch.equal(torch.rand(1), expected_next)  # the global stream is untouched
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other, _ = pretrain_resnet(18, PretrainConfig(**{**TINY, "seed": 2}), SCENES)
    assert not torch.equal(other["conv1.weight"], runs[0]["conv1.weight"])


def test_each_depth_is_pretrained_for_its_own_steps(tmp_path):
    pretrain = PretrainConfig(**{**TINY, "depth_steps": {34: 7}})
    assert pretrain.for_depth(34).steps == 7 and pretrain.for_depth(18).steps == TINY["steps"]
    assert pretrain.for_depth(34).depth_steps == {}
    data = dataclasses.replace(TrialConfig().data, cache_dir=str(tmp_path), synthetic=SCENES)

    def path(depth: int, settings: PretrainConfig):
        return pretrained_path(ModelConfig(depth=depth, pretrained="synthetic", pretrain=settings), data)

    # ResNet-34's weights are those of 7 plain steps; ResNet-18's ignore the 34 entry.
    assert path(34, pretrain) == path(34, PretrainConfig(**{**TINY, "steps": 7, "depth_steps": {}}))
    assert path(18, pretrain) == path(18, PretrainConfig(**{**TINY, "depth_steps": {}}))
    assert path(34, pretrain) != path(34, PretrainConfig(**{**TINY, "depth_steps": {}}))


def test_synthetic_weights_need_synthetic_data():
    with pytest.raises(ConfigError, match=r"^model.pretrained=synthetic needs data.kind=synthetic"):
        TrialConfig.from_dict({"model": {"pretrained": "synthetic", "frozen_bn": True},
                               "data": {"kind": "coco", "root": "/data/coco"}})
    with pytest.raises(ConfigError, match=r"^model.pretrain needs"):
        TrialConfig.from_dict({"model": {"pretrain": {"steps": 0}}})
    with pytest.raises(ConfigError, match=r"^model.pretrain.depth_steps=\{35: 500\}: each key must be a depth"):
        TrialConfig.from_dict({"model": {"pretrain": {"depth_steps": {35: 500}}}})
    # read back from JSON (a run's config.yaml logged by MLflow), the keys are strings
    assert TrialConfig.from_dict({"model": {"pretrain": {"depth_steps": {"34": 7}}}}).model.pretrain.depth_steps == {34: 7}
    with pytest.raises(ConfigError, match=r"^model.pretrain.depth_steps=\{'x': 7\}: its keys must be integers"):
        TrialConfig.from_dict({"model": {"pretrain": {"depth_steps": {"x": 7}}}})


def test_smoke_trial_with_the_synthetic_backbone(tmp_path, smoke_cache):
    # Crops of the smoke images' own size: frozen BN statistics of 32-px crops (1 x 1 maps in
    # res4-res5) let the 64-px images' activations blow up after 3 steps, now and then.
    overrides = [f"model.pretrain.{k}={v}" for k, v in {**TINY, "crop_size": 64}.items()]
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}", "model.pretrained=synthetic",
                         "model.frozen_bn=true", "train.iterations=10", *overrides])
    result = run_trial(cfg, workdir=tmp_path / "trial")
    assert 0.0 <= result["AP"] <= 1.0
    assert pretrained_path(cfg.model, cfg.data).is_file()
