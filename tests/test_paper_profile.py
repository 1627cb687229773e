"""The paper's model end to end on a CPU: ResNet-50-FPN, 256-channel 4-conv heads,
frozen BN, 640-px images, two SGD iterations, COCO evaluation and timing.

Frozen BN needs pretrained weights (config validation rejects frozen BN on an
untrained ResNet, which would be the identity). Without a network the test
writes its own stand-in for the ImageNet file: a random ResNet-50 whose BN
statistics are those of one batch, loaded through `model.pretrained=<path>`,
the same path (state dict -> frozen BN -> frozen stem) an offline paper run
takes. Nothing from `sweeps/` is used: the trial is built from a plain dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from detector.config import TrialConfig
from detector.trial import run_trial


def calibrated_resnet50(path: Path) -> Path:
    """A random ResNet-50 state dict with BN running statistics of one random batch."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0  # running stats := this batch's stats
    with torch.no_grad():
        resnet.train()(torch.randn(2, 3, 128, 128))
    torch.save(resnet.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return calibrated_resnet50(tmp_path_factory.mktemp("weights") / "resnet50.pt")


def paper_profile(tmp_path: Path, weights: Path) -> TrialConfig:
    """The paper profile's model and input size; two iterations on three synthetic images."""
    return TrialConfig.from_dict({
        "model": {"depth": 50, "pretrained": str(weights), "frozen_bn": True,
                  "fpn_channels": 256, "head_convs": 4, "head_channels": 256, "head_norm": "none",
                  "anchors": {"sizes": [32, 64, 128, 256, 512]}},
        "data": {"kind": "synthetic", "cache_dir": str(tmp_path / "cache"), "num_train_images": 2,
                 "num_val_images": 1, "min_size": 640, "max_size": 640, "flip_prob": 0.0,
                 "synthetic": {"image_size": 640}},
        "train": {"batch_size": 1, "lr": 0.01, "iterations": 2, "steps": [60000, 80000], "warmup_iters": 500,
                  "log_every": 1, "device": "cpu"},
        "eval": {"timing_images": 1, "warmup_images": 0},
    })


def test_paper_profile_trains_and_evaluates_on_cpu(tmp_path, weights):
    cfg = paper_profile(tmp_path, weights)
    reports: list[dict] = []
    result = run_trial(cfg, workdir=tmp_path / "trial", report=reports.append)
    losses = [r for r in reports if "loss" in r]
    assert [r["iteration"] for r in losses] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in losses)
    assert {"AP", "AP50", "AP75", "APS", "APM", "APL", "ms_per_image"} <= set(result)
    assert result["iterations"] == 2.0 and result["ms_per_image"] > 0
    state = torch.load(tmp_path / "trial" / "model.pt", weights_only=True)
    k = cfg.data.synthetic.num_classes
    assert state["head.cls_subnet.8.weight"].shape == (9 * k, 256, 3, 3)  # 4 x (conv, ReLU), then A * K outputs
    assert json.loads((tmp_path / "trial" / "metrics.json").read_text())["iterations"] == 2.0


def test_paper_profile_builds_the_papers_model(tmp_path, weights):
    from detector.model import build_model

    cfg = paper_profile(tmp_path, weights)
    model = build_model(cfg.model, cfg.loss, num_classes=80)
    norms = [m for m in model.backbone.body.modules() if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)  # frozen BN throughout
    convs = [m for m in model.head.cls_subnet if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [256, 256, 256, 256, 9 * 80]
    assert model.backbone.out_channels == 256
