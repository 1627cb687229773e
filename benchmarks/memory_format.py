"""Inference time of the cpu profile's network over input sizes, NCHW vs channels_last.

Why ms/image is timed in channels_last (`eval.channels_last`, docs/FIDELITY.md
E13): in NCHW, PyTorch's CPU convolutions pick kernels by shape and a 96-px
image can take longer than a 128-px one, so Figure 2's ms would not rise with
the input scale. Prints, per depth and size, the network time (backbone, FPN
and head: `raw_outputs`, batch 1, random weights) as the minimum over
`--passes` interleaved passes (load from other work slows every format alike),
and the ratio channels_last / NCHW (< 1: channels_last is faster).

    python benchmarks/memory_format.py                    # depths 18 and 34, 64-192 px, 1 thread
    python benchmarks/memory_format.py profile=paper model.pretrained=null model.frozen_bn=false \
        --depths 50 101 --sizes 400 500 600 700 800 --device cuda   # the paper's network on a GPU
"""

from __future__ import annotations

import argparse
import time

import torch

from detector.model import build_model
from sweeps.compose import trial_config

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def network_ms(model: torch.nn.Module, image: torch.Tensor, device: torch.device, amp: bool = False) -> float:
    """One forward pass of the network (no post-processing), in milliseconds; `amp`: under autocast."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, enabled=amp):
        model.raw_outputs([image])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000.0 * (time.perf_counter() - start)


@torch.inference_mode()
def scan(depth: int, sizes: list[int], passes: int, device: torch.device,
         overrides: list[str], amp: bool = False) -> dict[tuple[str, int], float]:
    """(format, size) -> the fastest of `passes` network passes, formats and sizes interleaved."""
    cfg = trial_config([*overrides, f"model.depth={depth}"])
    models = {name: build_model(cfg.model, cfg.loss, cfg.data.synthetic.num_classes).eval().to(device)
              .to(memory_format=memory) for name, memory in FORMATS.items()}
    images = {size: torch.rand(3, size, size, device=device) for size in sizes}
    best = {(name, size): float("inf") for name in FORMATS for size in sizes}
    for _ in range(passes + 1):  # the first round warms up every shape and is not counted
        for size in sizes:
            for name, model in models.items():
                best[name, size] = min(best[name, size], network_ms(model, images[size], device, amp))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the trial config (default: the cpu profile)")
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 34])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 192])
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"network ms (min of {args.passes} passes), {args.threads} thread(s), {device}, amp {args.amp}")
    print("depth  format         " + "".join(f"{size:>8}" for size in args.sizes))
    for depth in args.depths:
        best = scan(depth, args.sizes, args.passes, device, args.overrides, args.amp)
        for name in FORMATS:
            print(f"{depth:<6} {name:<14} " + "".join(f"{best[name, size]:8.1f}" for size in args.sizes))
        ratios = "".join(f"{best['channels_last', size] / best['nchw', size]:8.2f}" for size in args.sizes)
        print(f"{depth:<6} {'ratio cl/nchw':<14} {ratios}")


if __name__ == "__main__":
    main()
