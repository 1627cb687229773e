"""Bad values are rejected with one clear line before anything runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from detector.config import ConfigError, TrialConfig
from tests.conftest import compose_trial


@pytest.mark.parametrize("override, message", [
    ("loss.alpha=1.5", "loss.alpha=1.5 must be in [0, 1]"),
    ("loss.gamma=-1", "loss.gamma=-1 must be >= 0"),
    ("model.anchors.aspect_ratios=[]", "model.anchors.aspect_ratios is empty"),
    ("model.anchors.scales_per_octave=5", "scales_per_octave=5 must be in 1..4"),
    ("model.depth=42", "model.depth=42 must be one of 18, 34, 50, 101"),
    ("loss.name=hinge", "loss.name='hinge' must be one of"),
])
def test_bad_values_give_one_line(override, message):
    with pytest.raises(ConfigError) as error:
        compose_trial([override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_coco_without_root_is_rejected():
    with pytest.raises(ConfigError, match="data.root is missing"):
        compose_trial(["data=coco"])


def test_profiles_compose_and_validate():
    paper = compose_trial(["profile=paper", "data=coco", "data.root=/data/coco"])
    assert (paper.model.depth, paper.data.min_size, paper.train.batch_size) == (50, 600, 16)
    assert (paper.train.iterations, paper.train.steps, paper.train.lr) == (90000, [60000, 80000], 0.01)
    cpu = compose_trial([])
    assert cpu.model.depth == 18 and cpu.data.kind == "synthetic"


# ---- the registries are the one list of allowed names ----------------------------------------

REGISTRIES = [
    ("detector.losses", "CLASSIFICATION_LOSSES", {"loss": {"name": "mine"}},
     "loss.name='mine' must be one of focal, ce, fl_star, ohem"),
    ("detector.losses", "BOX_LOSSES", {"loss": {"box": "mine"}}, "loss.box='mine' must be one of smooth_l1, l1"),
    ("detector.criterion", "NORMALIZERS", {"loss": {"normalizer": "mine"}},
     "loss.normalizer='mine' must be one of num_pos, num_pos_plus_images, ema"),
    ("detector.backbone", "RESNETS", {"model": {"depth": 152}}, "model.depth=152 must be one of 18, 34, 50, 101"),
    ("detector.head", "HEAD_NORMS", {"model": {"head_norm": "mine"}},
     "model.head_norm='mine' must be one of none, group"),
    ("detector.evaluate", "BACKENDS", {"eval": {"backend": "mine"}},
     "eval.backend='mine' must be one of faster_coco_eval, pycocotools"),
]


@pytest.mark.parametrize("module, registry, values, message", REGISTRIES)
def test_validation_reads_the_registries(monkeypatch, module, registry, values, message):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert str(error.value) == message
    table = getattr(importlib.import_module(module), registry)
    key = next(iter(next(iter(values.values())).values()))
    monkeypatch.setitem(table, key, next(iter(table.values())))  # registering a name makes it valid
    TrialConfig.from_dict(values)


def test_importing_the_config_needs_no_torch():
    code = "import sys, detector.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_drop_train_images_without_boxes_is_a_boolean():
    assert TrialConfig().data.drop_train_images_without_boxes is True
    with pytest.raises(ConfigError, match="data.drop_train_images_without_boxes='yes' must be true or false"):
        TrialConfig.from_dict({"data": {"drop_train_images_without_boxes": "yes"}})
