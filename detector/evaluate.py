"""COCO evaluation (AP, AP50, AP75, APS, APM, APL) and inference speed.

pycocotools' COCOeval is the reference for every number; faster-coco-eval
(same algorithm, C++) is the default backend because evaluation runs after
every trial and often during training. tests/test_evaluate.py checks that both
give the same six numbers.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Callable, Iterable, Optional

import torch
from pycocotools.coco import COCO
from torch import nn

METRIC_NAMES = ("AP", "AP50", "AP75", "APS", "APM", "APL")  # COCOeval.stats[0:6]


def _pycocotools_stats(coco_gt: COCO, detections: list[dict], image_ids: Optional[list[int]]) -> list[float]:
    from pycocotools.cocoeval import COCOeval

    coco_dt = coco_gt.loadRes(detections)
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return list(evaluator.stats)


def _faster_stats(coco_gt: COCO, detections: list[dict], image_ids: Optional[list[int]]) -> list[float]:
    import faster_coco_eval

    quiet = lambda *args, **kwargs: None  # noqa: E731 - it logs every step at INFO otherwise
    gt = faster_coco_eval.COCO(coco_gt.dataset, print_function=quiet)
    evaluator = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(detections), iouType="bbox", print_function=quiet)
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return list(evaluator.stats)


# eval.backend -> (coco_gt, detections, image_ids) -> COCOeval.stats. The
# registry config validation reads; the first is the default.
BACKENDS: dict[str, Callable[[COCO, list[dict], Optional[list[int]]], list[float]]] = {
    "faster_coco_eval": _faster_stats,
    "pycocotools": _pycocotools_stats,
}


def coco_metrics(coco_gt: COCO, detections: list[dict], backend: str = "faster_coco_eval",
                 image_ids: Optional[list[int]] = None) -> dict[str, float]:
    """COCO box metrics of `detections` against `coco_gt`, as fractions in [0, 1].

    detections: COCO result dicts {"image_id", "category_id", "bbox": [x, y, w, h]
    in original-image pixels, "score"}. Returns {"AP", "AP50", "AP75", "APS",
    "APM", "APL"} = COCOeval.stats[0:6] (-1 where no ground truth has that size).
    `image_ids` restricts the evaluation to those images (a subset of a split);
    None evaluates every image of `coco_gt`. With no detections at all every
    metric is 0 (COCO's loadRes rejects an empty list).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {', '.join(BACKENDS)}")
    if not detections:
        return {name: 0.0 for name in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its whole summary
        stats = BACKENDS[backend](coco_gt, detections, image_ids)
    return {name: float(value) for name, value in zip(METRIC_NAMES, stats)}


def to_coco_results(outputs: list[dict], targets: list[dict], label_to_category_id: list[int]) -> list[dict]:
    """Model outputs (resized-image xyxy, labels 0..K-1) -> COCO result dicts (original xywh)."""
    results = []
    for output, target in zip(outputs, targets):
        boxes = output["boxes"].detach().cpu() / target["scale"]
        boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
        for box, score, label in zip(boxes.tolist(), output["scores"].tolist(), output["labels"].tolist()):
            results.append({"image_id": int(target["image_id"]), "category_id": label_to_category_id[label],
                            "bbox": [round(v, 2) for v in box], "score": round(float(score), 5)})
    return results


@torch.inference_mode()
def predict(model: nn.Module, batches: Iterable, label_to_category_id: list[int], device: torch.device) -> list[dict]:
    """COCO result dicts of `model` over `batches` of (images, targets)."""
    model.eval()
    results: list[dict] = []
    for images, targets in batches:
        outputs = model([image.to(device) for image in images])
        results += to_coco_results(outputs, targets, label_to_category_id)
    return results


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_inference(model: nn.Module, images: list[torch.Tensor], device: torch.device, warmup: int) -> float:
    """Milliseconds per image, batch size 1, post-processing included.

    The first `warmup` images are run untimed (allocator, cuDNN autotuning,
    lazy init); CUDA is synchronised around the timed loop so queued kernels
    are counted.
    """
    model.eval()
    images = [image.to(device) for image in images]
    for image in images[:warmup]:
        model([image])
    timed = images[warmup:] or images
    _synchronize(device)
    start = time.perf_counter()
    for image in timed:
        model([image])
    _synchronize(device)
    return 1000.0 * (time.perf_counter() - start) / len(timed)
