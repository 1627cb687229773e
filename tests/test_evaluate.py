"""coco_metrics against COCOeval run by hand, with both backends."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.evaluate import METRIC_NAMES, coco_metrics


def ground_truth() -> COCO:
    """3 images, 2 categories (ids 1 and 7), boxes of every COCO size range."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    annotations = []
    for index in range(12):
        size = [12, 50, 110][index % 3]
        x, y = rng.uniform(0, 200 - size, 2)
        annotations.append({"id": index + 1, "image_id": 1 + index % 3, "category_id": (1, 7)[index % 2],
                            "bbox": [x, y, size, size * 0.8], "area": size * size * 0.8, "iscrowd": 0})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def noisy_detections(coco: COCO) -> list[dict]:
    """Jittered copies of the ground truth plus false positives, with scores."""
    rng = np.random.default_rng(1)
    detections = []
    for ann in coco.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.08 * w, 4)
        detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                           "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                           "score": float(rng.uniform(0.3, 1))})
        detections.append({"image_id": ann["image_id"], "category_id": 1, "bbox": list(rng.uniform(0, 100, 4) + 1),
                           "score": float(rng.uniform(0, 0.6))})
    return detections


def cocoeval_by_hand(coco: COCO, detections: list[dict]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats[:6])


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_coco_metrics_equal_cocoeval(backend):
    coco = ground_truth()
    detections = noisy_detections(coco)
    expected = cocoeval_by_hand(coco, detections)
    metrics = coco_metrics(coco, detections, backend=backend)
    assert list(metrics) == list(METRIC_NAMES)
    assert [metrics[name] for name in METRIC_NAMES] == pytest.approx(expected, abs=1e-9)
    assert 0.0 < metrics["AP"] < 1.0


def test_perfect_detections_score_one_and_none_score_zero():
    coco = ground_truth()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in coco.dataset["annotations"]]
    assert coco_metrics(coco, perfect)["AP"] == pytest.approx(1.0)
    assert coco_metrics(coco, []) == {name: 0.0 for name in METRIC_NAMES}


def test_image_subset_restricts_evaluation():
    coco = ground_truth()
    only_image_1 = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                    for a in coco.dataset["annotations"] if a["image_id"] == 1]
    assert coco_metrics(coco, only_image_1, image_ids=[1])["AP"] == pytest.approx(1.0)
    assert coco_metrics(coco, only_image_1)["AP"] < 0.6


def test_pictures_take_uint8_as_is_and_round_clamped_floats():
    import torch

    from detector.data.pixels import to_pixels

    as_bytes = torch.tensor([[[0, 255]], [[7, 8]], [[9, 10]]], dtype=torch.uint8)  # (3, 1, 2)
    assert to_pixels(as_bytes).tolist() == [[[0, 7, 9], [255, 8, 10]]]
    floats = torch.tensor([[[-0.5, 0.5]], [[1.5, 0.1]], [[0.002, 1.0]]])  # 0.5*255 = 127.5 -> 128; 0.1*255 = 25.5 -> 26
    pixels = to_pixels(floats)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 2, 3)
    assert pixels.tolist() == [[[0, 255, 1], [128, 26, 255]]]
