"""Our RetinaNet against torchvision's, same backbone, sizes and anchors.

Measures training images/s (forward + backward + SGD step) and inference
ms/image (batch 1, post-processing included) of both models in the same run,
interleaving the two so that machine load affects both alike, and prints
ours / torchvision ratios (>= 1.0 means ours is no slower).

    python benchmarks/detector_speed.py                      # cpu profile sizes, 1 thread
    python benchmarks/detector_speed.py --preset paper --device cuda --amp   # on a GPU
    python benchmarks/detector_speed.py --preset paper --device cuda --sizes 400 500 600 700 800 --inference-only
    python benchmarks/detector_speed.py --preset paper --depth 101 --device cuda --amp --inference-only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead as TvHead

from detector.backbone import build_backbone
from detector.config import AnchorConfig, LossConfig, ModelConfig, SyntheticConfig
from detector.evaluate import synchronize
from detector.model import build_model

PRESETS = {
    # The cpu profile's model, with torchvision's fixed head of 4 convs at FPN width.
    "cpu": dict(depth=18, fpn=64, sizes=[16, 32, 64, 128, 256], image=128, batch=4),
    "paper": dict(depth=50, fpn=256, sizes=[32, 64, 128, 256, 512], image=600, batch=8),
}


def model_config(preset: dict) -> ModelConfig:
    return ModelConfig(depth=preset["depth"], frozen_bn=True, fpn_channels=preset["fpn"], head_convs=4,
                       head_channels=preset["fpn"], anchors=AnchorConfig(sizes=preset["sizes"]))


def torchvision_model(cfg: ModelConfig, num_classes: int, image: int) -> torch.nn.Module:
    """torchvision's RetinaNet on an identical backbone, anchors and inference settings."""
    scales = [2 ** (i / cfg.anchors.scales_per_octave) for i in range(cfg.anchors.scales_per_octave)]
    sizes = tuple(tuple(s * f for f in scales) for s in cfg.anchors.sizes)
    anchors = TvAnchorGenerator(sizes, (tuple(cfg.anchors.aspect_ratios),) * len(sizes))
    backbone = build_backbone(cfg)
    head = TvHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes)
    inf = cfg.inference
    return torchvision.models.detection.RetinaNet(
        backbone, num_classes, min_size=image, max_size=image, anchor_generator=anchors, head=head,
        score_thresh=inf.score_thresh, nms_thresh=inf.nms_thresh, detections_per_img=inf.detections_per_image,
        topk_candidates=inf.topk_per_level)


def fake_batch(batch: int, image: int, num_classes: int, device: torch.device, seed: int) -> tuple[list, list]:
    """`batch` random images with 8 random boxes each (the speed does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, image, image, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(8, 2, generator=g) * image * 0.7
        wh = 8 + torch.rand(8, 2, generator=g) * image * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=image)], dim=1).to(device)
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (8,), generator=g).to(device)})
    return images, targets


def train_seconds(model, optimizer, images, targets, device, amp: bool, iters: int) -> float:
    """Seconds per iteration of forward + backward + step over `iters` iterations."""
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        with torch.autocast(device.type, enabled=amp):
            losses = model(images, targets)
            loss = sum(v for k, v in losses.items() if k.startswith(("loss", "classification", "bbox")))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start) / iters


@torch.inference_mode()
def infer_seconds(model, images, device, amp: bool) -> float:
    """Seconds per image at batch size 1."""
    model.eval()
    synchronize(device)
    start = time.perf_counter()
    for image in images:
        with torch.autocast(device.type, enabled=amp):
            model([image])
    synchronize(device)
    return (time.perf_counter() - start) / len(images)


def interleaved(measure_a, measure_b, rounds: int) -> tuple[float, float]:
    """Median of `rounds` alternating measurements of a and b (after one warm-up each)."""
    measure_a(), measure_b()
    a, b = [], []
    for _ in range(rounds):
        a.append(measure_a())
        b.append(measure_b())
    return statistics.median(a), statistics.median(b)


def build_pair(preset: dict, num_classes: int, device: torch.device):
    cfg = model_config(preset)
    torch.manual_seed(0)
    ours = build_model(cfg, LossConfig(), num_classes).to(device)
    torch.manual_seed(0)
    theirs = torchvision_model(cfg, num_classes, preset["image"]).to(device)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA)")
    parser.add_argument("--iters", type=int, default=5, help="training iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=10, help="images per inference round")
    parser.add_argument("--sizes", type=int, nargs="*", help="inference image sizes (default: the preset's)")
    parser.add_argument("--inference-only", action="store_true")
    parser.add_argument("--depth", type=int, help="ResNet depth (default: the preset's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, preset = torch.device(args.device), dict(PRESETS[args.preset])
    preset["depth"] = args.depth or preset["depth"]
    num_classes = SyntheticConfig().num_classes  # the cpu profile's scenes (the schema's default)
    ours, theirs = build_pair(preset, num_classes, device)
    print(f"preset {args.preset}: ResNet-{preset['depth']}-FPN {preset['fpn']} ch, {preset['image']} px, "
          f"batch {preset['batch']}, device {device}, threads {args.threads}, amp {args.amp}")
    if not args.inference_only:
        report_training(ours, theirs, preset, num_classes, device, args)
    for size in args.sizes or [preset["image"]]:
        report_inference(ours, theirs, size, device, args)


def report_training(ours, theirs, preset, num_classes, device, args) -> None:
    images, targets = fake_batch(preset["batch"], preset["image"], num_classes, device, seed=0)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=1e-4, momentum=0.9)
    t_ours, t_theirs = interleaved(
        lambda: train_seconds(ours, opt_ours, images, targets, device, args.amp, args.iters),
        lambda: train_seconds(theirs, opt_theirs, images, targets, device, args.amp, args.iters), args.rounds)
    ips_ours, ips_theirs = preset["batch"] / t_ours, preset["batch"] / t_theirs
    print(f"train  ours {ips_ours:7.2f} img/s   torchvision {ips_theirs:7.2f} img/s   "
          f"ratio ours/torchvision {ips_ours / ips_theirs:.3f}")


def report_inference(ours, theirs, size, device, args) -> None:
    images, _ = fake_batch(args.images, size, 6, device, seed=1)
    theirs.transform.min_size, theirs.transform.max_size = (size,), size
    t_ours, t_theirs = interleaved(lambda: infer_seconds(ours, images, device, args.amp),
                                   lambda: infer_seconds(theirs, images, device, args.amp), args.rounds)
    print(f"infer {size:4d}px  ours {1000 * t_ours:7.2f} ms/img   torchvision {1000 * t_theirs:7.2f} ms/img   "
          f"speed ratio torchvision_ms/ours_ms {t_theirs / t_ours:.3f}")


if __name__ == "__main__":
    main()
