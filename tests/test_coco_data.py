"""CocoDetection validation and targets, transforms, loaders -- on tiny hand-written COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.config import DataConfig
from detector.data.coco import CocoDetection, DatasetError
from detector.data.loader import build_datasets, build_train_loader, collate
from detector.data.transforms import Compose, RandomHorizontalFlip, Resize


def write_coco(tmp_path: Path, annotations: list[dict], images: int = 2, skip_file: int | None = None) -> Path:
    """Write 40x60 (h x w) images 1..`images` and instances_val.json; return the JSON path."""
    (tmp_path / "val").mkdir(exist_ok=True)
    for i in range(1, images + 1):
        if i != skip_file:
            Image.fromarray(np.full((40, 60, 3), 10 * i, dtype=np.uint8)).save(tmp_path / "val" / f"{i}.png")
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 60, "height": 40} for i in range(1, images + 1)],
        "annotations": annotations,
        "categories": [{"id": 2, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    (tmp_path / "annotations").mkdir(exist_ok=True)
    path = tmp_path / "annotations" / "instances_val.json"
    path.write_text(json.dumps(coco))
    return path


def ann(ann_id: int, image_id: int, bbox: list[float], category_id: int = 2, iscrowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": iscrowd}


def dataset(tmp_path: Path, annotations: list[dict], **kwargs) -> CocoDetection:
    path = write_coco(tmp_path, annotations, **kwargs)
    return CocoDetection(image_dir=tmp_path / "val", ann_file=path)


def test_targets_labels_and_crowd(tmp_path):
    crowd = ann(3, 1, [1, 1, 9, 9], 2, iscrowd=1)
    ds = dataset(tmp_path, [ann(1, 1, [10, 5, 20, 10], 7), ann(2, 1, [0, 0, 5, 5], 2), crowd])
    assert ds.num_classes == 2 and ds.label_to_category_id == [2, 7] and ds.category_names == ["cat", "dog"]
    image, target = ds[0]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 10 / 255))
    assert torch.equal(target["boxes"], torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 5.0, 5.0]]))
    assert target["labels"].tolist() == [1, 0] and target["labels"].dtype == torch.int64
    assert target["image_id"] == 1 and target["orig_size"] == (40, 60) and target["scale"] == 1.0


def test_image_without_boxes_is_a_negative(tmp_path):
    ds = dataset(tmp_path, [ann(1, 1, [10, 5, 20, 10])])
    assert len(ds) == 2
    _, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64


def test_max_images_takes_first_sorted_ids(tmp_path):
    path = write_coco(tmp_path, [], images=3)
    ds = CocoDetection(image_dir=tmp_path / "val", ann_file=path, max_images=2)
    assert ds.image_ids == [1, 2]


@pytest.mark.parametrize("bad, message", [
    (ann(17, 2, [3, 4, 0.0, 5]), "instances_val.json: annotation 17 (image 2) has a box with non-positive width 0.0"),
    (ann(18, 1, [3, 4, 5, -1]), "instances_val.json: annotation 18 (image 1) has a box with non-positive height -1.0"),
    (ann(19, 1, [3, 4, 5, 5], 3), "instances_val.json: annotation 19 (image 1) has an unknown category_id 3"),
    (ann(20, 9, [3, 4, 5, 5]), "instances_val.json: annotation 20 (image 9) points to an unknown image id 9"),
])
def test_bad_annotation_raises_one_line(tmp_path, bad, message):
    with pytest.raises(DatasetError) as info:
        dataset(tmp_path, [ann(1, 1, [1, 1, 5, 5]), bad])
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text
    assert isinstance(info.value, ValueError)


def test_missing_image_file_raises(tmp_path):
    with pytest.raises(DatasetError, match=r"^instances_val.json: image 2 file 2.png not found") as info:
        dataset(tmp_path, [], images=2, skip_file=2)
    assert "\n" not in str(info.value)


def test_missing_coco_root_or_file_raises(tmp_path):
    with pytest.raises(DatasetError, match="directory not found"):
        build_datasets(DataConfig(kind="coco", root=str(tmp_path / "nowhere")))
    with pytest.raises(DatasetError, match="instances_train2017.json: annotation file not found"):
        build_datasets(DataConfig(kind="coco", root=str(tmp_path)))


def test_coco_kind_builds_both_splits(tmp_path):
    write_coco(tmp_path, [ann(1, 1, [10, 5, 20, 10])])
    cfg = DataConfig(kind="coco", root=str(tmp_path), train_split="val", val_split="val", min_size=20, max_size=100,
                     scale_jitter=[20, 30])
    train_set, val_set = build_datasets(cfg)
    assert train_set.transforms.transforms[0].jitter == (20, 30)
    image, target = val_set[0]
    assert image.shape == (3, 20, 30) and target["scale"] == 0.5


def test_resize_keeps_short_side_and_scales_boxes_exactly():
    image = torch.rand(3, 40, 60)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 60.0, 40.0]])
    out, target = Resize(50, 1000)(image, {"boxes": boxes, "scale": 1.0})
    assert out.shape == (3, 50, 75) and target["scale"] == 1.25
    assert torch.equal(target["boxes"], boxes * 1.25)
    out, target = Resize(50, 66)(image, {"boxes": boxes, "scale": 1.0})  # long side caps: 60 * 1.1 = 66
    assert out.shape == (3, 44, 66) and target["scale"] == pytest.approx(1.1)
    assert torch.allclose(target["boxes"], boxes * 1.1)


def test_resize_jitter_draws_short_side_from_range():
    torch.manual_seed(0)
    resize = Resize(32, 1000, jitter=(30, 34))
    sides = {resize(torch.rand(3, 20, 40), {"boxes": torch.zeros(0, 4)})[0].shape[1] for _ in range(40)}
    assert sides == {30, 31, 32, 33, 34}


def test_flip_mirrors_boxes():
    image = torch.arange(15, dtype=torch.float32).expand(3, 2, 15)  # (3, H=2, W=15)
    boxes = torch.tensor([[1.0, 0.0, 4.0, 2.0], [10.0, 1.0, 15.0, 2.0]])
    out, target = RandomHorizontalFlip(1.0)(image, {"boxes": boxes})
    assert torch.equal(out, image.flip(-1))
    assert torch.equal(target["boxes"], torch.tensor([[11.0, 0.0, 14.0, 2.0], [0.0, 1.0, 5.0, 2.0]]))
    same, target = RandomHorizontalFlip(0.0)(image, {"boxes": boxes})
    assert same is image and target["boxes"] is boxes
    twice = Compose([RandomHorizontalFlip(1.0), RandomHorizontalFlip(1.0)])(image, {"boxes": boxes})
    assert torch.equal(twice[1]["boxes"], boxes)


def test_collate_and_reproducible_infinite_loader(tmp_path):
    path = write_coco(tmp_path, [ann(1, 1, [10, 5, 20, 10])], images=5)
    ds = CocoDetection(image_dir=tmp_path / "val", ann_file=path)
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == 2 and [t["image_id"] for t in targets] == [1, 2]

    def order(seed: int) -> list[int]:
        batches = build_train_loader(ds, batch_size=2, num_workers=0, seed=seed)
        return [t["image_id"] for _ in range(6) for t in next(batches)[1]]  # 6 batches > 2 epochs of 2

    first = order(0)
    assert first == order(0) and first != order(1)
    epochs = {tuple(first[i:i + 4]) for i in (0, 4, 8)}  # 2 full batches per epoch (the odd image dropped)
    assert len(epochs) > 1  # reshuffled each epoch
