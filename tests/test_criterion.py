"""RetinaNet criterion: analytic loss at the prior, empty images, normalisers, OHEM."""

import math

import pytest
import torch

from detector.box_coder import BoxCoder
from detector.config import LossConfig, OhemConfig
from detector.criterion import RetinaNetCriterion
from detector.matcher import Matcher

K = 3  # classes
PI = 0.01  # the paper's prior: every anchor starts as background with confidence ~0.99
PRIOR_LOGIT = -math.log((1 - PI) / PI)
NUM_FAR = 98


def make_anchors() -> torch.Tensor:
    """a0 = the ground-truth box (IoU 1: positive), a1 with IoU 0.45 (ignored), 98 far away (negative)."""
    near = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.5]]
    far = [[100.0 + 10 * i, 100.0, 110.0 + 10 * i, 110.0] for i in range(NUM_FAR)]
    return torch.tensor(near + far)


ANCHORS = make_anchors()
M = ANCHORS.shape[0]
WITH_BOX = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}
NO_BOX = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
TARGETS = [WITH_BOX, NO_BOX]
# image 0: 1 positive, 1 ignored, 98 negatives; image 1: 100 negatives
NUM_POS, NUM_NEG_ANCHORS = 1, NUM_FAR + M


def criterion(**loss) -> RetinaNetCriterion:
    return RetinaNetCriterion(matcher=Matcher(fg_iou=0.5, bg_iou=0.4), box_coder=BoxCoder(),
                              loss_cfg=LossConfig(**loss), num_classes=K)


def prior_outputs(n: int = 2):
    cls_logits = torch.full((n, M, K), PRIOR_LOGIT, requires_grad=True)
    box_deltas = torch.zeros(n, M, 4, requires_grad=True)
    return cls_logits, box_deltas


def element_losses(name: str, alpha: float, gamma: float, beta: float) -> tuple[float, float]:
    """(loss of a positive element, loss of a negative element) at p = PI, from the paper's formulas."""
    if name == "fl_star":
        x_t_pos, x_t_neg = PRIOR_LOGIT, -PRIOR_LOGIT
        star = lambda x_t: math.log1p(math.exp(-(gamma * x_t + beta))) / gamma  # -log sigmoid(.) / gamma
        return alpha * star(x_t_pos), (1 - alpha) * star(x_t_neg)
    gamma = 0.0 if name == "ce" else gamma
    positive = alpha * (1 - PI) ** gamma * -math.log(PI)
    negative = (1 - alpha) * PI ** gamma * -math.log(1 - PI)
    return positive, negative


@pytest.mark.parametrize("name", ["focal", "ce", "fl_star"])
def test_classification_loss_at_the_prior_is_analytic(name):
    cfg = dict(name=name, alpha=0.25, gamma=2.0, beta=1.0)
    out = criterion(**cfg)(*prior_outputs(), ANCHORS, TARGETS)
    pos, neg = element_losses(**cfg)
    # the positive anchor: its class is positive, the other K-1 negative; every negative anchor: K negatives
    expected = (NUM_POS * (pos + (K - 1) * neg) + NUM_NEG_ANCHORS * K * neg) / NUM_POS
    assert out["num_pos"] == NUM_POS
    assert out["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_at_the_prior_is_dominated_by_the_positives():
    # the point of the prior (section 3.3): the ~10^5 easy negatives do not swamp the loss at the start
    pos, neg = element_losses("focal", alpha=0.25, gamma=2.0, beta=0.0)
    assert 200 * K * neg < 0.01 * pos


def test_image_without_boxes():
    cls_logits, box_deltas = prior_outputs(1)
    out = criterion()(cls_logits, box_deltas, ANCHORS, [NO_BOX])
    assert out["num_pos"] == 0
    assert out["loss_box"].item() == 0.0
    assert out["loss_cls"].item() > 0.0
    (out["loss_cls"] + out["loss_box"]).backward()
    assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(box_deltas.grad).all()


def test_box_loss_over_positives_times_weight():
    cls_logits, box_deltas = prior_outputs()
    box_deltas = torch.full_like(box_deltas, 0.5)  # the target deltas of a0 are 0 (anchor == box)
    out = criterion(box="smooth_l1", box_beta=0.11, box_weight=2.0)(cls_logits, box_deltas, ANCHORS, TARGETS)
    assert out["loss_box"].item() == pytest.approx(2.0 * 4 * (0.5 - 0.055) / NUM_POS)
    out = criterion(box="l1")(cls_logits, box_deltas, ANCHORS, TARGETS)
    assert out["loss_box"].item() == pytest.approx(4 * 0.5)


def test_normalizers():
    outputs = prior_outputs()
    summed = criterion(normalizer="num_pos")(*outputs, ANCHORS, TARGETS)["loss_cls"].item() * NUM_POS
    plus_images = criterion(normalizer="num_pos_plus_images")(*outputs, ANCHORS, TARGETS)
    assert plus_images["loss_cls"].item() == pytest.approx(summed / (NUM_POS + 2))
    ema = criterion(normalizer="ema", normalizer_momentum=0.9)
    first = ema(*outputs, ANCHORS, TARGETS)["loss_cls"].item()
    second = ema(*outputs, ANCHORS, TARGETS)["loss_cls"].item()
    assert first == pytest.approx(summed / (0.9 * 100 + 0.1 * NUM_POS))  # starts at 100 (detectron2)
    assert second == pytest.approx(summed / (0.9 * 90.1 + 0.1 * NUM_POS))
    assert ema.state_dict() == {"ema_normalizer": pytest.approx(81.19)}


def test_classification_targets():
    cls_targets, valid = criterion().classification_targets(ANCHORS, TARGETS)
    assert cls_targets.shape == (2, M, K) and valid.shape == (2, M)
    assert cls_targets[0, 0].tolist() == [0.0, 0.0, 1.0]  # a0 is positive for class 2
    assert cls_targets.sum().item() == 1.0
    assert not valid[0, 1] and valid[0, 0] and valid[1].all()  # a1 ignored in image 0 only


def ohem_criterion(batch: int, fraction=None) -> RetinaNetCriterion:
    ohem = OhemConfig(batch_per_image=batch, nms_thresh=1.0, max_pos_fraction=fraction)  # 1.0: NMS removes nothing
    return criterion(name="ohem", alpha=0.25, ohem=ohem)


def test_ohem_with_a_large_batch_is_the_mean_ce_over_valid_anchors():
    pos, neg = element_losses("ce", alpha=0.25, gamma=0.0, beta=0.0)
    positive_anchor, negative_anchor = pos + (K - 1) * neg, K * neg
    out = ohem_criterion(batch=1000)(*prior_outputs(), ANCHORS, TARGETS)
    expected = (positive_anchor + NUM_NEG_ANCHORS * negative_anchor) / (NUM_POS + NUM_NEG_ANCHORS)
    assert out["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_ohem_keeps_the_hardest_anchor_per_image():
    pos, neg = element_losses("ce", alpha=0.25, gamma=0.0, beta=0.0)
    out = ohem_criterion(batch=1)(*prior_outputs(), ANCHORS, TARGETS)
    # image 0: the positive anchor (largest CE); image 1: one negative anchor
    assert out["loss_cls"].item() == pytest.approx((pos + (K - 1) * neg + K * neg) / 2, rel=1e-5)
    capped = ohem_criterion(batch=2, fraction=0.25)(*prior_outputs(), ANCHORS, TARGETS)  # floor(0.5) = 0 positives
    assert capped["loss_cls"].item() == pytest.approx(K * neg, rel=1e-5)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="loss.name"):
        criterion(name="softmax")
    with pytest.raises(ValueError, match="loss.normalizer"):
        criterion(normalizer="images")
