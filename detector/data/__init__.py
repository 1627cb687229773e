"""Data pipeline: synthetic COCO scenes, the COCO dataset, transforms and loaders.

Dataset items are `(image (3, H, W) float [0, 1], target)` with target keys
"boxes" (G, 4) float32 xyxy, "labels" (G,) int64 contiguous, "image_id",
"scale" (resized / original) and "orig_size" (h, w).
"""

from detector.data.coco import CocoDetection, DatasetError
from detector.data.loader import build_datasets, build_train_loader, collate
from detector.data.synthetic import ensure_synthetic_dataset
from detector.data.transforms import Compose, RandomHorizontalFlip, Resize

__all__ = [
    "CocoDetection",
    "Compose",
    "DatasetError",
    "RandomHorizontalFlip",
    "Resize",
    "build_datasets",
    "build_train_loader",
    "collate",
    "ensure_synthetic_dataset",
]
