"""A COCO-format detection dataset read through pycocotools.

Real COCO and the synthetic scenes go through this one class. The annotation
file is checked when the dataset is built (boxes, category and image ids,
image files present), so a broken file fails at once with one line that names
the file and the offending id, not as a shape error deep inside training.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

Target = dict[str, Any]


class DatasetError(ValueError):
    """The dataset on disk is missing or inconsistent; the message is one line for the user."""


def load_coco(ann_file: Path) -> COCO:
    """Parse `ann_file` into a pycocotools COCO object, without its progress prints."""
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        dataset = json.loads(ann_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{ann_file.name}: not a readable JSON file ({err})") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise DatasetError(f"{ann_file.name}: not a COCO file (no 'images' list)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def check_annotation(name: str, ann: dict[str, Any], coco: COCO) -> None:
    """Raise DatasetError unless `ann` has a known image, a known category and a positive box."""
    ann_id, image_id = ann.get("id"), ann.get("image_id")
    where = f"{name}: annotation {ann_id} (image {image_id})"
    if image_id not in coco.imgs:
        raise DatasetError(f"{where} points to an unknown image id {image_id}")
    if ann.get("category_id") not in coco.cats:
        raise DatasetError(f"{where} has an unknown category_id {ann.get('category_id')}; "
                           f"known: {', '.join(map(str, sorted(coco.cats)))}")
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        raise DatasetError(f"{where} has a malformed bbox {bbox!r}; expected [x, y, width, height]")
    if not all(math.isfinite(v) for v in bbox):
        raise DatasetError(f"{where} has a non-finite bbox {bbox}")
    for side, value in (("width", bbox[2]), ("height", bbox[3])):
        if value <= 0:
            raise DatasetError(f"{where} has a box with non-positive {side} {float(value)}")


def check_images(name: str, coco: COCO, image_ids: list[int], image_dir: Path) -> None:
    """Raise DatasetError if an image of `image_ids` lacks a file name or its file."""
    for image_id in image_ids:
        file_name = coco.imgs[image_id].get("file_name")
        if not file_name:
            raise DatasetError(f"{name}: image {image_id} has no file_name")
        if not (image_dir / file_name).is_file():
            raise DatasetError(f"{name}: image {image_id} file {file_name} not found in {image_dir}")


def image_to_tensor(path: Path) -> Tensor:
    """Read an image file as a float tensor (3, H, W) in [0, 1]."""
    with Image.open(path) as img:
        pixels = np.array(img.convert("RGB"))  # (H, W, 3) uint8; np.array copies, so writable
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)


class CocoDetection(Dataset):
    """COCO-format dataset: item i -> (image (3, H, W) float [0, 1], target).

    target: "boxes" (G, 4) float32 (x1, y1, x2, y2) pixels of the returned
    image; "labels" (G,) int64 in 0..K-1 (contiguous, in category-id order;
    `label_to_category_id[label]` maps back); "image_id" int; "scale" float
    (returned size / original size); "orig_size" (h, w) of the file. Crowd
    annotations are left out. Images without annotations are kept as
    negatives (boxes (0, 4)).
    """

    def __init__(
        self,
        *,
        image_dir: str | Path,
        ann_file: str | Path,
        transforms: Optional[Callable[[Tensor, Target], tuple[Tensor, Target]]] = None,
        max_images: Optional[int] = None,
    ) -> None:
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.transforms = transforms
        self.coco = load_coco(self.ann_file)
        name = self.ann_file.name
        if not self.coco.cats:
            raise DatasetError(f"{name}: no categories")
        for ann in self.coco.dataset.get("annotations", []):
            check_annotation(name, ann, self.coco)
        self.image_ids: list[int] = sorted(self.coco.imgs)[:max_images]
        check_images(name, self.coco, self.image_ids, self.image_dir)
        self.label_to_category_id: list[int] = sorted(self.coco.cats)
        self.category_id_to_label = {cat: label for label, cat in enumerate(self.label_to_category_id)}
        self.category_names: list[str] = [self.coco.cats[c].get("name", str(c)) for c in self.label_to_category_id]
        self.num_classes = len(self.label_to_category_id)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        image_id = self.image_ids[index]
        image = image_to_tensor(self.image_dir / self.coco.imgs[image_id]["file_name"])
        height, width = image.shape[-2:]
        boxes, labels = self.targets(image_id, width, height)
        target = {"boxes": boxes, "labels": labels, "image_id": image_id, "scale": 1.0,
                  "orig_size": (int(height), int(width))}
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def targets(self, image_id: int, width: int, height: int) -> tuple[Tensor, Tensor]:
        """Non-crowd boxes (G, 4) float32 xyxy clipped to the image, and labels (G,) int64."""
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        # COCO boxes may poke past the border by a pixel; clip, then drop any left empty.
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        labels = torch.tensor([self.category_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], labels[keep]

    def __repr__(self) -> str:
        return (f"CocoDetection({self.ann_file.name}: {len(self)} images, {self.num_classes} classes, "
                f"transforms={self.transforms!r})")
