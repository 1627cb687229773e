"""Datasets from a DataConfig, the batch collate, and the infinite training loader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from detector.config import DataConfig
from detector.data.coco import CocoDetection, DatasetError
from detector.data.synthetic import VAL_SPLIT, ensure_synthetic_dataset
from detector.data.transforms import Compose, RandomHorizontalFlip, Resize

Batch = tuple[list[Tensor], list[dict[str, Any]]]


def train_transforms(data_cfg: DataConfig) -> Compose:
    """Resize (with scale jitter when configured), then a random horizontal flip."""
    jitter = tuple(data_cfg.scale_jitter) if data_cfg.scale_jitter else None
    return Compose([Resize(data_cfg.min_size, data_cfg.max_size, jitter), RandomHorizontalFlip(data_cfg.flip_prob)])


def eval_transforms(data_cfg: DataConfig) -> Compose:
    """Plain resize to the configured short side."""
    return Compose([Resize(data_cfg.min_size, data_cfg.max_size)])


def split_paths(data_cfg: DataConfig) -> tuple[Path, str, str]:
    """(root, train split, val split) for either kind of data.

    Synthetic data has two splits: `train_split` and "val"; a `val_split`
    equal to `train_split` (the smoke profile overfits its training images)
    is kept, any other name means the held-out "val" split.
    """
    if data_cfg.kind == "synthetic":
        root = ensure_synthetic_dataset(data_cfg)
        val = data_cfg.val_split if data_cfg.val_split == data_cfg.train_split else VAL_SPLIT
        return root, data_cfg.train_split, val
    if not data_cfg.root:
        raise DatasetError("data.root is not set: give the COCO root (with annotations/ and train2017/)")
    root = Path(os.path.expanduser(data_cfg.root))
    if not root.is_dir():
        raise DatasetError(f"data.root={data_cfg.root}: directory not found")
    return root, data_cfg.train_split, data_cfg.val_split


def open_split(root: Path, split: str, transforms: Compose, max_images: int | None,
               drop_images_without_boxes: bool = False) -> CocoDetection:
    """CocoDetection over `root/annotations/instances_<split>.json` and images in `root/<split>/`."""
    ann_file = root / "annotations" / f"instances_{split}.json"
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found (split {split!r} under {root})")
    if not (root / split).is_dir():
        raise DatasetError(f"{root / split}: image directory not found (split {split!r})")
    return CocoDetection(image_dir=root / split, ann_file=ann_file, transforms=transforms, max_images=max_images,
                         drop_images_without_boxes=drop_images_without_boxes)


def build_datasets(data_cfg: DataConfig, train: bool = True) -> tuple[CocoDetection, CocoDetection]:
    """(train set, val set) for `data_cfg`.

    The train set is augmented (flip, scale jitter) when `train` is True and
    plainly resized otherwise (e.g. to evaluate on training images); the val
    set is always plainly resized. num_train_images / num_val_images cap the
    image count (None: all). Training images without a usable box are
    dropped when data.drop_train_images_without_boxes (before the cap); the
    val set keeps every image.
    """
    root, train_split, val_split = split_paths(data_cfg)
    train_tf = train_transforms(data_cfg) if train else eval_transforms(data_cfg)
    train_set = open_split(root, train_split, train_tf, data_cfg.num_train_images,
                           drop_images_without_boxes=data_cfg.drop_train_images_without_boxes)
    val_set = open_split(root, val_split, eval_transforms(data_cfg), data_cfg.num_val_images)
    return train_set, val_set


def collate(batch: list[tuple[Tensor, dict[str, Any]]]) -> Batch:
    """[(image (3, H_i, W_i), target)] -> ([images], [targets]); sizes may differ, the model pads."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def build_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                       pin_memory: bool = False) -> Iterator[Batch]:
    """Endless batches, reshuffled every epoch by a generator seeded with `seed`.

    `pin_memory` (for a CUDA device): the batches arrive in page-locked memory,
    so their copy to the device can overlap the previous step's kernels.

    The seeded generator fixes the order of the images and, with workers, each
    worker's torch seed, so the same seed gives the same batches. Incomplete
    last batches are dropped (a constant batch size keeps the schedule's
    meaning) unless the dataset is smaller than one batch.
    """
    if len(dataset) == 0:
        raise DatasetError("the training set has no images")
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate,
                        num_workers=num_workers, drop_last=len(dataset) >= batch_size,
                        persistent_workers=num_workers > 0, pin_memory=pin_memory)
    return _forever(loader)


def _forever(loader: DataLoader) -> Iterator[Batch]:
    """Iterate `loader` epoch after epoch (each pass reshuffles)."""
    while True:
        yield from loader
