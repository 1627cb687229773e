"""The quiet speed figure: median pass and relative spread."""

from __future__ import annotations

import pytest

from detector.speed import Speed


def test_median_and_spread_of_timing_passes():
    speed = Speed((10.0, 12.0, 11.0, 10.5, 30.0))
    assert speed.median == 11.0
    assert speed.spread == pytest.approx((30.0 - 10.0) / 11.0)


def test_timing_inputs_lead_with_the_warm_up_and_keep_one_timed_image():
    import torch

    from detector.config import EvalConfig
    from detector.evaluate import timing_inputs

    dataset = [(torch.full((3, 2, 2), float(i)), {}) for i in range(6)]
    images, warmup = timing_inputs(dataset, EvalConfig(timing_images=2, warmup_images=3))
    assert [int(image[0, 0, 0]) for image in images] == [0, 1, 2, 3, 4] and warmup == 3
    images, warmup = timing_inputs(dataset, EvalConfig(timing_images=2, warmup_images=3), images=10)
    assert len(images) == 6 and warmup == 3  # the quiet phase asks for more: capped by the set
    images, warmup = timing_inputs(dataset[:2], EvalConfig(timing_images=20, warmup_images=3))
    assert len(images) == 2 and warmup == 1  # a tiny set still times one image


def _smoke_model():
    from detector.model import build_model
    from sweeps.compose import trial_config

    cfg = trial_config(["profile=smoke"])
    return build_model(cfg.model, cfg.loss, num_classes=3).eval()


def test_channels_last_timing_leaves_the_model_as_it_was():
    import torch

    from detector.evaluate import time_inference

    model = _smoke_model()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    images = [torch.rand(3, 64, 64) for _ in range(3)]
    assert time_inference(model, images, torch.device("cpu"), warmup=1, channels_last=True) > 0
    for name, p in model.state_dict().items():  # same values, still NCHW: training could go on
        assert torch.equal(p, before[name]) and p.is_contiguous(), name


def test_timing_in_batches_runs_the_stated_forwards():
    """eval.timing_batch=2, 3 warm-up and 4 timed images: ceil(3 / 2) = 2 untimed forwards of the timed
    batches' shape, then 2 timed forwards of 2; batch 1 keeps one forward per image."""
    import torch

    from detector.evaluate import time_inference

    model, sizes = _smoke_model(), []
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    images = [torch.rand(3, 64, 64) for _ in range(7)]
    assert time_inference(model, images, torch.device("cpu"), warmup=3, batch=2) > 0
    assert sizes == [2, 2, 2, 2]
    sizes.clear()
    time_inference(model, images, torch.device("cpu"), warmup=3)
    assert sizes == [1] * 7


def test_timed_inference_builds_no_autograd_graph():
    import torch

    from detector.evaluate import time_inference

    model, modes = _smoke_model(), []
    model.register_forward_pre_hook(lambda module, args: modes.append(torch.is_inference_mode_enabled()))
    time_inference(model, [torch.rand(3, 64, 64) for _ in range(2)], torch.device("cpu"), warmup=1)
    assert modes == [True, True]  # every image, warm-up included, in inference mode


def test_channels_last_gives_the_same_detections():
    import torch

    model = _smoke_model()
    image = torch.rand(3, 64, 64)
    with torch.inference_mode():
        nchw = model.raw_outputs([image])[:2]
        nhwc = model.to(memory_format=torch.channels_last).raw_outputs([image])[:2]
    for a, b in zip(nchw, nhwc):  # the same maths; only the summation order may differ
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
