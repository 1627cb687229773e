"""The assembled RetinaNet: shapes, anchors, the prior init, losses, inference."""

from __future__ import annotations

import math

import pytest
import torch

from detector.config import AnchorConfig, ConfigError, LossConfig, ModelConfig
from detector.head import prior_bias
from detector.model import build_model, load_trained

K = 3


def tiny_model(**changes) -> torch.nn.Module:
    cfg = ModelConfig(depth=18, frozen_bn=False, fpn_channels=16, head_convs=1, head_channels=16,
                      anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256]), **changes)
    torch.manual_seed(0)
    return build_model(cfg, LossConfig(), num_classes=K)


def test_outputs_cover_every_anchor_of_an_800px_image():
    model = tiny_model().eval()
    with torch.no_grad():
        cls_logits, box_deltas, anchors, level_sizes = model.raw_outputs([torch.rand(3, 800, 800)])
    # Feature maps 100, 50, 25, 13, 7 with 9 anchors each.
    assert level_sizes == [90000, 22500, 5625, 1521, 441]
    assert anchors.shape == (120087, 4)
    assert cls_logits.shape == (1, 120087, K) and box_deltas.shape == (1, 120087, 4)


def test_uint8_images_are_the_float_images_over_255():
    """The loader hands uint8 (a quarter of the bytes to copy); the model's
    conversion on its device gives exactly the batch of x / 255 in float."""
    model = tiny_model().eval()
    pixels = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    as_uint8 = model.batch_images([pixels])
    assert as_uint8.dtype == torch.float32 and as_uint8.shape == (1, 3, 64, 64)
    assert torch.equal(as_uint8, model.batch_images([pixels.float() / 255]))


def test_prior_init_gives_every_anchor_probability_pi():
    model = tiny_model(prior_prob=0.01).eval()
    with torch.no_grad():
        cls_logits, *_ = model.raw_outputs([torch.rand(3, 64, 64)])
    # The final conv has weights N(0, 0.01) on small features, so logits ~ the bias.
    probabilities = torch.sigmoid(cls_logits)
    assert probabilities.mean().item() == pytest.approx(0.01, rel=0.05)
    assert prior_bias(0.01) == pytest.approx(-math.log(99.0))
    assert prior_bias(None) == 0.0


def test_image_without_boxes_has_zero_box_loss_and_positive_class_loss():
    model = tiny_model().train()
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model([torch.rand(3, 64, 64)], targets)
    assert losses["loss_box"].item() == 0.0
    assert losses["loss_cls"].item() > 0.0


def test_inference_returns_at_most_the_detection_limit_in_image_bounds():
    model = tiny_model(prior_prob=0.5).eval()  # p = 0.5 everywhere: many detections survive 0.05
    with torch.no_grad():
        (out,) = model([torch.rand(3, 60, 70)])
    assert 0 < len(out["boxes"]) <= 100
    assert out["boxes"][:, 0::2].min() >= 0 and out["boxes"][:, 0::2].max() <= 70
    assert out["boxes"][:, 1::2].max() <= 60
    assert out["labels"].max() < K
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])  # sorted by score


def test_group_norm_head_option():
    plain, grouped = tiny_model(), tiny_model(head_norm="group")
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.head.modules())
    norms = [m for m in grouped.head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2  # one per conv of each subnet (head_convs=1)
    assert norms[0].num_groups == 16  # min(32, channels)


@pytest.mark.parametrize("pretrained", ["synthetic", "imagenet", "/no/such/weights.pth"])
def test_a_trained_model_loads_without_its_starting_weights(tmp_path, pretrained):
    """Figure 4 and the quiet timing load a trial's model.pt: the config's model.pretrained
    (a keyword the trial resolves, or a file of the trial's machine) is not needed then."""
    saved = tiny_model()
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    cfg = ModelConfig(depth=18, frozen_bn=False, fpn_channels=16, head_convs=1, head_channels=16,
                      anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256]), pretrained=pretrained)
    loaded = load_trained(cfg, LossConfig(), K, tmp_path / "model.pt")
    for name, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_model_of_another_config_is_a_one_line_error(tmp_path):
    torch.save(tiny_model().state_dict(), tmp_path / "model.pt")
    cfg = ModelConfig(depth=18, frozen_bn=False, fpn_channels=32, head_convs=1, head_channels=16,
                      anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256]))
    with pytest.raises(ConfigError, match=r"^model.pt does not fit its config: Error\(s\) in loading") as info:
        load_trained(cfg, LossConfig(), K, tmp_path / "model.pt")
    assert "\n" not in str(info.value)
