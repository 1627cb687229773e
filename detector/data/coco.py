"""A COCO-format detection dataset, checked and indexed with numpy.

Real COCO and the synthetic scenes go through this one class. The annotation
file is checked when the dataset is built (fields, boxes, category and image
ids, image files present), so a broken file fails at once with one line that
names the file and the offending id, not as a shape error deep inside
training. The checks are vectorised: train2017 (118k images, 860k
annotations) is parsed, checked and indexed in seconds, and the dataset
keeps numpy columns instead of ~10^6 Python dicts (which DataLoader workers
would copy page by page as reference counts touch them).

COCO as it is:
- zero-width or -height boxes (train2017 has two, e.g. annotation 918 of image
  200365) are skipped in the training targets and counted: one log line per
  file naming an example;
- crowd boxes (iscrowd=1) stay out of the training targets and in the
  ground truth that COCOeval reads (it ignores detections on them);
- boxes past the image border are clipped to it when an item is read;
- category ids may have gaps (COCO uses 80 of 1..90): labels are 0..K-1 in
  category-id order;
- grayscale, CMYK and palette images are converted to RGB.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

Target = dict[str, Any]
log = logging.getLogger(__name__)

ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")  # required; iscrowd defaults to 0, area to w * h
IMAGE_KEYS = ("id", "file_name")


class DatasetError(ValueError):
    """The dataset on disk is missing or inconsistent; the message is one line for the user."""


# ---- reading -------------------------------------------------------------------


def _without_segmentation(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: drop "segmentation" as soon as it is parsed.

    Box detection never reads the polygons, and they are most of the bytes of
    a COCO file: dropping them while parsing keeps the peak memory of
    train2017 near the size of its boxes rather than of its masks.
    """
    record = dict(pairs)
    record.pop("segmentation", None)
    return record


def read_coco_json(ann_file: Path) -> dict[str, Any]:
    """The COCO dict of `ann_file` without segmentations; one-line DatasetError if unreadable."""
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        dataset = json.loads(ann_file.read_bytes(), object_pairs_hook=_without_segmentation)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{ann_file.name}: not a readable JSON file ({err})") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise DatasetError(f"{ann_file.name}: not a COCO file (no 'images' list)")
    if not isinstance(dataset.get("annotations", []), list) or not isinstance(dataset.get("categories"), list):
        raise DatasetError(f"{ann_file.name}: not a COCO file ('annotations' and 'categories' must be lists)")
    return dataset


def _first_missing_key(records: list[Any], keys: tuple[str, ...]) -> tuple[Any, str]:
    """(record, key) of the first record that is not a dict holding every key (error path only)."""
    for record in records:
        for key in keys:
            if not isinstance(record, dict) or key not in record:
                return record, key
    raise AssertionError("every record has every key")


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else None


def _int_column(values: tuple, describe: Callable[[int], str]) -> np.ndarray:
    """(n,) int64 of `values`; else DatasetError(describe(i)) for the first non-integer i."""
    column = np.asarray(values)
    if len(values) and column.dtype.kind not in "iu":
        raise DatasetError(describe(next((i for i, v in enumerate(values) if type(v) is not int), 0)))
    return column.astype(np.int64).reshape(len(values))


# ---- the tables ----------------------------------------------------------------


@dataclass
class ImageTable:
    """One row per image of the file, sorted by id."""

    ids: np.ndarray  # (I,) int64, increasing
    file_names: np.ndarray  # (I,) str
    widths: np.ndarray  # (I,) int64, 0 where the file does not say
    heights: np.ndarray  # (I,) int64


@dataclass
class AnnotationTable:
    """One row per annotation, in file order."""

    ids: np.ndarray  # (A,) int64
    image_ids: np.ndarray  # (A,) int64
    category_ids: np.ndarray  # (A,) int64
    boxes: np.ndarray  # (A, 4) float64 x, y, width, height in original pixels
    areas: np.ndarray  # (A,) float64 (COCOeval's size ranges read it)
    crowd: np.ndarray  # (A,) bool


def image_table(name: str, images: list[Any]) -> ImageTable:
    """Columns of the "images" list, sorted by id; one-line errors for missing fields or repeated ids."""
    try:
        ids, file_names = zip(*map(itemgetter(*IMAGE_KEYS), images)) if images else ((), ())
    except (KeyError, TypeError):
        record, key = _first_missing_key(images, IMAGE_KEYS)
        which = _get(record, "id") if key != "id" else repr(record)
        raise DatasetError(f"{name}: image {which} has no {key}") from None
    id_array = _int_column(ids, lambda i: f"{name}: image {ids[i]!r} has a non-integer id")
    empty = next((i for i, f in enumerate(file_names) if not isinstance(f, str) or not f), None)
    if empty is not None:
        raise DatasetError(f"{name}: image {ids[empty]} has no file_name")
    outside = next((i for i, f in enumerate(file_names) if _escapes(f)), None)
    if outside is not None:  # joined to the image folder, it would read (or a cache write) elsewhere
        raise DatasetError(f"{name}: image {ids[outside]} has file_name {file_names[outside]!r} "
                           "outside the image folder; expected a relative path without '..'")
    order = np.argsort(id_array, kind="stable")
    _check_unique(name, "image id", id_array[order])
    sizes = np.array([(image.get("width") or 0, image.get("height") or 0) for image in images], dtype=np.int64)
    sizes = sizes.reshape(-1, 2)[order]
    return ImageTable(id_array[order], np.asarray(file_names, dtype=str)[order], sizes[:, 0], sizes[:, 1])


def _escapes(file_name: str) -> bool:
    """Whether a file_name leaves its image folder: absolute (POSIX or Windows) or with a '..' part."""
    return (PurePosixPath(file_name).is_absolute() or PureWindowsPath(file_name).is_absolute()
            or ".." in PurePosixPath(file_name.replace("\\", "/")).parts)


def annotation_table(name: str, annotations: list[Any]) -> AnnotationTable:
    """Columns of the "annotations" list; one-line errors for missing fields or malformed values."""
    ids, image_ids, category_ids, bboxes, crowd, areas = _annotation_columns(name, annotations)
    where = lambda i: f"{name}: annotation {ids[i]} (image {image_ids[i]})"  # noqa: E731
    id_column = _int_column(ids, lambda i: f"{name}: annotation {ids[i]!r} has a non-integer id")
    image_column = _int_column(image_ids, lambda i: f"{where(i)} has a non-integer image_id")
    category_column = _int_column(category_ids, lambda i: f"{where(i)} has a non-integer category_id")
    boxes = _box_column(bboxes, lambda i: f"{where(i)} has a malformed bbox {bboxes[i]!r}; "
                                          "expected [x, y, width, height]")
    crowd_column = np.array(crowd, dtype=bool).reshape(len(ids))
    area_column = np.array(areas, dtype=np.float64).reshape(len(ids))
    area_column = np.where(np.isnan(area_column), boxes[:, 2] * boxes[:, 3], area_column)  # "area" may be absent
    _check_unique(name, "annotation id", np.sort(id_column))
    return AnnotationTable(id_column, image_column, category_column, boxes, area_column, crowd_column)


def _annotation_columns(name: str, annotations: list[Any]) -> tuple[tuple, ...]:
    """(ids, image_ids, category_ids, bboxes, iscrowd, areas) as tuples, one C-level pass when complete.

    A hand-written file may lack "iscrowd" (0) and "area" (NaN here, the box
    area later); a missing required key is a one-line error.
    """
    if not annotations:
        return ((),) * 6
    try:
        return tuple(zip(*map(itemgetter(*ANNOTATION_KEYS, "iscrowd", "area"), annotations)))
    except (KeyError, TypeError):
        pass
    try:
        required = tuple(zip(*map(itemgetter(*ANNOTATION_KEYS), annotations)))
    except (KeyError, TypeError):
        record, key = _first_missing_key(annotations, ANNOTATION_KEYS)
        what = f"annotation {_get(record, 'id')}" if key != "id" else "an annotation"
        raise DatasetError(f"{name}: {what} (image {_get(record, 'image_id')}) has no {key}") from None
    optional = tuple((a.get("iscrowd", 0), a.get("area", np.nan)) for a in annotations)
    return (*required, *zip(*optional))


def _box_column(bboxes: tuple, describe: Callable[[int], str]) -> np.ndarray:
    """(A, 4) float64 of the bbox lists; else DatasetError(describe(i)) for the first that is not 4 numbers."""
    try:
        raw = np.array(bboxes) if bboxes else np.zeros((0, 4))
    except ValueError:  # ragged
        raw = None
    # numpy makes str (kind "U") or object arrays of strings or None; only numbers pass
    if raw is not None and raw.dtype.kind in "iuf" and raw.shape == (len(bboxes), 4):
        return raw.astype(np.float64)
    number = lambda v: type(v) in (int, float)  # noqa: E731 - bool is not a number here
    bad = next(i for i, b in enumerate(bboxes) if not (isinstance(b, list) and len(b) == 4 and all(map(number, b))))
    raise DatasetError(describe(bad))


def _check_unique(name: str, what: str, sorted_ids: np.ndarray) -> None:
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if repeated.size:
        raise DatasetError(f"{name}: {what} {repeated[0]} appears more than once")


def check_annotations(name: str, anns: AnnotationTable, image_ids: np.ndarray, category_ids: np.ndarray) -> None:
    """One-line DatasetError for the first annotation with an unknown image or category or a bad box.

    `image_ids` and `category_ids` are sorted. Zero-size boxes are allowed
    here (they are skipped in training); negative sizes and NaN are not.
    """
    where = lambda i: f"{name}: annotation {anns.ids[i]} (image {anns.image_ids[i]})"  # noqa: E731
    checks = [
        (~np.isin(anns.image_ids, image_ids), lambda i: f"points to an unknown image id {anns.image_ids[i]}"),
        (~np.isin(anns.category_ids, category_ids),
         lambda i: f"has an unknown category_id {anns.category_ids[i]}; known: {', '.join(map(str, category_ids))}"),
        (~np.isfinite(anns.boxes).all(axis=1), lambda i: f"has a non-finite bbox {anns.boxes[i].tolist()}"),
        (anns.boxes[:, 2] < 0, lambda i: f"has a box with non-positive width {anns.boxes[i, 2]}"),
        (anns.boxes[:, 3] < 0, lambda i: f"has a box with non-positive height {anns.boxes[i, 3]}"),
    ]
    for bad, message in checks:
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{where(first)} {message(first)}")


def check_image_files(name: str, image_dir: Path, ids: np.ndarray, file_names: np.ndarray) -> None:
    """One-line DatasetError for the first image whose file is missing.

    One directory listing instead of a stat per image: 118k stats of a
    network file system take minutes, one listing a fraction of a second.
    """
    try:
        present = set(os.listdir(image_dir))
    except OSError as err:
        raise DatasetError(f"{name}: image directory {image_dir} cannot be listed ({err.strerror})") from None
    for image_id, file_name in zip(ids.tolist(), file_names.tolist()):
        if file_name not in present and not ("/" in file_name and (image_dir / file_name).is_file()):
            raise DatasetError(f"{name}: image {image_id} file {file_name} not found in {image_dir}")


def image_to_tensor(path: Path) -> Tensor:
    """Read an image file as a uint8 tensor (3, H, W); grayscale, CMYK, palette -> RGB.

    uint8, not float: the loader's workers hand a quarter of the bytes to the
    main process and the device, and the model converts to float on the device
    (RetinaNet.batch_images)."""
    with Image.open(path) as img:
        pixels = np.array(img.convert("RGB"))  # (H, W, 3) uint8; np.array copies, so writable
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


# ---- the dataset ---------------------------------------------------------------


class CocoDetection(Dataset):
    """COCO-format dataset: item i -> (image (3, H, W) float [0, 1], target).

    target: "boxes" (G, 4) float32 (x1, y1, x2, y2) pixels of the returned
    image; "labels" (G,) int64 in 0..K-1 (contiguous, in category-id order;
    `label_to_category_id[label]` maps back); "image_id" int; "scale" float
    (returned size / original size); "orig_size" (h, w) of the file. Crowd
    and zero-size annotations are left out of the targets. Images without a
    usable box are kept as negatives (boxes (0, 4)) unless
    `drop_images_without_boxes`. `coco` is the whole file as a pycocotools
    COCO (the ground truth of COCOeval, crowd boxes included).
    """

    def __init__(
        self,
        *,
        image_dir: str | Path,
        ann_file: str | Path,
        transforms: Optional[Callable[[Tensor, Target], tuple[Tensor, Target]]] = None,
        max_images: Optional[int] = None,
        drop_images_without_boxes: bool = False,
    ) -> None:
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.transforms = transforms
        name = self.ann_file.name
        dataset = read_coco_json(self.ann_file)
        self.categories = _categories(name, dataset["categories"])
        self.images = image_table(name, dataset["images"])
        self.annotations = annotation_table(name, dataset.get("annotations", []))
        del dataset  # from here on only numpy columns are kept
        self.label_to_category_id: list[int] = [c["id"] for c in self.categories]
        check_annotations(name, self.annotations, self.images.ids, np.array(self.label_to_category_id))
        self.category_names: list[str] = [c.get("name", str(c["id"])) for c in self.categories]
        self.num_classes = len(self.label_to_category_id)
        self._index_training_boxes(name)
        self._positions = self._select_images(name, max_images, drop_images_without_boxes)
        used = self._positions
        check_image_files(name, self.image_dir, self.images.ids[used], self.images.file_names[used])

    def _index_training_boxes(self, name: str) -> None:
        """Group the usable boxes by image: `_boxes[_starts[p]:_starts[p + 1]]` belong to image row p."""
        anns = self.annotations
        zero = (anns.boxes[:, 2] == 0) | (anns.boxes[:, 3] == 0)
        _log_zero_size(name, anns, zero)
        usable = ~anns.crowd & ~zero
        rows = np.searchsorted(self.images.ids, anns.image_ids[usable])  # image row of each usable box
        order = np.argsort(rows, kind="stable")  # by image, file order inside an image
        xywh = anns.boxes[usable][order]
        self._boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
        category_ids = np.array(self.label_to_category_id)
        self._labels = np.searchsorted(category_ids, anns.category_ids[usable][order]).astype(np.int64)
        self._starts = np.searchsorted(rows[order], np.arange(len(self.images.ids) + 1))

    def _select_images(self, name: str, max_images: Optional[int], drop_empty: bool) -> np.ndarray:
        """Image rows of the dataset, by id: without the box-less ones if `drop_empty`, then the first max_images."""
        positions = np.arange(len(self.images.ids))
        if drop_empty:
            has_boxes = np.diff(self._starts) > 0
            log.info("%s: %d of %d images have no usable box; dropped from training",
                     name, int((~has_boxes).sum()), len(positions))
            positions = positions[has_boxes]
        return positions[:max_images]

    @property
    def image_ids(self) -> list[int]:
        """COCO ids of the dataset's images, in item order (increasing)."""
        return self.images.ids[self._positions].tolist()

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        row = int(self._positions[index])
        image = image_to_tensor(self.image_dir / str(self.images.file_names[row]))
        height, width = image.shape[-2:]
        boxes, labels = self._targets_of_row(row, width, height)
        target = {"boxes": boxes, "labels": labels, "image_id": int(self.images.ids[row]), "scale": 1.0,
                  "orig_size": (int(height), int(width))}
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def targets(self, image_id: int, width: int, height: int) -> tuple[Tensor, Tensor]:
        """Usable boxes (G, 4) float32 xyxy of `image_id` clipped to width x height, and labels (G,) int64."""
        return self._targets_of_row(int(np.searchsorted(self.images.ids, image_id)), width, height)

    def _targets_of_row(self, row: int, width: int, height: int) -> tuple[Tensor, Tensor]:
        start, end = self._starts[row], self._starts[row + 1]
        boxes = torch.from_numpy(self._boxes[start:end].copy())
        # COCO boxes may poke past the border by a pixel; clip, then drop any left empty.
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], torch.from_numpy(self._labels[start:end].copy())[keep]

    @cached_property
    def coco(self) -> COCO:
        """The whole file as a pycocotools COCO (without segmentations), built on first use."""
        return _to_pycocotools(self.images, self.annotations, self.categories)

    def __repr__(self) -> str:
        return (f"CocoDetection({self.ann_file.name}: {len(self)} images, {self.num_classes} classes, "
                f"transforms={self.transforms!r})")


def _categories(name: str, categories: list[Any]) -> list[dict[str, Any]]:
    """The category dicts sorted by id; one-line errors for none, a missing or a repeated id."""
    if not categories:
        raise DatasetError(f"{name}: no categories")
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in categories):
        bad = next(c for c in categories if not (isinstance(c, dict) and isinstance(c.get("id"), int)))
        raise DatasetError(f"{name}: category {bad!r} has no integer id")
    ordered = sorted(categories, key=lambda c: c["id"])
    _check_unique(name, "category id", np.array([c["id"] for c in ordered]))
    return ordered


def _log_zero_size(name: str, anns: AnnotationTable, zero: np.ndarray) -> None:
    """One line per file: how many zero-width or -height boxes are skipped, with an example."""
    if zero.any():
        first = int(np.flatnonzero(zero)[0])
        log.warning("%s: skipped %d zero-size boxes in training (e.g. annotation %d of image %d, bbox %s)",
                    name, int(zero.sum()), anns.ids[first], anns.image_ids[first], anns.boxes[first].tolist())


def _to_pycocotools(images: ImageTable, anns: AnnotationTable, categories: list[dict]) -> COCO:
    """A pycocotools COCO of the tables: what COCOeval reads of a box ground truth."""
    columns = (images.ids.tolist(), images.file_names.tolist(), images.widths.tolist(), images.heights.tolist())
    image_dicts = [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in zip(*columns)]
    ann_dicts = [{"id": i, "image_id": m, "category_id": c, "bbox": b, "area": a, "iscrowd": int(z)}
                 for i, m, c, b, a, z in zip(anns.ids.tolist(), anns.image_ids.tolist(), anns.category_ids.tolist(),
                                             anns.boxes.tolist(), anns.areas.tolist(), anns.crowd.tolist())]
    coco = COCO()
    coco.dataset = {"images": image_dicts, "annotations": ann_dicts, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco
