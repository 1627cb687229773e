"""Start-up at COCO scale: seconds and peak memory to the first training batch.

Writes (once) a COCO 2017 layout the size of the real one: train2017 with
118,287 images and 860,001 annotations (polygons included, ~450 MB like the
real file, with its quirks: ~1% crowd boxes with RLE masks, two zero-size
boxes, ~1k images without annotations, 80 category ids with gaps) and
val2017 with 5,000 images and 36,781 annotations. Only 8 small JPEGs exist
per split; every image record points at one of them, so the loader reads
real files but the disk holds kilobytes.

Then, in a fresh process, it times the real path of a trial: import the
detector, `build_datasets` (parse, check, index both splits), and the first
batch of `build_train_loader`; and reads the peak RSS of that process.

    python benchmarks/coco_startup.py                        # paper sizes, batch 16, no workers
    python benchmarks/coco_startup.py --workers 4            # as the paper profile loads
    python benchmarks/coco_startup.py --profile              # where the seconds go (cProfile)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN = ("train2017", 118_287, 860_001)  # split, images, annotations (the real counts)
VAL = ("val2017", 5_000, 36_781)
NUM_FILES = 8  # JPEGs on disk per split
# COCO's 80 category ids: 1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83
CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def polygon_pool(rng: np.random.Generator, size: int = 2000) -> list[str]:
    """JSON polygon lists of 4-43 points with 2 decimals (~370 bytes on average, as in train2017)."""
    pool = []
    for _ in range(size):
        points = int(rng.integers(4, 44))
        coords = np.round(rng.uniform(0, 640, 2 * points), 2).tolist()
        pool.append(json.dumps([coords]))
    return pool


def annotation_lines(rng: np.random.Generator, num_images: int, num_annotations: int, first_id: int) -> list[str]:
    """`num_annotations` COCO annotation records as JSON text, over image ids 1..num_images."""
    empty = max(1, num_images // 116)  # ~1k of 118k train2017 images have no annotation
    image_ids = np.sort(rng.integers(empty + 1, num_images + 1, num_annotations))  # ids 1..empty have none
    wh = np.round(rng.uniform(1, 300, (num_annotations, 2)), 2)
    xy = np.round(rng.uniform(0, 640 - wh), 2)
    wh[:2, 1] = 0.0  # train2017 has two zero-size boxes (e.g. annotation 918 of image 200365)
    crowd = rng.random(num_annotations) < 0.01
    categories = rng.choice(CATEGORY_IDS, num_annotations)
    pool = polygon_pool(rng)
    choice = rng.integers(0, len(pool), num_annotations)
    lines = []
    for k, (image_id, (x, y), (w, h), c, z) in enumerate(zip(image_ids.tolist(), xy.tolist(), wh.tolist(),
                                                              categories.tolist(), crowd.tolist())):
        mask = '{"counts": [%d, 40, 600, 40, 3000], "size": [480, 640]}' % (int(y) * 640) if z else pool[choice[k]]
        lines.append(f'{{"segmentation": {mask}, "area": {w * h * 0.6:.4f}, "iscrowd": {int(z)}, '
                     f'"image_id": {image_id}, "bbox": [{x}, {y}, {w}, {h}], "category_id": {c}, '
                     f'"id": {first_id + k}}}')
    return lines


def write_split(root: Path, split: str, num_images: int, num_annotations: int, seed: int) -> None:
    """annotations/instances_<split>.json and <split>/ with NUM_FILES small JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    for index in range(NUM_FILES):
        Image.new("RGB", (640, 480), (index * 30, 90, 160)).save(root / split / f"{index:012d}.jpg")
    images = ",".join(
        f'{{"license": 3, "file_name": "{i % NUM_FILES:012d}.jpg", "coco_url": "http://images.cocodataset.org/'
        f'{split}/{i:012d}.jpg", "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45", '
        f'"flickr_url": "http://farm4.staticflickr.com/0/{i}.jpg", "id": {i}}}' for i in range(1, num_images + 1))
    annotations = ",".join(annotation_lines(rng, num_images, num_annotations, first_id=1))
    categories = json.dumps([{"supercategory": "thing", "id": c, "name": f"class{c}"} for c in CATEGORY_IDS])
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    text = (f'{{"info": {{"year": 2017}}, "licenses": [{{"id": 3, "name": "cc"}}], "images": [{images}], '
            f'"annotations": [{annotations}], "categories": {categories}}}')
    (root / "annotations" / f"instances_{split}.json").write_text(text)


def ensure_layout(root: Path, scale: float) -> None:
    """Write the fake COCO root once per scale (a marker file records it)."""
    marker = root / "layout.json"
    wanted = {"scale": scale, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return
    for seed, (split, images, annotations) in enumerate((TRAIN, VAL)):
        print(f"writing {split} ({int(images * scale)} images, {int(annotations * scale)} annotations) ...",
              flush=True)
        write_split(root, split, int(images * scale), int(annotations * scale), seed)
    marker.write_text(json.dumps(wanted))


def measure(root: Path, batch_size: int, workers: int, min_size: int) -> dict:
    """In this process: import, build the datasets, draw the first batch; seconds and peak RSS."""
    start = time.perf_counter()
    from detector.config import DataConfig
    from detector.data.loader import build_datasets, build_train_loader

    imported = time.perf_counter()
    cfg = DataConfig(kind="coco", root=str(root), min_size=min_size, max_size=1000, num_workers=workers)
    train_set, val_set = build_datasets(cfg)
    built = time.perf_counter()
    images, targets = next(build_train_loader(train_set, batch_size, workers, seed=0))
    done = time.perf_counter()
    return {"train_images": len(train_set), "val_images": len(val_set), "batch": len(images),
            "import_s": round(imported - start, 2), "build_datasets_s": round(built - imported, 2),
            "first_batch_s": round(done - built, 2), "total_s": round(done - start, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/coco-startup"), help="where the fake COCO is written")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real image/annotation counts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=600)
    parser.add_argument("--profile", action="store_true", help="cProfile the measured process")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.root, args.batch_size, args.workers, args.min_size)))
        return
    ensure_layout(args.root, args.scale)
    size_mb = (args.root / "annotations" / "instances_train2017.json").stat().st_size / 1e6
    child = [sys.executable, *(["-m", "cProfile", "-s", "cumtime"] if args.profile else []), __file__,
             "--measure-only", "--root", str(args.root), "--batch-size", str(args.batch_size),
             "--workers", str(args.workers), "--min-size", str(args.min_size)]
    result = subprocess.run(child, check=True, capture_output=True, text=True)
    print(result.stdout if args.profile else "", end="")
    figures = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    print(json.dumps({"instances_train2017_mb": round(size_mb), "workers": args.workers, **figures}, indent=2))


if __name__ == "__main__":
    main()
