"""The synthetic COCO scenes: determinism, content, cache reuse, concurrent writers, read-back."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from pathlib import Path

import pytest
import torch

from detector.config import DataConfig, SyntheticConfig
from detector.data import synthetic
from detector.data.loader import build_datasets
from detector.data.synthetic import ensure_synthetic_dataset


def small_cfg(cache_dir: Path, seed: int = 0, n_train: int = 24, n_val: int = 8) -> DataConfig:
    """128-px scenes with the cpu profile's generator settings, few images (fast)."""
    return DataConfig(kind="synthetic", cache_dir=str(cache_dir), train_split="train", val_split="val",
                      num_train_images=n_train, num_val_images=n_val, min_size=128, max_size=128,
                      synthetic=SyntheticConfig(seed=seed))


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def annotations(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_same_seed_gives_identical_files(tmp_path):
    a = ensure_synthetic_dataset(small_cfg(tmp_path / "a", n_train=6, n_val=3))
    b = ensure_synthetic_dataset(small_cfg(tmp_path / "b", n_train=6, n_val=3))
    assert a.name == b.name
    files_a, files_b = file_bytes(a), file_bytes(b)
    assert "annotations/instances_train.json" in files_a and "val/3.png" in files_a and "train/6.png" in files_a
    assert files_a == files_b


def test_different_seed_and_split_differ(tmp_path):
    a = ensure_synthetic_dataset(small_cfg(tmp_path, seed=0, n_train=4, n_val=4))
    b = ensure_synthetic_dataset(small_cfg(tmp_path, seed=1, n_train=4, n_val=4))
    assert a != b
    assert annotations(a)["annotations"] != annotations(b)["annotations"]
    assert (a / "train" / "1.png").read_bytes() != (b / "train" / "1.png").read_bytes()
    # train and val are drawn from different streams, not the same scenes twice
    assert (a / "train" / "1.png").read_bytes() != (a / "val" / "1.png").read_bytes()


def test_scene_content(tmp_path):
    cfg = small_cfg(tmp_path, n_train=64, n_val=4)
    coco = annotations(ensure_synthetic_dataset(cfg))
    s = cfg.synthetic
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert len(coco["images"]) == 64
    assert all(s.min_objects <= per_image[img["id"]] <= s.max_objects for img in coco["images"])
    areas = torch.tensor([a["area"] for a in coco["annotations"]])
    assert (areas < 32 ** 2).sum() > 0 and ((areas >= 32 ** 2) & (areas <= 96 ** 2)).sum() > 0
    assert (areas > 96 ** 2).sum() > 0
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= s.image_size and y + h <= s.image_size
        assert a["area"] == w * h and a["iscrowd"] == 0


def test_categories_are_sparse_and_unequal(tmp_path):
    cfg = small_cfg(tmp_path, n_train=64, n_val=4)
    cfg.synthetic.num_classes, cfg.synthetic.min_objects, cfg.synthetic.max_objects = 6, 4, 16  # many objects
    coco = annotations(ensure_synthetic_dataset(cfg))
    ids = [c["id"] for c in coco["categories"]]
    assert ids == [1, 3, 5, 7, 9, 11]
    assert [c["name"] for c in coco["categories"]][:2] == ["red_square", "green_circle"]  # named colours up to 10
    counts = Counter(a["category_id"] for a in coco["annotations"])
    assert set(counts) == set(ids)
    assert counts[1] > 2 * counts[11]  # Zipf: the first class ~4x the last


def test_many_classes_get_distinct_hues(tmp_path):
    for k in (11, 20, 30):
        classes = synthetic.object_classes(k)
        assert len({c.name for c in classes}) == k and len({c.colour for c in classes}) == k
    colours = torch.tensor([c.colour for c in synthetic.object_classes(20)], dtype=torch.float32)
    distance = torch.cdist(colours, colours) + 1e3 * torch.eye(20)
    assert distance.min() > 40  # 18 degrees of hue apart: more than the per-object colour jitter
    probs = synthetic.class_probabilities(20)
    assert probs[0] > 10 * probs[-1]  # (k + 1)^-0.8: ~11x between the first and the 20th class


def test_cpu_profile_scenes_are_matchable_and_imbalanced(tmp_path):
    from detector import regime
    from detector.config import ModelConfig, AnchorConfig

    cfg = small_cfg(tmp_path, n_train=48, n_val=2)
    root = ensure_synthetic_dataset(cfg)
    model = ModelConfig(anchors=AnchorConfig(sizes=[16, 32, 64, 128, 256]))  # the cpu profile's anchors
    coco = json.loads((root / "annotations" / "instances_train.json").read_text())
    figures = regime.regime_from_coco(coco, model, 128, 128)
    assert figures.unmatchable_share < 0.03  # objects >= 12 px: nearly every box has an anchor
    assert figures.positive_fraction < 5e-4  # old scenes (6 classes, 4-16 objects): 3e-3


def test_second_call_reuses_cache(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, n_train=4, n_val=2)
    root = ensure_synthetic_dataset(cfg)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated instead of reusing the cache")

    monkeypatch.setattr(synthetic, "write_split", fail)
    assert ensure_synthetic_dataset(cfg) == root
    cfg.num_train_images = 5  # a different count is a different dataset
    with pytest.raises(AssertionError, match="regenerated"):
        ensure_synthetic_dataset(cfg)


def _ensure_in_process(cache_dir: str, barrier, queue) -> None:
    barrier.wait()  # start together, so both generate and one rename loses
    queue.put(str(ensure_synthetic_dataset(small_cfg(Path(cache_dir), n_train=8, n_val=4))))


def test_concurrent_calls_give_one_dataset(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_ensure_in_process, args=(str(tmp_path), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    roots = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(roots) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(roots.pop()).name]  # no temporary leftovers


def test_loader_reads_it_back(tmp_path):
    cfg = small_cfg(tmp_path, n_train=6, n_val=3)
    train_set, val_set = build_datasets(cfg)
    assert (len(train_set), len(val_set)) == (6, 3)
    assert train_set.num_classes == 20 and train_set.label_to_category_id == list(range(1, 40, 2))
    coco = val_set.coco  # pycocotools
    image, target = val_set[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.uint8
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[target["image_id"]]))
    expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    assert torch.equal(target["boxes"], expected)
    cats = [val_set.label_to_category_id[k] for k in target["labels"].tolist()]
    assert cats == [a["category_id"] for a in anns]
    assert target["scale"] == 1.0 and target["orig_size"] == (128, 128)


def test_smoke_style_val_on_train_split(tmp_path):
    cfg = small_cfg(tmp_path, n_train=4, n_val=4)
    cfg.val_split = cfg.train_split  # the smoke profile evaluates on its training images
    train_set, val_set = build_datasets(cfg)
    assert train_set.image_ids == val_set.image_ids and val_set.ann_file == train_set.ann_file
