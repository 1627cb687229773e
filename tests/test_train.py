"""The schedule, the non-finite loss error, and the smoke profile end to end."""

from __future__ import annotations

import json

import pytest
import torch

from detector.config import TrainConfig
from detector.train import NonFiniteLossError, lr_factor
from detector.trial import run_trial
from tests.conftest import compose_trial


def test_warmup_then_step_decay():
    cfg = TrainConfig(warmup_iters=10, warmup_factor=0.5, steps=[20, 30], lr_decay=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.5)
    assert lr_factor(5, cfg) == pytest.approx(0.75)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(19, cfg) == pytest.approx(1.0)
    assert lr_factor(20, cfg) == pytest.approx(0.1)
    assert lr_factor(30, cfg) == pytest.approx(0.01)


def test_smoke_profile_overfits_its_images(tmp_path, smoke_cache):
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}"])
    reports: list[dict] = []
    result = run_trial(cfg, workdir=tmp_path, report=reports.append)
    assert result["AP50"] >= 0.9, result
    assert result["ms_per_image"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["AP50"] == result["AP50"]
    assert (tmp_path / "model.pt").is_file()
    losses = [r["loss"] for r in reports if "loss" in r]
    assert losses[-1] < 0.2 * losses[0]  # it learned, and the reports came every log_every
    assert len(losses) == cfg.train.iterations // cfg.train.log_every


def test_diverging_loss_raises_a_clear_error(tmp_path, smoke_cache):
    # No prior init and an absurd learning rate: the loss explodes within a few steps.
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}", "model.prior_prob=null",
                         "train.lr=1e6", "train.warmup_iters=0", "train.iterations=30"])
    with pytest.raises(NonFiniteLossError, match="non-finite loss at iteration"):
        run_trial(cfg, workdir=tmp_path)


def test_same_seed_same_result(tmp_path, smoke_cache):
    overrides = ["profile=smoke", f"data.cache_dir={smoke_cache}", "train.iterations=20"]
    first = run_trial(compose_trial(overrides), workdir=tmp_path / "a")
    second = run_trial(compose_trial(overrides), workdir=tmp_path / "b")
    assert first["AP"] == second["AP"]
    a = torch.load(tmp_path / "a" / "model.pt")
    b = torch.load(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
