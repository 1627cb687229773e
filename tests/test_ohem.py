"""OHEM as in the paper (Table 1d): NMS over the anchors, a bounded 1:3 minibatch,
both losses on the mined anchors, and the sweep's cells on plain CE."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import detector.losses as losses_module
from detector.box_coder import BoxCoder
from detector.config import LossConfig, OhemConfig, TrialConfig
from detector.criterion import OHEM_NMS_BOXES, RetinaNetCriterion
from detector.losses import ohem_select
from detector.matcher import Matcher

OHEM_SWEEP = Path(__file__).resolve().parents[1] / "conf" / "sweep" / "ohem.yaml"

# a0 and a1 are far apart; a1's predicted box lands exactly on a0; a2 is the ground truth.
ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
TARGETS = [{"boxes": torch.tensor([[100.0, 100.0, 110.0, 110.0]]), "labels": torch.tensor([0])}]
LOGITS = torch.tensor([[[2.0], [1.0], [3.0]]])  # (N=1, M=3, K=1): negatives a0 (hardest), a1; positive a2 (easy)
DELTAS = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]]])  # a1 -> a0's box


def ohem_criterion(nms_boxes: str = "anchors", **ohem) -> RetinaNetCriterion:
    cfg = LossConfig(name="ohem", alpha=None, gamma=0.0, box_beta=0.11,
                     ohem=OhemConfig(**{"batch_per_image": 2, "nms_thresh": 0.5, "nms_boxes": nms_boxes, **ohem}))
    return RetinaNetCriterion(matcher=Matcher(fg_iou=0.5, bg_iou=0.4), box_coder=BoxCoder(), loss_cfg=cfg,
                              num_classes=1)


def test_the_mined_batch_scales_with_the_profile():
    # 128 of the paper's ~134 positives per image, at a profile with 1/8 of them: 16 mined anchors
    from detector.config import mined_per_image
    assert mined_per_image(OhemConfig(batch_per_image=128, batch_scale=0.125)) == 16
    assert mined_per_image(OhemConfig(batch_per_image=512, batch_scale=0.122)) == 62  # 62.46 rounds down
    assert mined_per_image(OhemConfig(batch_per_image=2, batch_scale=0.1)) == 1  # never none
    assert mined_per_image(OhemConfig()) == 128  # the paper's profile mines the paper's batch
    scaled = ohem_criterion(batch_per_image=8, batch_scale=0.25)  # 2 mined, as ohem_criterion() with batch 2
    plain = ohem_criterion()
    args = (LOGITS, DELTAS, ANCHORS, TARGETS)
    assert torch.equal(scaled(*args)["loss_cls"], plain(*args)["loss_cls"])
    with pytest.raises(Exception, match="loss.ohem.batch_scale=0.0 must be > 0"):
        TrialConfig.from_dict({"loss": {"ohem": {"batch_scale": 0.0}}})


def test_the_hand_made_case_is_what_it_claims():
    predicted = BoxCoder().decode(ANCHORS, DELTAS[0])
    assert torch.allclose(predicted[1], ANCHORS[0])  # a1's prediction coincides with a0
    assert set(OHEM_NMS_BOXES) == {"anchors", "predicted"}


def test_nms_over_anchors_and_over_predicted_boxes_choose_differently():
    ce_neg = lambda x: F.softplus(torch.tensor(x)).item()  # noqa: E731 - CE of a negative with logit x
    ce_pos = lambda x: F.softplus(torch.tensor(-x)).item()  # noqa: E731
    box_a2 = 0.5 - 0.11 / 2  # smooth L1 of dx = 0.5 (a2 matches its box exactly, so its target is 0)
    # Over the anchors a0 and a1 do not overlap: the two hardest, a0 and a1, are kept; a2 is left out.
    by_anchors = ohem_criterion("anchors")(LOGITS, DELTAS, ANCHORS, TARGETS)
    assert by_anchors["loss_cls"].item() == pytest.approx((ce_neg(2.0) + ce_neg(1.0)) / 2)
    assert by_anchors["loss_box"].item() == 0.0  # the only positive was not mined: no box loss
    # Over the predictions a1 coincides with a0 and is suppressed; the easy positive a2 fills the batch.
    by_predictions = ohem_criterion("predicted")(LOGITS, DELTAS, ANCHORS, TARGETS)
    assert by_predictions["loss_cls"].item() == pytest.approx((ce_neg(2.0) + ce_pos(3.0)) / 2)
    assert by_predictions["loss_box"].item() == pytest.approx(box_a2 / 2)  # mined positives, per mined anchor


def test_the_default_nms_is_over_the_anchors():
    default = RetinaNetCriterion(matcher=Matcher(), box_coder=BoxCoder(), num_classes=1,
                                 loss_cfg=LossConfig(name="ohem", alpha=None, gamma=0.0,
                                                     ohem=OhemConfig(batch_per_image=2, nms_thresh=0.5)))
    assert default.loss_cfg.ohem.nms_boxes == "anchors"
    with pytest.raises(ValueError, match="loss.ohem.nms_boxes='decoded' must be one of anchors, predicted"):
        ohem_criterion("decoded")


def random_anchors(n: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 600
    return torch.cat([xy, xy + 16 + torch.rand(n, 2, generator=g) * 100], dim=1), g


def test_one_to_three_is_bounded_and_vectorised(monkeypatch):
    m, batch = 20000, 128
    anchors, g = random_anchors(m, 0)
    losses = torch.rand(2, m, generator=g)
    positive = torch.rand(2, m, generator=g) < 0.002  # ~40 positives per image, as on COCO
    candidate = torch.rand(2, m, generator=g) < 0.95
    nms_sizes: list[int] = []
    original = losses_module.batched_nms

    def recording(boxes, scores, idxs, threshold):
        nms_sizes.append(boxes.shape[0])
        return original(boxes, scores, idxs, threshold)

    monkeypatch.setattr(losses_module, "batched_nms", recording)
    chosen = ohem_select(losses, anchors, positive, candidate, batch_size=batch, nms_thresh=0.5,
                         max_pos_fraction=0.25)
    assert chosen.shape == (2, m) and not (chosen & ~candidate).any()
    assert (chosen.sum(1) <= batch).all() and ((chosen & positive).sum(1) <= batch // 4).all()
    # one NMS call for the whole batch, over at most 4B positives + 4B negatives per image
    assert len(nms_sizes) == 1 and nms_sizes[0] <= 2 * 2 * losses_module.OHEM_PRESELECT_FACTOR * batch


def test_one_to_three_fills_the_batch_with_the_hardest_of_each_kind():
    # 12 positives and 100 negatives far apart (no suppression): 2 positives (floor(8 * 0.25)) + 6 negatives
    boxes = torch.tensor([[20.0 * i, 0.0, 20.0 * i + 10.0, 10.0] for i in range(112)])
    losses = torch.arange(112, dtype=torch.float32).flip(0)  # anchor 0 hardest
    positive = torch.zeros(112, dtype=torch.bool)
    positive[torch.arange(0, 112, 9)] = True  # 0, 9, 18, ...
    chosen = ohem_select(losses, boxes, positive, torch.ones(112, dtype=torch.bool), batch_size=8,
                         nms_thresh=0.5, max_pos_fraction=0.25)
    assert torch.nonzero(chosen & positive).flatten().tolist() == [0, 9]
    assert torch.nonzero(chosen & ~positive).flatten().tolist() == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("max_pos_fraction", [None, 0.25])
def test_a_batch_of_images_is_mined_like_each_image_alone(max_pos_fraction):
    anchors, g = random_anchors(3000, 1)
    losses = torch.rand(3, 3000, generator=g)
    positive = torch.rand(3, 3000, generator=g) < 0.01
    candidate = torch.rand(3, 3000, generator=g) < 0.9
    kwargs = dict(batch_size=32, nms_thresh=0.7, max_pos_fraction=max_pos_fraction)
    together = ohem_select(losses, anchors, positive, candidate, **kwargs)
    alone = torch.stack([ohem_select(losses[n], anchors, positive[n], candidate[n], **kwargs) for n in range(3)])
    assert torch.equal(together, alone)
    assert (together.sum(1) == 32).all()


def sweep_cells() -> list[dict]:
    """The ohem sweep's grid product plus its explicit cells, as dotted overrides."""
    sweep = yaml.safe_load(OHEM_SWEEP.read_text())
    grid = sweep["grid"]
    product = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return product + list(sweep["cells"])


def with_overrides(overrides: dict) -> TrialConfig:
    values = TrialConfig().to_dict()
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node[name]
        assert leaf in node, dotted
        node[leaf] = value
    return TrialConfig.from_dict(values)


def test_the_ohem_sweep_trains_ohem_on_plain_ce_and_fl_with_alpha():
    cells = [with_overrides(cell) for cell in sweep_cells()]
    ohem = [c for c in cells if c.loss.name == "ohem"]
    assert len(ohem) == 3 * 2 + 3  # batch x NMS, and the three 1:3 cells
    assert all(c.loss.alpha is None and c.loss.gamma == 0.0 for c in ohem)
    assert sum(c.loss.ohem.max_pos_fraction == 0.25 for c in ohem) == 3
    (focal,) = [c for c in cells if c.loss.name == "focal"]
    assert (focal.loss.alpha, focal.loss.gamma) == (0.25, 2.0)
