"""Synthetic COCO-format detection scenes, written once to a cache directory.

Each image is a textured, noisy background with unannotated clutter (muted
blobs and lines) under `min_objects..max_objects` annotated objects. A class is
a (shape, colour) pair -- red square, green circle, blue triangle, ... -- so
classes stay distinguishable even at a few pixels; beyond 10 classes each
class has its own hue (`wheel_colour`). Object sizes (short side) span
`min_object_size..max_object_size` on a log scale, with a mild elongation, so
COCO's small (< 32^2), medium and large (> 96^2) areas all occur (about 20% /
70% / 8% with the cpu profile's settings); class frequencies follow a
Zipf-like law (class k ~ (k + 1)^-0.8). Few objects among ~3,000 anchors and
20 classes give the tiny positive fraction per class output, and the many
easy background anchors, that the focal loss is about (docs/FIDELITY.md).

The dataset is ordinary COCO JSON plus PNG files, read back by the same
pycocotools loader as real COCO. Category ids are 1, 3, 5, ... (not contiguous)
so the label <-> category_id mapping is exercised.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from detector.config import DataConfig, SyntheticConfig

# Bump when the drawing code changes, so old caches are not reused.
GENERATOR_VERSION = 3
DEFAULT_NUM_TRAIN = 512
DEFAULT_NUM_VAL = 128
VAL_SPLIT = "val"

SHAPES = ("square", "circle", "triangle", "ring", "cross", "ellipse", "diamond", "frame", "bar", "hexagon")
# Saturated, well-separated hues; clutter uses desaturated colours instead.
COLOURS = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 215, 40),
    "magenta": (215, 50, 200), "cyan": (40, 210, 215), "orange": (245, 140, 30), "purple": (130, 60, 200),
    "white": (245, 245, 245), "black": (15, 15, 15),
}
# Long side / short side range per shape; "ellipse" and "bar" are elongated by design.
ELONGATION = {"ellipse": (1.6, 2.0), "bar": (2.5, 3.5)}
DEFAULT_ELONGATION = (1.0, 1.3)
# More than 10 classes: one hue per class on a wheel (see wheel_colour).
WHEEL_STEP = 7  # hue index stride between consecutive classes (made coprime with K)
WHEEL_SATURATION, WHEEL_VALUE = 0.85, 0.9
COLOUR_NOISE = 18  # per-object colour jitter (uniform +-, per channel)
PIXEL_NOISE = 6.0  # std of per-pixel Gaussian noise over the whole image
# Sizes are exp(lo + u**SIZE_TILT * (hi - lo)) for u ~ U(0, 1): 1 would be
# log-uniform; 0.5 moves mass from the tiniest sizes (which no 16-px anchor
# matches at IoU 0.5) toward medium. Crowded scenes shrink what does not fit,
# so most objects still end up COCO-small.
SIZE_TILT = 0.5
# Class k ~ (k + 1)^-0.8: with 6 classes the first is ~4x as common as the last,
# with 20 classes ~11x (the rarest still ~9% of the first's share).
ZIPF_EXPONENT = 0.8
MAX_SCENE_TRIES = 10
MIN_VISIBLE = 0.75  # fraction of each object's pixels that later objects must leave visible


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    """One category: COCO id, name, shape and base colour (RGB)."""

    category_id: int
    name: str
    shape: str
    colour: tuple[int, int, int]


def object_classes(num_classes: int) -> list[ObjectClass]:
    """Classes 0..K-1 as distinct (shape, colour) pairs with ids 1, 3, 5, ...

    Up to 10 classes use the named COLOURS; beyond that every class gets its
    own hue of a K-step colour wheel (`wheel_colour`), so a class is still
    told apart by its colour alone -- as COCO's classes are mostly told apart
    at a glance -- and learning K classes costs little more than learning 10.
    """
    names = list(COLOURS)
    classes = []
    for k in range(num_classes):
        shape = SHAPES[k % len(SHAPES)]
        if num_classes <= len(names):
            colour, rgb = names[k], COLOURS[names[k]]
        else:
            hue, rgb = wheel_colour(k, num_classes)
            colour = f"hue{hue:03d}"
        classes.append(ObjectClass(2 * k + 1, f"{colour}_{shape}", shape, rgb))
    return classes


def wheel_colour(k: int, num_classes: int) -> tuple[int, tuple[int, int, int]]:
    """(hue in degrees, RGB) of class k of K on a saturated colour wheel.

    Hues are 360 / K apart; class k takes hue index (k * WHEEL_STEP) mod K, so
    classes of neighbouring frequency (the Zipf order) are far apart in hue.
    """
    step = next(s for s in range(WHEEL_STEP, num_classes + WHEEL_STEP) if math.gcd(s, num_classes) == 1)
    hue = ((k * step) % num_classes) * 360.0 / num_classes
    r, g, b = colorsys.hsv_to_rgb(hue / 360.0, WHEEL_SATURATION, WHEEL_VALUE)
    return int(round(hue)), (int(r * 255), int(g * 255), int(b * 255))


def class_probabilities(num_classes: int) -> np.ndarray:
    """Zipf-like frequencies (K,): class k is drawn with probability ~ (k + 1) ** -ZIPF_EXPONENT."""
    weights = np.arange(1, num_classes + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    return weights / weights.sum()


# ---------------------------------------------------------------- cache


def split_counts(data_cfg: DataConfig) -> dict[str, int]:
    """Number of images per split: {train_split: n_train, "val": n_val}."""
    n_train = data_cfg.num_train_images if data_cfg.num_train_images is not None else DEFAULT_NUM_TRAIN
    n_val = data_cfg.num_val_images if data_cfg.num_val_images is not None else DEFAULT_NUM_VAL
    return {data_cfg.train_split: int(n_train), VAL_SPLIT: int(n_val)}


def dataset_key(data_cfg: DataConfig) -> str:
    """Short stable hash of everything that changes the generated files."""
    payload = {
        "version": GENERATOR_VERSION,
        "synthetic": dataclasses.asdict(data_cfg.synthetic),
        "splits": split_counts(data_cfg),
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def ensure_synthetic_dataset(data_cfg: DataConfig) -> Path:
    """Return the root of the synthetic dataset for `data_cfg`, writing it if absent.

    Layout: `<root>/annotations/instances_<split>.json` and `<root>/<split>/<id>.png`
    for `data_cfg.train_split` and "val". The dataset is built in a private
    temporary directory and renamed into place, which is atomic: concurrent
    callers each build one, the first rename wins and the others use it.
    """
    cache = Path(os.path.expanduser(data_cfg.cache_dir))
    root = cache / f"synthetic-{dataset_key(data_cfg)}"
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=cache))
    try:
        for split, count in split_counts(data_cfg).items():
            write_split(tmp, split, count, data_cfg.synthetic)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared
        os.rename(tmp, root)
    except OSError:
        if not root.is_dir():  # a real failure, not a lost race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def split_seed(seed: int, split: str) -> np.random.SeedSequence:
    """Independent, stable stream per split (crc32, since hash() is salted)."""
    return np.random.SeedSequence([seed, zlib.crc32(split.encode())])


def write_split(root: Path, split: str, count: int, cfg: SyntheticConfig) -> None:
    """Write `count` images to `root/split/` and their COCO JSON to `root/annotations/`."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(split_seed(cfg.seed, split))
    classes = object_classes(cfg.num_classes)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        pixels, objects = render_scene(rng, cfg, classes)
        file_name = f"{image_id}.png"
        Image.fromarray(pixels).save(root / split / file_name, compress_level=1)  # noisy pixels barely compress
        images.append({"id": image_id, "file_name": file_name, "width": cfg.image_size, "height": cfg.image_size})
        for label, (x, y, w, h) in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": classes[label].category_id,
                "bbox": [x, y, w, h], "area": float(w * h), "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"synthetic scenes, split {split}", "generator_version": GENERATOR_VERSION},
        "images": images, "annotations": annotations,
        "categories": [{"id": c.category_id, "name": c.name, "supercategory": c.shape} for c in classes],
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


# ---------------------------------------------------------------- scenes


def render_scene(
    rng: np.random.Generator, cfg: SyntheticConfig, classes: list[ObjectClass]
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """One image (S, S, 3) uint8 and its objects [(label, (x, y, w, h))].

    Boxes are the exact pixel extent of each drawn shape (occluded parts
    included). Objects are drawn largest first so small ones are not buried
    under big ones.
    """
    for _ in range(MAX_SCENE_TRIES):
        canvas, objects = try_scene(rng, cfg, classes)
        if len(objects) >= cfg.min_objects:
            break  # else too crowded to place min_objects (rare): draw a fresh scene
    return canvas, objects


def try_scene(
    rng: np.random.Generator, cfg: SyntheticConfig, classes: list[ObjectClass]
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """One attempt at `render_scene`; objects without a free spot are left out."""
    size = cfg.image_size
    canvas = draw_clutter(rng, background(rng, size), cfg.clutter)  # (S, S, 3) float
    labels = rng.choice(len(classes), size=rng.integers(cfg.min_objects, cfg.max_objects + 1),
                        p=class_probabilities(len(classes)))
    sized = [(int(k), object_extent(rng, cfg, classes[k].shape)) for k in labels]
    sized.sort(key=lambda item: -item[1][0] * item[1][1])
    layout = Layout(size)
    for label, (w, h) in sized:
        mask = place_object(rng, layout, label, classes[label].shape, w, h, cfg.min_object_size)
        if mask is None:
            continue  # no free spot even at a small size: drop it rather than bury another object
        jitter = rng.integers(-COLOUR_NOISE, COLOUR_NOISE + 1, 3)
        canvas[mask] = np.clip(np.array(classes[label].colour) + jitter, 0, 255)
    canvas += rng.normal(0.0, PIXEL_NOISE, canvas.shape)
    objects = [(k, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
               for k, (x0, y0, x1, y1) in zip(layout.labels, layout.boxes)]
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background (S, S, 3) float: a muted base colour + smooth blotches."""
    base = rng.uniform(70, 150) + rng.uniform(-20, 20, 3)  # greyish, never saturated
    coarse = rng.normal(0.0, 22.0, (6, 6, 3))
    # Bilinear upsampling of a 6x6 grid gives low-frequency texture.
    channels = [np.asarray(Image.fromarray(coarse[..., c].astype(np.float32))
                           .resize((size, size), Image.BILINEAR)) for c in range(3)]
    return base + np.stack(channels, axis=-1).astype(np.float64)


def draw_clutter(rng: np.random.Generator, canvas: np.ndarray, count: int) -> np.ndarray:
    """`canvas` (S, S, 3) float with `count` unannotated distractors (blobs and lines) drawn on it.

    Distractors are greyish (low saturation), so they are hard-ish negatives
    that never look like a class colour.
    """
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = canvas.shape[0]
    for _ in range(count):
        grey = rng.uniform(40, 200) + rng.uniform(-25, 25, 3)
        fill = tuple(int(v) for v in np.clip(grey, 0, 255))
        if rng.random() < 0.5:  # irregular polygon blob
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 10)
            angles = np.sort(rng.uniform(0, 2 * np.pi, 6))
            radii = r * rng.uniform(0.5, 1.2, 6)
            draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii)], fill=fill)
        else:  # thin line
            x0, y0 = rng.uniform(0, size, 2)
            dx, dy = rng.uniform(-30, 30, 2)
            draw.line([(x0, y0), (x0 + dx, y0 + dy)], fill=fill, width=int(rng.integers(1, 3)))
    return np.asarray(image).astype(np.float64)


def object_extent(rng: np.random.Generator, cfg: SyntheticConfig, shape: str) -> tuple[int, int]:
    """Box width and height (pixels) for one object of `shape`.

    The short side is exp(lo + u**SIZE_TILT * (hi - lo)), lo and hi the logs
    of min_object_size and max_object_size (see SIZE_TILT); the long side is
    the short side times a per-shape elongation, capped by the image size.
    """
    lo, hi = np.log(cfg.min_object_size), np.log(cfg.max_object_size)
    short = float(np.exp(lo + rng.uniform() ** SIZE_TILT * (hi - lo)))
    ratio = rng.uniform(*ELONGATION.get(shape, DEFAULT_ELONGATION))
    long = min(short * ratio, cfg.image_size)
    short = min(short, long)
    w, h = (long, short) if rng.random() < 0.5 else (short, long)
    return max(int(round(w)), 2), max(int(round(h)), 2)


class Layout:
    """The objects placed so far in one scene, and which one is visible at each pixel."""

    def __init__(self, size: int) -> None:
        self.owner = np.full((size, size), -1, dtype=np.int64)  # (S, S) visible object index, -1 none
        self.labels: list[int] = []
        self.boxes: list[tuple[int, int, int, int]] = []  # exact extents (x1, y1, x2, y2), x2 exclusive
        self.areas = np.zeros(0, dtype=np.int64)  # (n,) pixels each object had when drawn
        self.visible = np.zeros(0, dtype=np.int64)  # (n,) pixels each object still shows

    def clashes(self, label: int, box: tuple[float, float, float, float]) -> bool:
        """True if `box` touches an object of the same class: same-coloured shapes would merge."""
        return any(k == label and boxes_overlap(box, other, margin=2) for k, other in zip(self.labels, self.boxes))

    def fits(self, mask: np.ndarray) -> bool:
        """True if drawing `mask` (S, S) on top leaves every object >= MIN_VISIBLE visible."""
        if not self.labels:
            return True
        under = self.owner[mask]
        hidden = np.bincount(under[under >= 0], minlength=len(self.labels))
        return bool(np.all(self.visible - hidden >= MIN_VISIBLE * self.areas))

    def add(self, label: int, mask: np.ndarray) -> None:
        """Record an object drawn with `mask` (S, S) on top of the others."""
        ys, xs = np.nonzero(mask)
        under = self.owner[mask]
        self.visible = np.append(self.visible - np.bincount(under[under >= 0], minlength=len(self.labels)), len(ys))
        self.owner[mask] = len(self.labels)
        self.labels.append(label)
        self.boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        self.areas = np.append(self.areas, len(ys))


def boxes_overlap(a: tuple[float, ...], b: tuple[float, ...], margin: float = 0.0) -> bool:
    """True if boxes (x1, y1, x2, y2) intersect once grown by `margin` pixels."""
    return (min(a[2], b[2]) - max(a[0], b[0]) > -margin) and (min(a[3], b[3]) - max(a[1], b[1]) > -margin)


def place_object(
    rng: np.random.Generator, layout: Layout, label: int, shape: str, w: int, h: int, min_side: float,
    tries: int = 32,
) -> np.ndarray | None:
    """Mask (S, S) of `shape` (class `label`) drawn in a free spot, added to `layout`; None if none found.

    A spot is free when the object touches no object of its class and hides at
    most 1 - MIN_VISIBLE of any earlier object: overlap happens, but every
    annotated object stays mostly visible. Every 8 failed tries the object
    shrinks by a quarter (its short side staying >= `min_side`), so crowded
    scenes still get their object count.
    """
    size = layout.owner.shape[0]
    for attempt in range(tries):
        if attempt and attempt % 8 == 0 and min(w, h) * 0.75 >= min_side:
            w, h = int(w * 0.75), int(h * 0.75)
        x0, y0 = rng.uniform(0, size - w + 1), rng.uniform(0, size - h + 1)
        box = (x0, y0, x0 + w, y0 + h)
        if layout.clashes(label, box):
            continue
        mask = shape_mask(size, shape, np.array(box))
        if layout.fits(mask):
            layout.add(label, mask)
            return mask
    return None


def shape_mask(size: int, shape: str, box: np.ndarray) -> np.ndarray:
    """Boolean mask (S, S) of `shape` inscribed in `box` = (x1, y1, x2, y2)."""
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box.tolist()
    x1, y1 = x1 - 1, y1 - 1  # PIL's coordinates are inclusive
    w, h = x1 - x0, y1 - y0
    t = max(2.0, min(w, h) / 4)  # stroke thickness of rings, frames and crosses
    if shape in ("square", "bar"):
        draw.rectangle([x0, y0, x1, y1], fill=255)
    elif shape in ("circle", "ellipse"):
        draw.ellipse([x0, y0, x1, y1], fill=255)
    elif shape == "ring":
        draw.ellipse([x0, y0, x1, y1], fill=255)
        if min(w, h) > 2 * t + 1:  # tiny rings have no room for a hole
            draw.ellipse([x0 + t, y0 + t, x1 - t, y1 - t], fill=0)
    elif shape == "frame":
        draw.rectangle([x0, y0, x1, y1], fill=255)
        if min(w, h) > 2 * t + 1:
            draw.rectangle([x0 + t, y0 + t, x1 - t, y1 - t], fill=0)
    else:
        draw.polygon(polygon(shape, x0, y0, w, h, t), fill=255)
    return np.asarray(layer) > 0


def polygon(shape: str, x0: float, y0: float, w: float, h: float, t: float) -> list[tuple[float, float]]:
    """Vertices of the polygonal shapes (triangle, cross, diamond, hexagon) in the box."""
    cx, cy = x0 + w / 2, y0 + h / 2
    if shape == "triangle":
        return [(cx, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    if shape == "diamond":
        return [(cx, y0), (x0 + w, cy), (cx, y0 + h), (x0, cy)]
    if shape == "hexagon":
        return [(x0 + w / 4, y0), (x0 + 3 * w / 4, y0), (x0 + w, cy), (x0 + 3 * w / 4, y0 + h),
                (x0 + w / 4, y0 + h), (x0, cy)]
    if shape == "cross":
        a = b = max(1.0, min(w, h) / 6)  # half arm width: arms a third of the short side
        return [(cx - a, y0), (cx + a, y0), (cx + a, cy - b), (x0 + w, cy - b), (x0 + w, cy + b), (cx + a, cy + b),
                (cx + a, y0 + h), (cx - a, y0 + h), (cx - a, cy + b), (x0, cy + b), (x0, cy - b), (cx - a, cy - b)]
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def summarize(root: Path, split: str) -> dict[str, Any]:
    """Counts for a quick look: objects per image, COCO area ranges, per-class counts."""
    coco = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    areas = np.array([a["area"] for a in coco["annotations"]])
    per_class = {c["name"]: sum(a["category_id"] == c["id"] for a in coco["annotations"]) for c in coco["categories"]}
    return {
        "images": len(coco["images"]), "objects_per_image": len(areas) / max(len(coco["images"]), 1),
        "small": int((areas < 32 ** 2).sum()), "medium": int(((areas >= 32 ** 2) & (areas <= 96 ** 2)).sum()),
        "large": int((areas > 96 ** 2).sum()), "per_class": per_class,
    }
