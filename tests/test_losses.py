"""Loss functions: torchvision equality, identities, stability, hand values, OHEM."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from detector.losses import box_regression_loss, fl_star_loss, ohem_select, sigmoid_focal_loss


def random_case(seed: int = 0, shape=(64, 5)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g, dtype=torch.float64) * 4
    targets = (torch.rand(*shape, generator=g) < 0.3).to(torch.float64)
    return logits, targets


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 0.0), (0.75, 0.5), (0.99, 5.0), (None, 1.0)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_equals_torchvision(alpha, gamma, reduction):
    logits, targets = random_case()
    ours = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=-1 if alpha is None else alpha,
                                                gamma=gamma, reduction=reduction)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.999])
def test_gamma_zero_is_alpha_balanced_bce_in_value_and_gradient(alpha):
    logits, targets = random_case(1)
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    focal = sigmoid_focal_loss(x1, targets, alpha=alpha, gamma=0.0, reduction="sum")
    bce = F.binary_cross_entropy_with_logits(x2, targets, weight=weight, reduction="sum")
    focal.backward()
    bce.backward()
    torch.testing.assert_close(focal, bce)
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("gamma", [0.0, 0.2, 0.5, 2.0, 5.0])
def test_finite_value_and_gradient_at_saturated_logits(gamma):
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=gamma, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # the two confidently wrong elements cost 100 each (times alpha_t, modulating factor ~1)
    assert loss.item() == pytest.approx(0.25 * 100 + 0.75 * 100)


def test_hand_computed_value():
    loss = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(0.25 * 0.5 ** 2 * math.log(2))  # p_t = 0.5


def test_easy_examples_are_down_weighted():
    # p_t = 0.9: CE = -log 0.9; FL with gamma 2 is 100 times smaller (paper, section 3.2)
    x = torch.tensor([math.log(9.0)])
    ce = sigmoid_focal_loss(x, torch.ones(1), alpha=None, gamma=0.0)
    fl = sigmoid_focal_loss(x, torch.ones(1), alpha=None, gamma=2.0)
    assert (ce / fl).item() == pytest.approx(100.0)


@pytest.mark.parametrize("gamma, beta", [(2.0, 1.0), (4.0, 0.0)])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_fl_star_formula(gamma, beta, alpha):
    logits, targets = random_case(2)
    x_t = torch.where(targets == 1, logits, -logits)
    expected = -torch.log(torch.sigmoid(gamma * x_t + beta)) / gamma
    if alpha is not None:
        expected = expected * torch.where(targets == 1, alpha, 1 - alpha)
    torch.testing.assert_close(fl_star_loss(logits, targets, gamma, beta, alpha=alpha), expected)


def test_fl_star_is_finite_at_saturated_logits():
    logits = torch.tensor([100.0, -100.0], requires_grad=True)
    loss = fl_star_loss(logits, torch.tensor([0.0, 1.0]), gamma=4.0, beta=0.0, reduction="sum")
    loss.backward()
    assert loss.item() == pytest.approx(200.0)
    assert torch.isfinite(logits.grad).all()


def test_box_regression_loss():
    pred = torch.tensor([[0.5, -0.05, 0.0, 2.0]])
    target = torch.zeros(1, 4)
    # smooth L1 (beta 0.11): |d| - beta/2 where |d| >= beta, else 0.5 d^2 / beta
    expected = (0.5 - 0.055) + 0.5 * 0.05 ** 2 / 0.11 + 0.0 + (2.0 - 0.055)
    assert box_regression_loss(pred, target).item() == pytest.approx(expected)
    assert box_regression_loss(pred, target, kind="l1").item() == pytest.approx(2.55)
    assert box_regression_loss(pred, target, beta=0.0).item() == pytest.approx(2.55)
    assert box_regression_loss(pred, target, reduction="none").shape == (1, 4)


def box(x: float, y: float, size: float = 10.0, height: float | None = None) -> list[float]:
    return [x, y, x + size, y + (size if height is None else height)]


def test_ohem_nms_removes_an_overlapping_lower_loss_box():
    boxes = torch.tensor([box(0, 0), box(0, 0, 10, 9), box(20, 20), box(40, 40), box(60, 60)])
    losses = torch.tensor([5.0, 4.0, 3.0, 1.0, 10.0])
    candidate = torch.tensor([True, True, True, True, False])  # the loss-10 anchor is ignored
    chosen = ohem_select(losses, boxes, torch.zeros(5, dtype=torch.bool), candidate, batch_size=2, nms_thresh=0.7)
    # box 1 overlaps box 0 with IoU 0.9 and has lower loss: suppressed; the two hardest left are 0 and 2
    assert chosen.tolist() == [True, False, True, False, False]


def test_ohem_caps_positives_at_one_in_four():
    boxes = torch.tensor([box(20 * i, 0) for i in range(8)])  # no overlaps
    losses = torch.tensor([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    positive = torch.tensor([True, True, True, False, False, False, False, False])
    everything = torch.ones(8, dtype=torch.bool)
    capped = ohem_select(losses, boxes, positive, everything, batch_size=4, nms_thresh=0.5, max_pos_fraction=0.25)
    assert capped.tolist() == [True, False, False, True, True, True, False, False]  # 1 positive : 3 negatives
    free = ohem_select(losses, boxes, positive, everything, batch_size=4, nms_thresh=0.5)
    assert free.tolist() == [True, True, True, True, False, False, False, False]


def reference_ohem(losses, boxes, positive, candidate, batch_size, nms_thresh, max_pos_fraction):
    """Full NMS over every candidate, then the selection rule."""
    index = torch.nonzero(candidate).squeeze(1)
    survivors = index[torchvision.ops.nms(boxes[index], losses[index], nms_thresh)]
    if max_pos_fraction is None:
        chosen = survivors[:batch_size]
    else:
        pos, neg = survivors[positive[survivors]], survivors[~positive[survivors]]
        pos = pos[: math.floor(batch_size * max_pos_fraction)]
        chosen = torch.cat([pos, neg[: batch_size - pos.numel()]])
    mask = torch.zeros_like(candidate)
    mask[chosen] = True
    return mask


@pytest.mark.parametrize("max_pos_fraction", [None, 0.25])
def test_ohem_equals_full_nms_when_every_candidate_is_preselected(max_pos_fraction):
    # The default pre-selects a bounded number of candidates (tests/test_ohem.py);
    # with all of them the selection rule must be exactly the full NMS's.
    g = torch.Generator().manual_seed(3)
    n = 600  # many heavily overlapping boxes
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 20], dim=1)
    losses = torch.rand(n, generator=g)
    positive = torch.rand(n, generator=g) < 0.05
    candidate = torch.rand(n, generator=g) < 0.9
    for batch_size in (4, 16):
        ours = ohem_select(losses, boxes, positive, candidate, batch_size=batch_size, nms_thresh=0.5,
                           max_pos_fraction=max_pos_fraction, preselect_factor=n)
        expected = reference_ohem(losses, boxes, positive, candidate, batch_size, 0.5, max_pos_fraction)
        assert torch.equal(ours, expected)


def test_ohem_without_candidates_selects_nothing():
    chosen = ohem_select(torch.ones(3), torch.tensor([box(0, 0)] * 3), torch.zeros(3, dtype=torch.bool),
                         torch.zeros(3, dtype=torch.bool), batch_size=2, nms_thresh=0.7)
    assert not chosen.any()
