"""Visual check of the synthetic scenes: `python -m detector.data.preview [out.png]`.

Renders the first training images, read back through CocoDetection, with
their boxes and class names drawn, into one PNG (default
/tmp/synthetic_preview.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

from detector.config import DataConfig
from detector.data.loader import build_datasets
from detector.data.pixels import to_pixels

ZOOM = 3  # 128-px scenes are too small to judge box tightness at 1x


def render(image, target, names: list[str]) -> Image.Image:
    """One dataset item as a zoomed PIL image with 1-px box outlines and labels."""
    pixels = to_pixels(image)
    picture = Image.fromarray(pixels).resize((pixels.shape[1] * ZOOM, pixels.shape[0] * ZOOM), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
        x1, y1, x2, y2 = (v * ZOOM for v in box)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(255, 255, 255))
        draw.text((x1 + 2, y1 + 1), names[label].split("_")[1][:3], fill=(255, 255, 255))
    return picture


def main(out: str = "/tmp/synthetic_preview.png", count: int = 4) -> Path:
    """Write `count` training scenes side by side (raw on top, boxed below) to `out`."""
    data_cfg = DataConfig(train_split="train", val_split="val", min_size=128, max_size=128, flip_prob=0.0)
    train_set, _ = build_datasets(data_cfg, train=False)
    items = [train_set[i] for i in range(count)]
    no_boxes = {"boxes": items[0][1]["boxes"][:0], "labels": items[0][1]["labels"][:0]}
    raws = [render(image, no_boxes, []) for image, _ in items]
    boxed = [render(image, target, train_set.category_names) for image, target in items]
    w, h = boxed[0].size
    sheet = Image.new("RGB", (w * count, h * 2), (0, 0, 0))
    for i, (raw, box) in enumerate(zip(raws, boxed)):
        sheet.paste(raw, (i * w, 0))
        sheet.paste(box, (i * w, h))
    sheet.save(out)
    return Path(out)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
