"""Inference speed of a trained model, measured on its own (a quiet phase).

A trial's own ms/image is taken while sibling trials train on the other
cores, which makes it noisy and biased (on 2 cores, 96 px once timed slower
than 128 px). `measure_speed` times a saved model with nothing else running:
`repeats` passes over the same validation images, each a mean over
`images` (default `eval.timing_images`) after `eval.warmup_images` untimed
ones, in the memory format `eval.channels_last` says; the median pass is the
figure and the relative spread says how far to trust it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from detector.config import TrialConfig
from detector.data.loader import build_datasets
from detector.evaluate import time_inference, timing_inputs
from detector.model import load_trained
from detector.train import resolve_device


@dataclass(frozen=True)
class Speed:
    """ms/image of `repeats` timing passes."""

    passes: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.passes)

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median of the passes: 0.05 is a 5% spread."""
        return (max(self.passes) - min(self.passes)) / self.median


def load_for_timing(cfg: TrialConfig, model_path: Path, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """(the model saved at `model_path` (run_trial's model.pt) on `device`, in the memory format
    `eval.channels_last` says, converted once here rather than once per pass; `cfg`'s validation set)."""
    _, val_set = build_datasets(cfg.data, train=False)
    model = load_trained(cfg.model, cfg.loss, val_set.num_classes, model_path)
    memory = torch.channels_last if cfg.eval.channels_last else torch.contiguous_format
    return model.to(device).to(memory_format=memory).eval(), val_set


@torch.inference_mode()
def measure_speed(cfg: TrialConfig, model_path: Path, repeats: int = 5, threads: int = 1,
                  images: Optional[int] = None) -> Speed:
    """Time the model saved at `model_path` (run_trial's model.pt) on `cfg`'s validation
    images: `images` timed per pass (None: `eval.timing_images`)."""
    torch.set_num_threads(threads)
    device = resolve_device(cfg.train.device)
    model, val_set = load_for_timing(cfg, model_path, device)
    inputs, warmup = timing_inputs(val_set, cfg.eval, images)

    def one_pass() -> float:
        return time_inference(model, inputs, device, warmup=warmup, batch=cfg.eval.timing_batch)

    one_pass()  # untimed: caches, allocator
    return Speed(tuple(one_pass() for _ in range(repeats)))
