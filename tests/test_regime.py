"""The regime figures: anchor counts by hand, matchability, loss shares, the COCO stand-in, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from detector import regime as R
from detector.config import AnchorConfig, ModelConfig
from detector.matcher import Matcher
from detector.model import build_anchor_generator
from tests.conftest import compose_trial


def one_level_cfg() -> ModelConfig:
    """Anchors 16 px (one scale, ratio 1) on P3..P7 sizes 16, 32, 64, 128, 256."""
    return ModelConfig(anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256], scales_per_octave=1, aspect_ratios=[1.0]))


def test_smoke_profile_anchor_count_by_hand(smoke_cache):
    # 64-px smoke images (already divisible by 32). Every stride-2 step maps n -> ceil(n / 2):
    # 64 -> conv1 32 -> max-pool 16 -> C3 8: P3 8x8 = 64; P4 4x4 = 16; P5 2x2 = 4; P6 1x1 = 1; P7 1x1 = 1.
    # (64 + 16 + 4 + 1 + 1) locations x 9 anchors (3 scales x 3 ratios) = 86 x 9 = 774.
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}"])
    regime = R.profile_regime(cfg)
    assert regime.anchors_per_image == 774
    assert regime.images == cfg.data.num_train_images and regime.num_classes == cfg.data.synthetic.num_classes
    assert regime.positives_per_image + regime.ignored_per_image + regime.negatives_per_image == 774
    k = regime.num_classes
    assert regime.positive_fraction == pytest.approx(regime.positives_per_image / (774 * k))
    assert regime.unmatchable_share == 0.0  # smoke objects are >= 14 px: every one has an anchor


def test_profile_regime_measures_the_training_loaders_images(tmp_path):
    # Images 1..5; 2 has no box and 3 only a crowd box. The loader drops both before its cap of 2
    # training images, so the regime measures images 1 and 4: one box each.
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train").mkdir()
    for i in range(1, 6):
        (tmp_path / "train" / f"{i}.jpg").touch()  # the loader checks that the files exist; the regime reads none
    anns = [{"id": n, "image_id": i, "category_id": 1, "bbox": [8, 8, 16, 16], "area": 256.0, "iscrowd": int(i == 3)}
            for n, i in enumerate((1, 3, 4, 5), start=1)]
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in range(1, 6)],
            "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    cfg = compose_trial(["profile=smoke", "data=coco", f"data.root={tmp_path}", "data.train_split=train",
                         "data.num_train_images=2"])
    regime = R.profile_regime(cfg)
    assert regime.images == 2 and regime.objects_per_image == 1.0


def test_paper_anchor_count_by_hand():
    # A 640x480 COCO image at short side 600 is 800x600, padded to 800x608:
    # P3 76x100 = 7600, P4 38x50 = 1900, P5 19x25 = 475, P6 10x13 = 130, P7 5x7 = 35 -> 10140 x 9 = 91,260.
    gen = build_anchor_generator(ModelConfig())
    assert R.anchors_per_image(gen, 600, 800) == 91_260
    assert R.image_anchors(gen, 600, 800).shape == (91_260, 4)


def test_a_box_equal_to_an_anchor_is_matchable_and_a_tiny_one_is_not():
    gen = build_anchor_generator(one_level_cfg())
    anchors = R.image_anchors(gen, 64, 64)  # P3 8x8 anchors of 16 px centred at multiples of 8
    exact = anchors[9].unsqueeze(0)  # the anchor at (x=8, y=8): [0, 0, 16, 16]
    assert exact.tolist() == [[0.0, 0.0, 16.0, 16.0]]
    tiny = torch.tensor([[30.0, 30.0, 34.0, 34.0]])  # 4x4: IoU with a 16-px anchor <= 16 / 256
    boxes, labels = torch.cat([exact, tiny]), torch.tensor([0, 1])
    counts = R.match_image(anchors, boxes, labels, Matcher(fg_iou=0.5, bg_iou=0.4), num_classes=2)
    assert counts.boxes == 2 and counts.unmatchable == 1
    assert counts.positives == 1 and counts.positives_per_class.tolist() == [1, 0]
    assert counts.positives + counts.ignored + counts.negatives == counts.anchors == anchors.shape[0]


def test_measure_averages_and_splits_by_size():
    cfg = one_level_cfg()
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    records = [(64, 64, box, torch.tensor([0]), torch.tensor([256.0])),
               (64, 64, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0))]
    regime = R.measure(records, num_classes=4, model_cfg=cfg)
    m = 86  # 64-px image, one anchor per location (see the smoke test)
    assert regime.anchors_per_image == m and regime.objects_per_image == 0.5
    assert regime.positives_per_image == 0.5  # only the identical anchor reaches IoU 0.5
    assert regime.positive_fraction == pytest.approx(1 / (2 * m * 4))
    assert regime.unmatchable_by_size["small"] == 0.0 and math.isnan(regime.unmatchable_by_size["large"])


def test_coco_records_resize_and_drop_crowds():
    coco = {"images": [{"id": 7, "width": 200, "height": 100}],
            "categories": [{"id": 3}, {"id": 1}],
            "annotations": [{"image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 40], "area": 800, "iscrowd": 0},
                            {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1}]}
    (record,), k = R.coco_records(coco, min_size=50, max_size=1000)
    height, width, boxes, labels, areas = record
    assert k == 2 and (height, width) == (50, 100)
    assert boxes.tolist() == [[5.0, 5.0, 15.0, 25.0]] and labels.tolist() == [1] and areas.tolist() == [800.0]


def test_init_loss_shares_by_hand():
    # K = 2, per image 1 positive and 9 negative anchors: 1 element with y = 1, (10 * 2 - 1) = 19 with y = 0.
    regime = R.Regime(images=1, num_classes=2, anchors_per_image=10, positives_per_image=1, ignored_per_image=0,
                      negatives_per_image=9, objects_per_image=1, positive_fraction=0.05, positive_fraction_top=0.1,
                      positive_fraction_median=0.05, unmatchable_share=0.0)
    pi = 0.01
    neg, pos = 19 * -math.log(1 - pi), 1 * -math.log(pi)  # plain CE
    shares = R.init_loss_shares(regime, pi, gamma=0.0, alpha=None)
    assert shares["negatives"] == pytest.approx(neg / (neg + pos)) == shares["easy_negatives"]
    neg_fl, pos_fl = 19 * 0.75 * pi ** 2 * -math.log(1 - pi), 0.25 * (1 - pi) ** 2 * -math.log(pi)
    assert R.init_loss_shares(regime, pi, 2.0, 0.25)["negatives"] == pytest.approx(neg_fl / (neg_fl + pos_fl))


def test_loss_shares_and_hardest_fraction():
    x_pos = torch.tensor([-2.0])  # a badly classified positive
    x_neg = torch.tensor([3.0, 3.0, -1.0])  # two easy negatives (p_t > .5), one hard
    shares = R.loss_shares(x_pos, x_neg, gamma=0.0, alpha=None)
    sp = torch.nn.functional.softplus
    easy, hard, pos = 2 * sp(torch.tensor(-3.0)), sp(torch.tensor(1.0)), sp(torch.tensor(2.0))
    total = easy + hard + pos
    assert shares["easy_negatives"] == pytest.approx(float(easy / total), rel=1e-6)
    assert shares["negatives"] == pytest.approx(float((easy + hard) / total), rel=1e-6)
    assert shares["easy_fraction"] == pytest.approx(2 / 3)
    # Equal losses: 80% of the loss needs 80% of the samples; one dominant sample carries it alone.
    assert R.hardest_fraction(torch.zeros(10), gamma=2.0) == pytest.approx(0.8)
    assert R.hardest_fraction(torch.tensor([-20.0] + [20.0] * 9), gamma=0.0) == pytest.approx(0.1)


def test_coco_stand_in_has_coco_statistics():
    coco = R.coco_like_annotations(num_images=400, seed=1)
    assert len(coco["images"]) == 400 and len(coco["categories"]) == 80
    per_image = len(coco["annotations"]) / 400
    assert 6.3 < per_image < 8.3  # COCO train2017: 7.3
    areas = torch.tensor([a["area"] for a in coco["annotations"]])
    small = float((areas < 32 ** 2).double().mean())
    large = float((areas > 96 ** 2).double().mean())
    assert abs(small - 0.41) < 0.05 and abs(large - 0.24) < 0.05
    assert R.coco_class_probabilities()[0] == pytest.approx(0.305)


def test_cli_prints_the_table(smoke_cache, capsys):
    from sweeps.regime import main

    main(["profile=smoke", f"data.cache_dir={smoke_cache}", "+regime.paper=false"])
    out = capsys.readouterr().out
    assert "| anchors / image | 774 |" in out and "positive fraction per class output" in out
    with pytest.raises(SystemExit):
        main(["profile=smoke", f"data.cache_dir={smoke_cache}", "+regime.bogus=1"])


def test_cli_help_names_its_options(capsys):
    from sweeps.regime import main

    main(["--help"])  # returns: exit 0, nothing computed
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m sweeps.regime [key=value ...]")
    assert "+regime.<key>=<value> with key one of images, loss_images, checkpoint" in out


def test_checkpoint_figures_of_an_untrained_model(smoke_cache, tmp_path):
    from detector.model import build_model

    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss, cfg.data.synthetic.num_classes)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    figures = R.checkpoint_figures(cfg, tmp_path / "model.pt", images=2)
    shares = figures["shares"]["CE g=0 a=.75"]
    assert shares["easy_fraction"] == 1.0  # at the prior every negative has p_t ~ .99
    # The untrained model sits at the prior: the measured share matches the closed form.
    expected = R.init_loss_shares(R.profile_regime(cfg), cfg.model.prior_prob, 0.0, 0.75)["easy_negatives"]
    assert shares["easy_negatives"] == pytest.approx(expected, abs=0.05)
    assert set(figures["figure4"]) == set(R.FIGURE4_GAMMAS)
