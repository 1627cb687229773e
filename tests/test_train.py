"""The schedule, the non-finite loss error, checkpoints, and the smoke profile end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from detector.config import AnchorConfig, LossConfig, ModelConfig, TrainConfig
from detector.model import build_model
from detector.train import NonFiniteLossError, Trainer, lr_factor
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


def test_evaluating_during_training_does_not_change_the_trained_model(tmp_path, smoke_cache):
    """An evaluation used to draw from torch's global RNG and so shift the random flips after it."""
    overrides = ["profile=smoke", f"data.cache_dir={smoke_cache}", "train.iterations=20", "data.flip_prob=0.5"]
    run_trial(compose_trial(overrides), workdir=tmp_path / "plain")
    run_trial(compose_trial([*overrides, "train.eval_every=5"]), workdir=tmp_path / "evaluated")
    a = torch.load(tmp_path / "plain" / "model.pt")
    b = torch.load(tmp_path / "evaluated" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def tiny_trainer(cfg: TrainConfig) -> Trainer:
    """ResNet-18-FPN at 16 channels with the "ema" normaliser, always the same initial weights."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(depth=18, fpn_channels=16, head_convs=1, head_channels=16,
                            anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256]))
    model = build_model(model_cfg, LossConfig(normalizer="ema", normalizer_momentum=0.5), num_classes=2)
    return Trainer(model, cfg, torch.device("cpu"))


def same_batch():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 64, 64, generator=g)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    while True:
        yield [image], [target]


def test_resumed_run_continues_with_the_saved_ema_normaliser(tmp_path):
    cfg = TrainConfig(batch_size=1, lr=0.01, iterations=3, steps=[100], warmup_iters=0, log_every=1,
                      checkpoint_every=2, amp=False, device="cpu")
    full_reports: list[dict] = []
    full = tiny_trainer(cfg)
    full.fit(same_batch(), full_reports.append)

    checkpoint = tmp_path / "checkpoint_last.pt"
    interrupted = tiny_trainer(dataclasses.replace(cfg, iterations=2))
    interrupted.fit(same_batch(), checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)  # plain tensors, numbers and dicts only
    saved = state["criterion"]["ema_normalizer"]
    assert saved == interrupted.model.criterion.state_dict()["ema_normalizer"] != 100.0  # it moved from the start

    resumed_reports: list[dict] = []
    resumed = tiny_trainer(cfg)
    resumed.load(checkpoint)
    assert resumed.iteration == 2 and resumed.model.criterion.state_dict() == {"ema_normalizer": saved}
    resumed.fit(same_batch(), resumed_reports.append)
    # the third step is normalised by the continued average, exactly as in the uninterrupted run
    assert resumed.model.criterion.state_dict() == pytest.approx(full.model.criterion.state_dict())
    assert resumed_reports[-1]["loss"] == pytest.approx(full_reports[-1]["loss"], rel=1e-5)


def test_channels_last_training_keeps_the_format_and_the_maths():
    """train.channels_last: every 4-D weight stays NHWC through SGD steps; the losses are NCHW's up to kernel order."""
    cfg = TrainConfig(batch_size=1, lr=0.01, iterations=3, steps=[100], warmup_iters=0, log_every=1,
                      amp=False, device="cpu")
    reports = {}
    for channels_last in (False, True):
        trainer = tiny_trainer(dataclasses.replace(cfg, channels_last=channels_last))
        reports[channels_last] = []
        trainer.fit(same_batch(), reports[channels_last].append)
        weights = [p for p in trainer.model.parameters() if p.dim() == 4]
        memory = torch.channels_last if channels_last else torch.contiguous_format
        assert weights and all(w.is_contiguous(memory_format=memory) for w in weights)
        if channels_last:  # a 3x3 kernel is contiguous in one format only
            assert not any(w.is_contiguous() for w in weights if w.shape[-1] == 3)
    for nchw, nhwc in zip(reports[False], reports[True]):
        assert nhwc["loss"] == pytest.approx(nchw["loss"], rel=1e-4)
