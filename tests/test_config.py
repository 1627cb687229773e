"""Bad values are rejected with one clear line before anything runs."""

from __future__ import annotations

import pytest

from detector.config import ConfigError
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
