"""CocoDetection validation and targets, transforms, loaders -- on tiny hand-written COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.config import DataConfig
from detector.data.coco import CocoDetection, DatasetError, image_table
from detector.data.loader import build_datasets, build_train_loader, collate
from detector.data.transforms import Compose, RandomHorizontalFlip, Resize
from detector.evaluate import coco_metrics


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
    assert image.shape == (3, 40, 60) and image.dtype == torch.uint8  # the model converts on its device
    assert torch.equal(image, torch.full_like(image, 10))  # the file's pixel value, exactly
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
    # A zero width is real COCO (skipped, see test_real_layout_*); a negative one is broken.
    (ann(17, 2, [3, 4, -2.0, 5]), "instances_val.json: annotation 17 (image 2) has a box with non-positive width -2.0"),
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


# ---- COCO as it is: the real layout with every quirk of train2017 ------------------------------

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]  # gaps
# image id -> (PIL mode, height, width) of its JPEG
TRAIN_IMAGES = {1: ("RGB", 48, 64), 2: ("L", 40, 40), 3: ("CMYK", 40, 40), 4: ("RGB", 32, 32),
                5: ("RGB", 32, 32), 6: ("RGB", 32, 32)}
TRAIN_ANNOTATIONS = [
    ann(1, 1, [4, 6, 20, 10], 90),
    ann(2, 1, [50, 30, 30, 30], 3),  # past the right and bottom border: clipped to 64 x 48
    ann(3, 1, [0, 0, 30, 30], 1, iscrowd=1),  # crowd: not a training target
    ann(918, 1, [29.65, 38.33, 1.03, 0.0], 1),  # zero height, as annotation 918 of image 200365
    ann(5, 2, [10, 10, 10, 10], 3),  # grayscale image
    ann(6, 3, [5, 5, 20, 20], 1),  # CMYK image
    # image 4: no annotation at all
    ann(7, 5, [1, 1, 20, 20], 1, iscrowd=1),  # image 5: only a crowd box
    ann(8, 6, [3, 3, 0.0, 7], 3),  # image 6: only a zero-width box
]
VAL_IMAGES = {11: ("RGB", 40, 60), 12: ("L", 40, 60)}
VAL_ANNOTATIONS = [ann(21, 11, [5, 5, 20, 15], 3), ann(22, 11, [30, 10, 20, 20], 1, iscrowd=1)]


def write_jpegs(folder: Path, images: dict[int, tuple[str, int, int]]) -> list[dict]:
    """Small JPEGs in their PIL mode; returns the COCO image records."""
    folder.mkdir(parents=True, exist_ok=True)
    colour = {"RGB": (200, 40, 40), "L": 90, "CMYK": (0, 255, 255, 0)}  # CMYK (0, 255, 255, 0) is red
    records = []
    for image_id, (mode, height, width) in images.items():
        name = f"{image_id:012d}.jpg"
        Image.new(mode, (width, height), colour[mode]).save(folder / name, quality=95)
        records.append({"id": image_id, "file_name": name, "width": width, "height": height, "license": 1})
    return records


def write_real_layout(root: Path, train_annotations: list[dict] = TRAIN_ANNOTATIONS) -> Path:
    """annotations/instances_{train,val}2017.json, train2017/ and val2017/ under `root`."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, images, annotations in (("train2017", TRAIN_IMAGES, train_annotations),
                                       ("val2017", VAL_IMAGES, VAL_ANNOTATIONS)):
        records = write_jpegs(root / split, images)
        with_masks = [{**a, "segmentation": [[1.5, 2.0, 9.5, 9.5, 3.0, 7.25]]}
                      for a in annotations]  # polygons, as real COCO has (dropped at load)
        coco = {"info": {"year": 2017}, "licenses": [{"id": 1}], "images": records, "annotations": with_masks,
                "categories": CATEGORIES}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def real_config(root: Path, **changes) -> DataConfig:
    values = dict(kind="coco", root=str(root), min_size=32, max_size=1000, flip_prob=0.0)
    return DataConfig(**{**values, **changes})


def by_id(ds: CocoDetection, image_id: int) -> tuple[torch.Tensor, dict]:
    return ds[ds.image_ids.index(image_id)]


@pytest.fixture
def coco_root(tmp_path) -> Path:
    return write_real_layout(tmp_path / "coco")


def test_real_layout_zero_size_boxes_are_skipped_and_counted_in_one_line(coco_root, caplog):
    with caplog.at_level("WARNING", logger="detector.data.coco"):
        train_set, val_set = build_datasets(real_config(coco_root, drop_train_images_without_boxes=False))
    lines = [r.getMessage() for r in caplog.records if "zero-size" in r.getMessage()]
    assert lines == ["instances_train2017.json: skipped 2 zero-size boxes in training "
                     "(e.g. annotation 918 of image 1, bbox [29.65, 38.33, 1.03, 0.0])"]
    train_set.transforms = None
    _, target = by_id(train_set, 1)
    assert target["boxes"].shape == (2, 4)  # the normal box and the clipped one; no crowd, no zero-size
    assert by_id(train_set, 6)[1]["boxes"].shape == (0, 4)
    assert 918 in train_set.coco.anns  # the ground truth of COCOeval stays the file as it is


def test_real_layout_clips_boxes_and_maps_category_gaps(coco_root):
    train_set, _ = build_datasets(real_config(coco_root))
    train_set.transforms = None
    assert train_set.label_to_category_id == [1, 3, 90] and train_set.num_classes == 3
    assert train_set.category_names == ["person", "car", "toothbrush"]
    image, target = by_id(train_set, 1)
    assert image.shape == (3, 48, 64)
    assert torch.equal(target["boxes"], torch.tensor([[4.0, 6.0, 24.0, 16.0], [50.0, 30.0, 64.0, 48.0]]))
    assert target["labels"].tolist() == [2, 1]  # category 90 -> label 2, category 3 -> label 1


def test_real_layout_grayscale_and_cmyk_become_rgb(coco_root):
    train_set, val_set = build_datasets(real_config(coco_root))
    train_set.transforms = None
    gray, target = by_id(train_set, 2)
    assert gray.shape == (3, 40, 40) and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert gray.float().mean().item() == pytest.approx(90, abs=5) and target["labels"].tolist() == [1]
    cmyk, _ = by_id(train_set, 3)
    assert cmyk.shape == (3, 40, 40)
    red, green, blue = cmyk.float().mean(dim=(1, 2)).tolist()
    assert red > 230 and green < 25 and blue < 25
    assert val_set[1][0].shape == (3, 32, 48)  # the grayscale val image, resized to short side 32


def test_real_layout_images_without_boxes_dropped_from_training_by_default(coco_root):
    train_set, val_set = build_datasets(real_config(coco_root))
    assert train_set.image_ids == [1, 2, 3]  # 4: no annotation, 5: only crowd, 6: only zero-size
    assert val_set.image_ids == [11, 12]  # validation keeps every image (12 has no annotation)
    kept, _ = build_datasets(real_config(coco_root, drop_train_images_without_boxes=False))
    assert kept.image_ids == [1, 2, 3, 4, 5, 6]
    kept.transforms = None
    for image_id in (4, 5):
        _, target = by_id(kept, image_id)
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    capped, _ = build_datasets(real_config(coco_root, num_train_images=2))
    assert capped.image_ids == [1, 2]  # the cap counts usable images


def test_real_layout_crowd_boxes_stay_in_evaluation(coco_root):
    _, val_set = build_datasets(real_config(coco_root))
    crowd = val_set.coco.anns[22]
    assert crowd["iscrowd"] == 1 and crowd["bbox"] == [30, 10, 20, 20] and "segmentation" not in crowd
    val_set.transforms = None
    _, target = by_id(val_set, 11)
    assert target["boxes"].tolist() == [[5.0, 5.0, 25.0, 20.0]]  # not a training target
    perfect = {"image_id": 11, "category_id": 3, "bbox": [5, 5, 20, 15], "score": 0.9}
    on_crowd = {"image_id": 11, "category_id": 1, "bbox": [30, 10, 20, 20], "score": 0.8}
    for backend in ("pycocotools", "faster_coco_eval"):  # a detection on a crowd box is no false positive
        assert coco_metrics(val_set.coco, [perfect, on_crowd], backend=backend)["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("change, message", [
    (lambda a: a[0].update(bbox=[4, 6, float("nan"), 10]),
     "instances_train2017.json: annotation 1 (image 1) has a non-finite bbox [4.0, 6.0, nan, 10.0]"),
    (lambda a: a[1].pop("bbox"), "instances_train2017.json: annotation 2 (image 1) has no bbox"),
    (lambda a: a[4].pop("category_id"), "instances_train2017.json: annotation 5 (image 2) has no category_id"),
    (lambda a: a[5].update(bbox=[5, 5, 20]),
     "instances_train2017.json: annotation 6 (image 3) has a malformed bbox [5, 5, 20]"),
    (lambda a: a[5].update(bbox=[5, "5", 20, 20]),
     "instances_train2017.json: annotation 6 (image 3) has a malformed bbox [5, '5', 20, 20]"),
    (lambda a: a[0].update(image_id=77),
     "instances_train2017.json: annotation 1 (image 77) points to an unknown image id 77"),
    (lambda a: a[0].update(category_id=2),
     "instances_train2017.json: annotation 1 (image 1) has an unknown category_id 2"),
    (lambda a: a[2].update(id=1), "instances_train2017.json: annotation id 1 appears more than once"),
])
def test_real_layout_malformed_annotations_are_one_line_errors(tmp_path, change, message):
    annotations = json.loads(json.dumps(TRAIN_ANNOTATIONS))
    change(annotations)
    root = write_real_layout(tmp_path / "coco", annotations)
    with pytest.raises(DatasetError) as info:
        build_datasets(real_config(root))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_real_layout_image_without_file_name_is_a_one_line_error(coco_root):
    path = coco_root / "annotations" / "instances_train2017.json"
    coco = json.loads(path.read_text())
    del coco["images"][2]["file_name"]
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"^instances_train2017.json: image 3 has no file_name$"):
        build_datasets(real_config(coco_root))


@pytest.mark.parametrize("file_name", ["/etc/passwd", "../val2017/1.jpg", "a/../../b.jpg", "C:\\x.jpg", "..\\x.jpg"])
def test_real_layout_file_name_outside_the_image_folder_is_a_one_line_error(coco_root, file_name):
    path = coco_root / "annotations" / "instances_train2017.json"
    coco = json.loads(path.read_text())
    coco["images"][2]["file_name"] = file_name
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError) as info:
        build_datasets(real_config(coco_root))
    assert str(info.value).startswith("instances_train2017.json: image 3 has file_name ")
    assert "outside the image folder" in str(info.value) and "\n" not in str(info.value)


def test_file_names_in_subfolders_are_kept():
    table = image_table("x.json", [{"id": 1, "file_name": "sub/1.jpg"}, {"id": 2, "file_name": "2..jpg"}])
    assert list(table.file_names) == ["sub/1.jpg", "2..jpg"]


def test_start_up_lists_the_image_folder_instead_of_a_stat_per_image(tmp_path, monkeypatch):
    path = write_coco(tmp_path, [ann(1, 1, [10, 5, 20, 10])], images=25)
    stats: list[str] = []
    original = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: (stats.append(str(self)), original(self, **kw))[1])
    ds = CocoDetection(image_dir=tmp_path / "val", ann_file=path)
    assert len(ds) == 25 and len(stats) <= 2  # the annotation file itself, not the 25 images


def test_real_layout_trains_and_evaluates_through_a_trial(coco_root, tmp_path):
    from detector.config import TrialConfig
    from detector.trial import run_trial

    cfg = TrialConfig.from_dict({
        "model": {"depth": 18, "fpn_channels": 16, "head_convs": 1, "head_channels": 16,
                  "anchors": {"sizes": [16, 32, 64, 128, 256]}},
        "data": {"kind": "coco", "root": str(coco_root), "min_size": 64, "max_size": 64},
        "train": {"batch_size": 2, "iterations": 2, "steps": [100], "warmup_iters": 0, "device": "cpu"},
        "eval": {"timing_images": 1, "warmup_images": 0},
    })
    result = run_trial(cfg, workdir=tmp_path / "trial")
    assert result["iterations"] == 2.0 and 0.0 <= result["AP"] <= 1.0 and result["ms_per_image"] > 0
