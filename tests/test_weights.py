"""ImageNet weights: a failed download is one line naming the ways out, and both ways out work."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from detector.backbone import PretrainedWeightsError, build_backbone, build_resnet
from detector.config import ConfigError, ModelConfig, TrialConfig

RESNET18_FILE = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name  # resnet18-f37072fd.pth


def no_network(monkeypatch) -> None:
    """Every download fails as on a machine without network (DNS resolution fails)."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def random_resnet18_state(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_failed_download_is_one_line_naming_the_cause_and_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached there
    no_network(monkeypatch)
    cfg = ModelConfig(depth=18, pretrained="imagenet", frozen_bn=True, fpn_channels=16)
    with pytest.raises(PretrainedWeightsError) as info:
        build_backbone(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.pretrained=imagenet: the ResNet-18 ImageNet weights could not be downloaded")
    assert "Temporary failure in name resolution" in message  # the cause
    assert "model.pretrained=null model.frozen_bn=false" in message  # way out 1: from scratch
    assert "model.pretrained=/path/to/resnet18_state_dict.pth" in message  # way out 2: a local state dict ...
    expected = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    assert f"{RESNET18_FILE} placed at {expected}" in message and "TORCH_HOME" in message  # ... or the cache


def test_torchvision_file_in_torch_home_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    no_network(monkeypatch)
    state = random_resnet18_state(tmp_path / "hub" / "checkpoints" / RESNET18_FILE)
    resnet = build_resnet(18, frozen_bn=True, pretrained="imagenet")
    assert torch.equal(resnet.conv1.weight, state["conv1.weight"])
    assert torch.equal(resnet.layer1[0].bn1.running_var, state["layer1.0.bn1.running_var"])
    assert isinstance(resnet.bn1, FrozenBatchNorm2d)


def test_local_state_dict_path_is_loaded_and_freezes_the_stem(tmp_path):
    state = random_resnet18_state(tmp_path / "r18.pt")
    backbone = build_backbone(ModelConfig(depth=18, pretrained=str(tmp_path / "r18.pt"), frozen_bn=True,
                                          fpn_channels=16))
    body = backbone.body
    assert torch.equal(body.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    assert not body.conv1.weight.requires_grad and not any(p.requires_grad for p in body.layer1.parameters())
    assert body.layer2[0].conv1.weight.requires_grad


def test_missing_local_file_is_one_line():
    with pytest.raises(FileNotFoundError, match=r"^model.pretrained=/nowhere/r50.pt is not a file"):
        build_resnet(50, frozen_bn=True, pretrained="/nowhere/r50.pt")


def test_frozen_bn_without_weights_is_rejected_naming_both_ways_out():
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict({"model": {"pretrained": None, "frozen_bn": True}})
    message = str(info.value)
    assert "\n" not in message and message.startswith("model.frozen_bn=true needs pretrained weights")
    assert "model.frozen_bn=false" in message and "model.pretrained=imagenet" in message
    assert TrialConfig().model.frozen_bn is False  # the default trains BN from scratch
    TrialConfig.from_dict({"model": {"pretrained": "imagenet", "frozen_bn": True}})  # the paper's pairing
