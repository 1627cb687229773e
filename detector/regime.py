"""The class-imbalance regime of a detector setting, measured.

The focal loss matters when (paper, sections 1 and 3) a dense detector scores
~10^5 anchors per image, nearly all easy background, and the few positives
are swamped by their summed loss. This module measures, for any profile and
its data, the figures that say how close a setting is to that regime:

- anchors per image, and positive / ignored / negative anchors per image, by
  the detector's own `AnchorGenerator`, `Matcher` and IoU;
- the positive fraction per class output: positives / (anchors x K), the
  share of the (anchor, class) sigmoids whose target is 1;
- the share of ground-truth boxes no anchor can match (max IoU < fg_iou);
- the share of the classification loss carried by well-classified negatives
  (y = 0 and p_t > 0.5, i.e. p < 0.5), at initialisation (every logit at the
  prior bias) and for a trained model;
- the paper's Figure 4: the normalised focal loss's CDF over a model's
  sampled logits, and the fraction of the hardest negatives (and positives)
  that carries 80% of it.

Everything works from COCO-format annotations (`regime_from_coco`), so a user
with the real COCO train2017 file gets the paper's figures exactly;
`coco_like_annotations` builds a synthetic stand-in with COCO's published
object statistics for when it is absent. The model, its anchors and matcher
and the images come from the detector's own factories and loader.

Pure functions on tensors and dicts: no Hydra, MLflow or Ray. The commands
that read and write files are sweeps/regime.py and sweeps/loss_cdf.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from detector.anchors import AnchorGenerator, feature_map_sizes
from detector.config import ModelConfig, TrialConfig
from detector.data.coco import CocoDetection, read_coco_json
from detector.data.loader import build_datasets
from detector.data.transforms import resize_scale
from detector.losses import sigmoid_focal_loss
from detector.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from detector.model import SIZE_DIVISIBLE, RetinaNet, build_anchor_generator, build_matcher, load_trained

SMALL_AREA, LARGE_AREA = 32.0 ** 2, 96.0 ** 2  # COCO's area ranges (original-image pixels)
FIGURE4_SHARE = 0.8  # Figure 4 figure: fraction of the hardest samples carrying 80% of the loss
FIGURE4_GAMMAS = (0.0, 0.5, 1.0, 2.0)
# The losses whose shares we report: alpha-balanced CE at the paper's best alpha (Table 1a) and at
# the cpu profile's best (.9, docs/FIDELITY.md E11-E12, E20), and FL (the paper's default).
REFERENCE_LOSSES: tuple[tuple[str, float, float], ...] = (
    ("CE g=0 a=.75", 0.0, 0.75), ("CE g=0 a=.9", 0.0, 0.9), ("FL g=2 a=.25", 2.0, 0.25))


# ---------------------------------------------------------------- anchors and matching


def padded_size(height: int, width: int, divisible: int = SIZE_DIVISIBLE) -> tuple[int, int]:
    """(H, W) of the network input: each side rounded up to a multiple of `divisible`."""
    return -(-int(height) // divisible) * divisible, -(-int(width) // divisible) * divisible


def image_anchors(generator: AnchorGenerator, height: int, width: int) -> Tensor:
    """Anchors (M, 4) xyxy of one `height x width` image, as the model makes them (padded to 32).

    M = A * sum over P3..P7 of H_l * W_l, the feature map sizes of the padded input.
    """
    shapes = feature_map_sizes(*padded_size(height, width), num_levels=generator.num_levels)
    return generator.grid_anchors(shapes, dtype=torch.float32)


def anchors_per_image(generator: AnchorGenerator, height: int, width: int) -> int:
    """M for one image without building the anchors: A * sum_l H_l * W_l."""
    shapes = feature_map_sizes(*padded_size(height, width), num_levels=generator.num_levels)
    return generator.num_anchors_per_location * sum(h * w for h, w in shapes)


@dataclass
class ImageCounts:
    """Matching outcome of one image (counts of anchors and of ground-truth boxes)."""

    anchors: int
    positives: int
    ignored: int
    negatives: int
    boxes: int
    unmatchable: int  # boxes whose best IoU with any anchor is < fg_iou
    positives_per_class: Tensor  # (K,) int64 positive anchors by the class of their box
    unmatched: Tensor  # (G,) bool: this box is unmatchable


def match_image(anchors: Tensor, boxes: Tensor, labels: Tensor, match: Matcher, num_classes: int) -> ImageCounts:
    """Counts for anchors (M, 4), boxes (G, 4) xyxy and labels (G,) in 0..K-1.

    Positive / ignored / negative follow the matcher (low-quality matches
    included if it allows them); a box is unmatchable when max_a IoU(box, a)
    < fg_iou, i.e. it gets no positive anchor by the IoU rule itself.
    """
    iou = box_iou(boxes.to(anchors.dtype), anchors)  # (G, M)
    index, label = match(iou)  # (M,), (M,)
    positive = label == POSITIVE
    per_class = torch.bincount(labels.to(torch.int64)[index[positive]], minlength=num_classes)  # (K,)
    unmatched = iou.max(dim=1).values < match.fg_iou  # (G,)
    return ImageCounts(anchors=int(anchors.shape[0]), positives=int(positive.sum()),
                       ignored=int((label == IGNORE).sum()), negatives=int((label == NEGATIVE).sum()),
                       boxes=int(boxes.shape[0]), unmatchable=int(unmatched.sum()), positives_per_class=per_class,
                       unmatched=unmatched)


# ---------------------------------------------------------------- the regime of a data set


@dataclass
class Regime:
    """The anchor-level regime of a setting, averaged over `images` images.

    positive_fraction = positives / (anchors * K): the share of (anchor, class)
    sigmoid outputs whose target is 1, over all anchors (ignored included, as
    the head scores them too). `positive_fraction_top` / `_median` are the
    same for the most frequent class and the median class alone.
    """

    images: int
    num_classes: int
    anchors_per_image: float
    positives_per_image: float
    ignored_per_image: float
    negatives_per_image: float
    objects_per_image: float
    positive_fraction: float
    positive_fraction_top: float
    positive_fraction_median: float
    unmatchable_share: float
    unmatchable_by_size: dict[str, float] = field(default_factory=dict)  # small / medium / large (orig. area)
    object_size_shares: dict[str, float] = field(default_factory=dict)  # small / medium / large
    positives_per_matched_box: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # row label -> value: what a command adds (loss shares)


# One image as the regime sees it: resized (H, W), boxes (G, 4) xyxy resized, labels (G,),
# and the boxes' COCO areas in original pixels (G,) for the small / medium / large split.
ImageRecord = tuple[int, int, Tensor, Tensor, Tensor]


def size_class(areas: Tensor) -> list[str]:
    """COCO's area range name (small < 32^2 <= medium <= 96^2 < large) of each area (G,)."""
    return ["small" if a < SMALL_AREA else "large" if a > LARGE_AREA else "medium" for a in areas.tolist()]


def measure(records: Iterable[ImageRecord], num_classes: int, model_cfg: ModelConfig) -> Regime:
    """The Regime of images given as ImageRecords, with `model_cfg`'s anchors and matcher."""
    generator, match = build_anchor_generator(model_cfg), build_matcher(model_cfg)
    anchors_cache: dict[tuple[int, int], Tensor] = {}
    totals = {"anchors": 0, "positives": 0, "ignored": 0, "negatives": 0, "boxes": 0, "unmatchable": 0}
    per_class = torch.zeros(num_classes, dtype=torch.int64)
    by_size = {name: [0, 0] for name in ("small", "medium", "large")}  # [boxes, unmatchable]
    images = 0
    for height, width, boxes, labels, areas in records:
        key = padded_size(height, width)
        if key not in anchors_cache:
            anchors_cache[key] = image_anchors(generator, height, width)
        anchors = anchors_cache[key]
        counts = match_image(anchors, boxes, labels, match, num_classes)
        for name in totals:
            totals[name] += getattr(counts, name)
        per_class += counts.positives_per_class
        for name, unmatched in zip(size_class(areas), counts.unmatched.tolist()):
            by_size[name][0] += 1
            by_size[name][1] += int(unmatched)
        images += 1
    if images == 0:
        raise ValueError("no images to measure")
    class_rates = per_class.double() / max(totals["anchors"], 1)  # (K,) positives / anchors per class
    boxes = max(totals["boxes"], 1)
    matched = max(totals["boxes"] - totals["unmatchable"], 1)
    return Regime(
        images=images, num_classes=num_classes,
        anchors_per_image=totals["anchors"] / images, positives_per_image=totals["positives"] / images,
        ignored_per_image=totals["ignored"] / images, negatives_per_image=totals["negatives"] / images,
        objects_per_image=totals["boxes"] / images,
        positive_fraction=totals["positives"] / max(totals["anchors"] * num_classes, 1),
        positive_fraction_top=float(class_rates.max()), positive_fraction_median=float(class_rates.median()),
        unmatchable_share=totals["unmatchable"] / boxes,
        unmatchable_by_size={k: (u / n if n else float("nan")) for k, (n, u) in by_size.items()},
        object_size_shares={k: n / boxes for k, (n, _) in by_size.items()},
        positives_per_matched_box=totals["positives"] / matched,
    )


def coco_records(coco: dict[str, Any], min_size: int, max_size: int, max_images: Optional[int] = None,
                 seed: int = 0) -> tuple[list[ImageRecord], int]:
    """ImageRecords of a COCO-format dict, resized like `Resize(min_size, max_size)`; and K.

    Crowd annotations are left out (as the loader does); boxes are clipped to
    the image. `max_images` draws that many images at random (seeded); None
    takes them all. Labels are contiguous in category-id order.
    """
    cat_ids = sorted(c["id"] for c in coco["categories"])
    label_of = {cid: k for k, cid in enumerate(cat_ids)}
    by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    images = sorted(coco["images"], key=lambda im: im["id"])
    if max_images is not None and max_images < len(images):
        pick = np.random.default_rng(seed).choice(len(images), size=max_images, replace=False)
        images = [images[i] for i in sorted(pick)]
    records = []
    for image in images:
        h, w = int(image["height"]), int(image["width"])
        scale = resize_scale(h, w, min_size, max_size)
        anns = by_image.get(image["id"], [])
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        areas = torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns])
        records.append((max(1, round(h * scale)), max(1, round(w * scale)),
                        boxes[keep] * scale, labels[keep], areas[keep]))
    return records, len(cat_ids)


def regime_from_coco(coco: dict[str, Any], model_cfg: ModelConfig, min_size: int, max_size: int,
                     max_images: Optional[int] = None, seed: int = 0) -> Regime:
    """The Regime of a COCO-format annotation dict at `min_size`/`max_size`.

    Only the annotations are read (no images): with the real
    `instances_train2017.json`, `model_cfg` = the paper profile's anchors and
    600/1000 this gives the paper's own figures.
    """
    records, num_classes = coco_records(coco, min_size, max_size, max_images, seed)
    return measure(records, num_classes, model_cfg)


# ---------------------------------------------------------------- a COCO stand-in

# COCO train2017 statistics (sources in docs/FIDELITY.md):
COCO_OBJECTS_PER_IMAGE = 7.3  # 860,001 instances / 117,266 annotated images
COCO_MEDIAN_OBJECTS = 4  # "median = 4" instances per image (train2014; 99% have 1..33)
COCO_AREA_SHARES = (0.41, 0.34, 0.24)  # small / medium / large (cocodataset.org detection eval)
COCO_TOP_CLASS_SHARE = 0.305  # person: 262,465 of 860,001 instances
COCO_IMAGE_SIZE = (480, 640)  # (short, long): the typical COCO image
COCO_LANDSCAPE = 0.7  # share of landscape images (assumed; portraits are the rest)
COCO_LOG_ASPECT_STD = 0.6  # std of log(h / w) of the boxes (assumed: quartiles ~ 2/3 .. 3/2)


def coco_area_lognormal(shares: Sequence[float] = COCO_AREA_SHARES) -> tuple[float, float]:
    """(mu, sigma) of log sqrt(area) that puts `shares[0]` below 32^2 and `shares[0] + shares[1]` below 96^2."""
    from statistics import NormalDist

    total = sum(shares)
    z_small = NormalDist().inv_cdf(shares[0] / total)
    z_medium = NormalDist().inv_cdf((shares[0] + shares[1]) / total)
    sigma = (math.log(96.0) - math.log(32.0)) / (z_medium - z_small)
    return math.log(32.0) - z_small * sigma, sigma


def coco_class_probabilities(num_classes: int = 80, top_share: float = COCO_TOP_CLASS_SHARE,
                             second_share: float = 0.051, last_share: float = 0.00023) -> np.ndarray:
    """(K,) instance shares: one dominant class (person) then a log-linear decay from car to the rarest."""
    rest = np.geomspace(second_share, last_share, num_classes - 1)
    rest = rest / rest.sum() * (1.0 - top_share)
    return np.concatenate([[top_share], rest])


def objects_per_image_sampler(rng: np.random.Generator, count: int, mean: float = COCO_OBJECTS_PER_IMAGE,
                              dispersion: float = 0.7) -> np.ndarray:
    """(count,) object counts 1 + NegBin(r=dispersion, mean - 1): mean 7.3, half the images <= 4, 99th pct ~ 37."""
    extra_mean = mean - 1.0
    p = dispersion / (dispersion + extra_mean)
    return 1 + rng.negative_binomial(dispersion, p, size=count)


def coco_like_annotations(num_images: int = 2000, seed: int = 0, num_classes: int = 80) -> dict[str, Any]:
    """A COCO-format dict with COCO train2017's object statistics (no pixels).

    Images 640x480 (70% landscape); objects per image 1 + NegBin (mean 7.3);
    sqrt(box area) log-normal fitted to 41% / 34% / 24% small / medium /
    large; log(h / w) ~ N(0, 0.6); centres uniform in the image (boxes
    clipped to it); classes with person at 30.5% and a log-linear tail.
    The area split is COCO's for *mask* areas and is applied here to boxes,
    so the stand-in's boxes are somewhat smaller than COCO's (an upper
    estimate of the unmatchable share).
    """
    rng = np.random.default_rng(seed)
    mu, sigma = coco_area_lognormal()
    probs = coco_class_probabilities(num_classes)
    counts = objects_per_image_sampler(rng, num_images)
    images, annotations = [], []
    for image_id, count in enumerate(counts, start=1):
        short, long = COCO_IMAGE_SIZE
        w, h = (long, short) if rng.random() < COCO_LANDSCAPE else (short, long)
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id}.jpg"})
        side = np.exp(rng.normal(mu, sigma, count))  # sqrt(area)
        aspect = np.exp(np.clip(rng.normal(0.0, COCO_LOG_ASPECT_STD, count), -math.log(6), math.log(6)))
        bw, bh = np.minimum(side / np.sqrt(aspect), w), np.minimum(side * np.sqrt(aspect), h)
        cx, cy = rng.uniform(0, w, count), rng.uniform(0, h, count)
        x0, y0 = np.clip(cx - bw / 2, 0, w - bw), np.clip(cy - bh / 2, 0, h - bh)
        labels = rng.choice(num_classes, size=count, p=probs)
        for k, x, y, bwi, bhi in zip(labels, x0, y0, bw, bh):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(k) + 1,
                                "bbox": [float(x), float(y), float(bwi), float(bhi)],
                                "area": float(bwi * bhi), "iscrowd": 0})
    categories = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


# ---------------------------------------------------------------- loss shares


def element_counts(regime: Regime) -> tuple[float, float]:
    """(y = 1 elements, y = 0 elements) per image of the classification loss.

    The loss sums over non-ignored anchors x K classes: a positive anchor
    gives one y = 1 element and K - 1 y = 0 elements; a negative gives K.
    """
    ones = regime.positives_per_image
    zeros = (regime.positives_per_image + regime.negatives_per_image) * regime.num_classes - ones
    return ones, zeros


def init_loss_shares(regime: Regime, prior_prob: float, gamma: float, alpha: Optional[float]) -> dict[str, float]:
    """Shares of the classification loss at initialisation, every logit at the prior bias.

    At b = -log((1 - pi) / pi) every sigmoid outputs pi, so every y = 0 element
    has p_t = 1 - pi > 0.5 (well classified) and loss l0 = (1 - a)(pi)^g
    (-log(1 - pi)); every y = 1 element has l1 = a (1 - pi)^g (-log pi).
    Returns {"negatives": share of y = 0 elements in the loss,
    "easy_negatives": share of y = 0 elements with p_t > 0.5 (equal here),
    "neg_to_pos": ratio of the two sums}. The head's weight noise
    (sigma 0.01) moves the logits by ~1e-2 at most: ignored.
    """
    pi = float(prior_prob)
    a1, a0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    l0 = a0 * pi ** gamma * -math.log1p(-pi)
    l1 = a1 * (1.0 - pi) ** gamma * -math.log(pi)
    ones, zeros = element_counts(regime)
    neg, pos = zeros * l0, ones * l1
    share = neg / (neg + pos)
    return {"negatives": share, "easy_negatives": share if pi < 0.5 else 0.0,
            "neg_to_pos": neg / pos if pos > 0 else float("inf")}


def loss_shares(x_t_pos: Tensor, x_t_neg: Tensor, gamma: float, alpha: Optional[float],
                neg_weight: float = 1.0) -> dict[str, float]:
    """Shares of the classification loss from signed logits (x_t, so p_t = sigmoid(x_t)).

    x_t_pos (P,) of y = 1 elements; x_t_neg (Q,) of y = 0 elements, possibly a
    uniform subsample: `neg_weight` = (all y = 0 elements) / Q scales their sum
    back. Returns {"negatives", "easy_negatives" (y = 0 with p_t > 0.5),
    "easy_of_negatives" (easy share within the negatives' loss),
    "easy_fraction" (share of y = 0 elements that are easy)}.
    """
    ones = torch.ones((), dtype=torch.float64)
    pos = sigmoid_focal_loss(x_t_pos.double(), ones.expand_as(x_t_pos), alpha=alpha, gamma=gamma).sum()
    neg_alpha = None if alpha is None else 1.0 - alpha  # y = 0 elements are weighted 1 - alpha
    neg_loss = sigmoid_focal_loss(x_t_neg.double(), ones.expand_as(x_t_neg), alpha=neg_alpha, gamma=gamma)
    easy = x_t_neg > 0  # p_t = sigmoid(x_t) > 0.5
    neg, easy_sum = neg_loss.sum() * neg_weight, neg_loss[easy].sum() * neg_weight
    total = float(pos + neg)
    return {"negatives": float(neg) / total, "easy_negatives": float(easy_sum) / total,
            "easy_of_negatives": float(easy_sum / neg) if neg > 0 else float("nan"),
            "easy_fraction": float(easy.double().mean()) if easy.numel() else float("nan")}


def focal_losses(x_t: Tensor, gamma: float) -> Tensor:
    """FL_gamma of each sample: x_t (S,) signed logits -> (S,) float64 -(1 - p_t)^gamma log(p_t).

    No alpha: Figure 4 normalises the loss to sum to 1, so a constant weight cancels.
    """
    return sigmoid_focal_loss(x_t.double(), torch.ones_like(x_t, dtype=torch.float64), alpha=None, gamma=gamma)


def hardest_fraction(x_t: Tensor, gamma: float, share: float = FIGURE4_SHARE) -> float:
    """Fraction of samples, hardest first, whose normalised FL_gamma (no alpha) reaches `share` of the total.

    The paper's Figure 4 read from the other end: its CDF sorts from the
    lowest loss, so this is 1 - (the x where the CDF reaches 1 - share).
    """
    ordered = torch.sort(focal_losses(x_t, gamma), descending=True).values
    cumulative = torch.cumsum(ordered, 0)
    if cumulative.numel() == 0 or not cumulative[-1] > 0:
        return float("nan")
    target = share * cumulative[-1] * (1.0 - 1e-12)  # rounding must not push an exact hit one sample on
    reached = int(torch.searchsorted(cumulative, target).item())
    return (reached + 1) / ordered.numel()


def normalized_loss_cdf(x_t: Tensor, gamma: float, points: int = 1000) -> tuple[list[float], list[float]]:
    """Figure 4's curve: the CDF of FL_gamma over samples x_t (S,), normalised to sum to 1.

    Returns `points` (fraction of samples, cumulative share of the loss)
    pairs, samples sorted from the lowest loss to the highest; both end at 1.
    """
    if x_t.numel() == 0:
        raise ValueError("no samples to compute a loss CDF from")
    loss = focal_losses(x_t, gamma)
    cumulative = torch.cumsum(torch.sort(loss).values, 0)
    total = cumulative[-1]
    if not total > 0:  # every sample perfectly classified: the loss spreads evenly, by convention
        cumulative = torch.arange(1, loss.numel() + 1, dtype=torch.float64)
        total = cumulative[-1]
    index = torch.linspace(0, loss.numel() - 1, min(points, loss.numel())).round().long()
    fraction = (index + 1).double() / loss.numel()
    return fraction.tolist(), (cumulative[index] / total).tolist()


@dataclass
class LogitSamples:
    """Signed logits x_t (p_t = sigmoid(x_t)) of a model's (anchor, class) elements over some images.

    positives (P,) all y = 1 elements (the anchor is assigned to a box of
    that class); negatives (Q,) y = 0 elements of non-ignored anchors,
    uniformly subsampled to at most a cap; total_negatives counts them
    before subsampling.
    """

    positives: Tensor
    negatives: Tensor
    total_negatives: int
    images: int


@torch.no_grad()
def sample_logits(model: RetinaNet, dataset: Dataset, images: int, max_negatives: int = 4_000_000, seed: int = 0,
                  device: torch.device | str = "cpu", batch_size: int = 8) -> LogitSamples:
    """LogitSamples of `model` over the first `images` items of `dataset`, scored on `device`.

    The cap is spread evenly over the images, and the subsample is drawn on
    the CPU by a generator seeded with `seed`: a seed picks the same
    elements on every device.
    """
    model.eval().to(device)
    count = min(images, len(dataset))
    per_image = -(-max_negatives // max(count, 1))
    generator = torch.Generator().manual_seed(seed)
    positives, negatives, total = [], [], 0
    for start in range(0, count, batch_size):
        batch = [dataset[i] for i in range(start, min(start + batch_size, count))]
        logits, _, anchors, _ = model.raw_outputs([image.to(device) for image, _ in batch])
        targets, valid = model.criterion.classification_targets(anchors, [t for _, t in batch])
        logits, targets, valid = logits.float().cpu(), targets.cpu(), valid.cpu()  # (N, M, K), (N, M, K), (N, M)
        positives.append(logits[targets == 1])
        for image_logits, image_targets, image_valid in zip(logits, targets, valid):
            x_t = -image_logits[(image_targets == 0) & image_valid.unsqueeze(-1)]  # x_t = -x where y = 0
            total += x_t.numel()
            negatives.append(x_t[torch.randperm(x_t.numel(), generator=generator)[:per_image]])
    return LogitSamples(torch.cat(positives), torch.cat(negatives), total, count)


def figure4_fractions(samples: LogitSamples,
                      gammas: Sequence[float] = FIGURE4_GAMMAS) -> dict[float, dict[str, float]]:
    """gamma -> {"negatives": f, "positives": f}, f the fraction of them, hardest first, carrying 80% of FL_gamma."""
    return {g: {"negatives": hardest_fraction(samples.negatives, g),
                "positives": hardest_fraction(samples.positives, g)} for g in gammas}


def trained_loss_figures(samples: LogitSamples,
                         losses: Sequence[tuple[str, float, float]] = REFERENCE_LOSSES,
                         gammas: Sequence[float] = FIGURE4_GAMMAS) -> dict[str, Any]:
    """Loss shares under each reference loss and the Figure 4 fractions, from a model's logits."""
    weight = samples.total_negatives / max(samples.negatives.numel(), 1)
    shares = {name: loss_shares(samples.positives, samples.negatives, g, a, weight) for name, g, a in losses}
    return {"shares": shares, "figure4": figure4_fractions(samples, gammas), "elements": {
        "positives": samples.positives.numel(), "negatives": samples.total_negatives, "images": samples.images}}


# ---------------------------------------------------------------- a profile, a trained model, the paper


def profile_regime(cfg: TrialConfig, images: Optional[int] = None, seed: int = 0) -> Regime:
    """The Regime of a TrialConfig's training images (synthetic data is made if absent).

    The images are the training loader's own: without those that have no
    usable box when the config drops them, then the first num_train_images.
    `images`: a random sample of that many of them; None: all of them.
    """
    train_set, _ = build_datasets(cfg.data, train=False)
    coco = read_coco_json(train_set.ann_file)
    kept = set(train_set.image_ids)
    coco["images"] = [image for image in coco["images"] if image["id"] in kept]
    return regime_from_coco(coco, cfg.model, cfg.data.min_size, cfg.data.max_size, images, seed)


def trained_model(cfg: TrialConfig, checkpoint: str | Path) -> tuple[RetinaNet, CocoDetection]:
    """The RetinaNet of `cfg` with the weights in `checkpoint` (a state dict, e.g. run_trial's model.pt),
    and `cfg`'s validation set; weights of another configuration are a one-line ConfigError."""
    _, val_set = build_datasets(cfg.data, train=False)
    return load_trained(cfg.model, cfg.loss, val_set.num_classes, Path(checkpoint).expanduser()), val_set


def checkpoint_figures(cfg: TrialConfig, checkpoint: str | Path, images: int = 64, seed: int = 0) -> dict[str, Any]:
    """trained_loss_figures of the model in `checkpoint` on the first `images` validation images of `cfg.data`."""
    model, val_set = trained_model(cfg, checkpoint)
    return trained_loss_figures(sample_logits(model, val_set, images, seed=seed))


def paper_regime(model_cfg: Optional[ModelConfig] = None, images: int = 500, seed: int = 0,
                 coco: Optional[dict[str, Any]] = None) -> Regime:
    """The paper's setting: COCO train2017 at 600 px (max 1000), anchors 32-512, 9 per location, K = 80.

    With `coco` (the real instances_train2017.json, parsed) the figures are
    COCO's own, on `images` images drawn from it; without it they come from
    `images` images of `coco_like_annotations`.
    """
    model_cfg = model_cfg or ModelConfig()  # the schema's defaults are the paper's anchors and matcher
    if coco is None:
        coco, images = coco_like_annotations(max(images, 1), seed), None
    return regime_from_coco(coco, model_cfg, 600, 1000, images, seed)
