"""A trial's training loop against the bare training step, same model, same run.

The bare step is what the network can do: `Trainer.step` on one batch already
on the device, repeated. The loop is what a trial gets: `Trainer.fit` over the
trial's own loader (its workers, its collate, pinned memory on a GPU, the copy
to the device, the loop's logging). Both start from the same initial model;
they alternate in rounds, so a slow period of the machine hits both alike.
Prints images/s of each round, the medians, and loop / step (1.0: the loop
runs at the network's speed; issue 25's goal on a GPU is >= 0.9).

    python benchmarks/loop_speed.py                                   # cpu profile, 1 thread
    python benchmarks/loop_speed.py profile=paper model.pretrained=null model.frozen_bn=false \\
        data.synthetic.image_size=600 data.num_train_images=256 train.amp=true train.channels_last=true \\
        data.num_workers=8 --device cuda --steps 30
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
from detector.pretrain import resolve_weights
from detector.train import Trainer, seed_everything, to_device
from sweeps.compose import trial_config


def bare_step_rate(trainer: Trainer, batch, steps: int) -> float:
    """Images/s of `steps` SGD steps on one batch that is already on the device."""
    on_device = to_device(batch, trainer.device)
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(on_device)
    synchronize(trainer.device)
    return steps * len(batch[0]) / (time.perf_counter() - start)


def loop_rate(trainer: Trainer, batches, steps: int) -> float:
    """Images/s of `steps` iterations of the trial's loop (`Trainer.fit`: loading, copy, logging)."""
    trainer.cfg = dataclasses.replace(trainer.cfg, iterations=trainer.iteration + steps)
    synchronize(trainer.device)
    start = time.perf_counter()
    trainer.fit(batches, report=lambda metrics: None)
    synchronize(trainer.device)
    return steps * trainer.cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the trial config (default: the cpu profile)")
    parser.add_argument("--steps", type=int, default=20, help="steps per round of each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = resolve_weights(trial_config(args.overrides))  # model.pretrained=synthetic: the cached file
    seed_everything(cfg.train.seed)
    train_set, _ = build_datasets(cfg.data)
    base = build_model(cfg.model, cfg.loss, train_set.num_classes)
    step_trainer = Trainer(copy.deepcopy(base), cfg.train, device)
    loop_trainer = Trainer(base, cfg.train, device)
    batches = build_train_loader(train_set, cfg.train.batch_size, cfg.data.num_workers, cfg.train.seed,
                                 pin_memory=device.type == "cuda")
    batch = next(batches)
    bare_step_rate(step_trainer, batch, 2)  # warm-up: kernels, allocator, the loader's workers
    loop_rate(loop_trainer, batches, 2)
    rates: dict[str, list[float]] = {"step": [], "loop": []}
    for index in range(args.rounds):
        rates["step"].append(bare_step_rate(step_trainer, batch, args.steps))
        rates["loop"].append(loop_rate(loop_trainer, batches, args.steps))
        print(f"round {index + 1}: bare step {rates['step'][-1]:7.1f} img/s   loop {rates['loop'][-1]:7.1f} img/s",
              flush=True)
    step, loop = statistics.median(rates["step"]), statistics.median(rates["loop"])
    print(f"median: bare step {step:.1f} img/s, loop {loop:.1f} img/s; loop / step {loop / step:.2f} "
          f"({args.rounds} rounds of {args.steps} steps, batch {cfg.train.batch_size}, {args.device}, "
          f"workers {cfg.data.num_workers}, amp {cfg.train.amp}, channels_last {cfg.train.channels_last})")


if __name__ == "__main__":
    main()
