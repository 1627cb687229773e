"""Training step time of the cpu profile, NCHW against channels_last.

The lever left on the main command's 15-minute budget (docs/FIDELITY.md,
"The main command"): training with the model in channels_last, the format
the timed inference already uses (E13). Two copies of the same initial
model, one per memory format, each take `--steps` SGD steps on the same
batches of the profile's training set, the formats interleaved step by step
(the VM's slow periods then hit both alike); prints the median and minimum
step time of each and the ratio channels_last / NCHW (< 1: faster). The
numerics differ (another kernel order), so the trained models are not
identical: adopting it needs the seeded sweeps run again.

    python benchmarks/train_memory_format.py                 # cpu profile, 1 thread, 40 steps
    python benchmarks/train_memory_format.py model.depth=34 --steps 20
    python benchmarks/train_memory_format.py profile=paper model.pretrained=null model.frozen_bn=false \
        data.synthetic.image_size=600 data.num_train_images=64 --steps 20 --device cuda   # AMP: train.amp
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from detector.data.loader import build_datasets, build_train_loader
from detector.evaluate import synchronize
from detector.model import build_model
from detector.train import Trainer, seed_everything
from sweeps.compose import trial_config

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def step_times(overrides: list[str], steps: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each training step per memory format, interleaved (the first step of each not counted)."""
    cfg = trial_config(overrides)
    seed_everything(cfg.train.seed)
    train_set, _ = build_datasets(cfg.data)
    base = build_model(cfg.model, cfg.loss, train_set.num_classes)
    nchw = dataclasses.replace(cfg.train, channels_last=False)  # the format is set here, per copy
    trainers = {name: Trainer(copy.deepcopy(base).to(memory_format=memory), nchw, device)
                for name, memory in FORMATS.items()}
    batches = build_train_loader(train_set, cfg.train.batch_size, 0, cfg.train.seed)
    times: dict[str, list[float]] = {name: [] for name in FORMATS}
    for index in range(steps + 1):
        batch = next(batches)
        for name, trainer in trainers.items():
            synchronize(device)
            start = time.perf_counter()
            trainer.step(batch)
            synchronize(device)
            if index:  # the first step of each builds kernels and caches
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the trial config (default: the cpu profile)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times = step_times(args.overrides, args.steps, torch.device(args.device))
    for name, values in times.items():
        print(f"{name:14} median {1000 * statistics.median(values):6.1f} ms   min {1000 * min(values):6.1f} ms")
    ratio = statistics.median(times["channels_last"]) / statistics.median(times["nchw"])
    print(f"channels_last / NCHW (medians): {ratio:.2f}  ({args.steps} steps each, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
