"""COCO evaluation (AP, AP50, AP75, APS, APM, APL) and inference speed.

pycocotools' COCOeval is the reference for every number; faster-coco-eval
(same algorithm, C++) is the default backend because evaluation runs after
every trial and often during training. tests/test_evaluate.py checks that both
give the same six numbers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import nn

from detector.data.pixels import to_pixels

if TYPE_CHECKING:
    from PIL import Image

    from detector.sections import EvalConfig

METRIC_NAMES = ("AP", "AP50", "AP75", "APS", "APM", "APL")  # COCOeval.stats[0:6]


def _pycocotools_eval(coco_gt: COCO, detections: list[dict], image_ids: Optional[list[int]]) -> Any:
    from pycocotools.cocoeval import COCOeval

    coco_dt = coco_gt.loadRes(detections)
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _faster_eval(coco_gt: COCO, detections: list[dict], image_ids: Optional[list[int]]) -> Any:
    import faster_coco_eval

    quiet = lambda *args, **kwargs: None  # noqa: E731 - it logs every step at INFO otherwise
    gt = faster_coco_eval.COCO(coco_gt.dataset, print_function=quiet)
    evaluator = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(detections), iouType="bbox", print_function=quiet)
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


# eval.backend -> (coco_gt, detections, image_ids) -> the accumulated, summarised
# COCOeval (both give `.stats` and `.eval["precision"]`). The registry config
# validation reads; the first is the default.
BACKENDS: dict[str, Callable[[COCO, list[dict], Optional[list[int]]], Any]] = {
    "faster_coco_eval": _faster_eval,
    "pycocotools": _pycocotools_eval,
}


@dataclass
class CocoEvaluation:
    """What one COCO evaluation gives beyond the six numbers.

    metrics: {"AP", ..., "APL"} (fractions). per_class: {category name: AP
    at IoU .50:.95} (-1: the category has no ground truth in the images).
    recall: COCO's 101 recall thresholds; pr_curves: {category name:
    interpolated precision at each of them, IoU 0.50} (-1: no ground truth).
    """

    metrics: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)
    recall: list[float] = field(default_factory=list)
    pr_curves: dict[str, list[float]] = field(default_factory=dict)


def coco_evaluation(coco_gt: COCO, detections: list[dict], backend: str = "faster_coco_eval",
                    image_ids: Optional[list[int]] = None) -> CocoEvaluation:
    """`coco_metrics`, plus per-category AP and precision-recall curves (see CocoEvaluation)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {', '.join(BACKENDS)}")
    names = {cat["id"]: cat.get("name", str(cat["id"])) for cat in coco_gt.dataset.get("categories", [])}
    if not detections:
        return CocoEvaluation({name: 0.0 for name in METRIC_NAMES}, {name: 0.0 for name in names.values()})
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its whole summary
        evaluator = BACKENDS[backend](coco_gt, detections, image_ids)
    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    precision = np.asarray(evaluator.eval["precision"])  # (T iou, R recall, K class, A area, M max dets)
    cat_ids = list(evaluator.params.catIds)
    per_class = {names.get(c, str(c)): _mean_precision(precision[:, :, k, 0, -1]) for k, c in enumerate(cat_ids)}
    curves = {names.get(c, str(c)): [float(v) for v in precision[0, :, k, 0, -1]] for k, c in enumerate(cat_ids)}
    return CocoEvaluation(metrics, per_class, [float(r) for r in evaluator.params.recThrs], curves)


def _mean_precision(precision: np.ndarray) -> float:
    """COCO's AP of one category: the mean over IoUs and recalls of the defined entries (-1: none)."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else -1.0


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
    return coco_evaluation(coco_gt, detections, backend, image_ids).metrics


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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a timed span holds its own work (CUDA runs async)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_inputs(dataset: Any, eval_cfg: "EvalConfig", images: Optional[int] = None) -> tuple[list[torch.Tensor], int]:
    """The images ms/image is timed on and how many of them lead as untimed warm-up.

    The first `eval.warmup_images` + `images` (None: `eval.timing_images`)
    images of `dataset` (items are (image [3, H, W], target)); a set smaller
    than that keeps at least one timed image. The one choice of images for the
    in-trial figure and the quiet phase alike.
    """
    count = min(len(dataset), eval_cfg.warmup_images + (images or eval_cfg.timing_images))
    return [dataset[i][0] for i in range(count)], min(eval_cfg.warmup_images, count - 1)


@torch.inference_mode()
def time_inference(model: nn.Module, images: list[torch.Tensor], device: torch.device, warmup: int,
                   channels_last: bool = False, batch: int = 1) -> float:
    """Milliseconds per image, post-processing included, `batch` images per forward.

    The first `warmup` images are run untimed (allocator, cuDNN autotuning,
    lazy init), in forwards of `batch` (at least one); CUDA is synchronised
    around the timed loop so queued kernels are counted. `channels_last`: time
    a copy of the model in NHWC memory format (the model itself is left as it
    is). Batch 1 is the paper's measure; on a GPU a batch-1 forward of a small
    network is bound by kernel launches, not by the arithmetic (docs/BENCHMARKS.md),
    so a stated larger batch shows how the cost grows with size and depth.
    """
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    model.eval()
    images = [image.to(device) for image in images]
    timed = images[warmup:] or images
    if batch == 1:
        warm = [[image] for image in images[:warmup]]
    else:  # forwards of the timed batches' shape build their kernels: ceil(warmup / batch), at least one
        warm = [timed[:batch]] * max(1, -(-warmup // batch))
    for chunk in warm:
        model(chunk)
    synchronize(device)
    start = time.perf_counter()
    for first in range(0, len(timed), batch):
        model(timed[first:first + batch])
    synchronize(device)
    return 1000.0 * (time.perf_counter() - start) / len(timed)


# -- pictures of an evaluation (for a person, not for a metric) --------------------------
GT_COLOUR, PRED_COLOUR = (40, 220, 60), (255, 60, 60)  # green: ground truth, red: predictions
MIN_PICTURE_SIDE = 320  # synthetic scenes are 64-128 px: zoomed so the boxes can be judged


def write_pr_curves(evaluation: CocoEvaluation, path: Path) -> Path:
    """One precision-recall curve per category (IoU 0.50) into a PNG; categories without ground truth skipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # Agg directly: the caller's pyplot backend is never touched
    ax = fig.add_subplot()
    for name, precision in evaluation.pr_curves.items():
        if precision and precision[0] > -1:
            ap = evaluation.per_class.get(name, -1.0)
            ax.plot(evaluation.recall, np.clip(precision, 0, None), label=f"{name} (AP {100 * ap:.1f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall per category (IoU 0.50; AP over IoU .50:.95)")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=110)
    return path


def draw_detections(image: torch.Tensor, truth: dict, output: dict, names: list[str],
                    min_score: float = 0.3) -> "Image.Image":
    """A (3, H, W) image (uint8, or float in [0, 1]) with its ground-truth boxes (green) and the
    predictions scoring at least `min_score` (red, "name score"); boxes xyxy in its pixels."""
    from PIL import Image, ImageDraw

    pixels = to_pixels(image)
    zoom = max(1, -(-MIN_PICTURE_SIDE // min(pixels.shape[:2])))
    picture = Image.fromarray(pixels).resize((pixels.shape[1] * zoom, pixels.shape[0] * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for box in truth["boxes"].tolist():
        draw.rectangle([v * zoom for v in box], outline=GT_COLOUR, width=2)
    keep = output["scores"] >= min_score
    for box, label, score in zip(output["boxes"][keep].tolist(), output["labels"][keep].tolist(),
                                 output["scores"][keep].tolist()):
        x1, y1 = box[0] * zoom, box[1] * zoom
        draw.rectangle([v * zoom for v in box], outline=PRED_COLOUR, width=1)
        draw.text((x1 + 2, y1 + 1), f"{names[label]} {score:.2f}", fill=PRED_COLOUR)
    return picture
