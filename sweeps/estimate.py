"""How long a sweep will take, said before the cluster starts: one line from measured figures.

    estimate = the trials, in order, on the parallel slots as they free + fixed overhead

Seconds per trial are measured per profile (`MEASURED`, the one place they
are kept) as seconds per training iteration plus a fixed part (building the
model and data, evaluation, the Ray worker), so `train.iterations=...` on the
command line scales the estimate. Each cell is priced by its own size: its
iterations, and its depth, input side and batch relative to the measured
trial's (`cell_cost`; a speed_accuracy sweep's ResNet-34 and 160-px cells cost
up to 2.4x its 128-px ResNet-18 ones). A profile with no measurement (paper, a
user's own), a cluster we do not size (`cluster.address`) or GPU trials (no
GPU figures are measured yet) say "time unknown".

Machines differ: the same 2-core VM class has come as two CPUs, one training
twice as fast as the other (docs/FIDELITY.md, "Time budget"). So before the
estimate, `machine_probe()` times a fixed workload (~0.5 s) like the one that
dominates a trial (a ResNet-18 training step, on one thread), and the figures
of a profile measured beside that probe scale by probe now / probe then.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from sweeps.plan import SweepPlan

if TYPE_CHECKING:
    from detector.config import ModelConfig, TrialConfig

SWEEP_OVERHEAD_S = 35.0  # Ray start and stop, MLflow store, the report (2-core machine, loaded: a smoke sweep of
# 6 trials x 40 iterations took 75 s wall, 40 s of it in the trials)


@dataclass(frozen=True)
class TrialTime:
    """Measured seconds of one trial of a profile, on one core."""

    per_iteration: float
    fixed: float
    source: str  # where the figure comes from (re-measure and update it here)
    probe: Optional[float] = None  # machine_probe() seconds on that machine; None: not scaled to this one
    depth: int = 18  # the measured trial's ResNet depth, input side (px) and batch: cell_cost's reference
    side: int = 128
    batch: int = 4

    def slowdown(self, probe_now: Optional[float]) -> Optional[float]:
        """This machine's trial time over the measured one's (probe now / probe then); None if either is unknown."""
        return probe_now / self.probe if probe_now and self.probe else None

    def seconds(self, iterations: float, probe_now: Optional[float] = None) -> float:
        """Seconds of a trial of `iterations`, scaled to this machine when both probes are known."""
        return (self.slowdown(probe_now) or 1.0) * (self.fixed + self.per_iteration * iterations)


MEASURED: dict[str, TrialTime] = {
    # 100 iterations: train_seconds 8.7 s (load ~5); in a sweep ~13 s per trial at 40 iterations
    # (Ray worker start, imports, evaluation and the prediction pictures are the fixed part).
    "smoke": TrialTime(per_iteration=0.09, fixed=9.0, source="smoke sweeps, 2-core machine", side=64),
    # The pretrained profile (frozen stem, res2 and BN: a step ~20% cheaper than from scratch) on the
    # slower 2-core VM class (probe ~0.135 s): rounds of two 500-iteration trials in ~125 s
    # (train_seconds 112-125 s, ~8 s fixed), docs/FIDELITY.md E21-E22.
    "cpu": TrialTime(per_iteration=0.234, fixed=8.0, probe=0.135,
                     source="docs/FIDELITY.md E21-E22, 2-core machine"),
}


# The one-time synthetic pretraining (model.pretrained=synthetic, detector/pretrain.py), per
# ResNet-18 step of the default crops (batch 64 of 64 px, both cores) plus rendering the scenes:
# 300 steps in 142 s and 500 in 241 s (2-core machine whose probe reads ~0.135 s,
# docs/FIDELITY.md E19, E22). Deeper or larger crops: scaled by PRETRAIN_DEPTH_COST and
# (crop_size / PRETRAIN_CROP)^2.
PRETRAIN = TrialTime(per_iteration=0.44, fixed=11.0, probe=0.135,
                     source="docs/FIDELITY.md E19 and E22, 2-core machine")
PRETRAIN_DEPTH_COST = {18: 1.0, 34: 2.0, 50: 2.6, 101: 4.8}  # forward+backward FLOPs relative to ResNet-18
PRETRAIN_CROP = 64


# A training iteration's cost against the measured trial's (docs/FIDELITY.md E18: train_seconds of the
# cpu profile, two trials at a time). Along the input side: x0.76 / 1 / 1.49 at 96 / 128 / 160 px
# (pixels x0.56 / 1 / 1.56), i.e. a part that does not grow with the pixels (loading, the loss, the
# optimiser) and one that does: 0.3 + 0.7 x pixels fits the three within 10%. Along depth, ResNet-34 over
# ResNet-18 measured x1.54-1.73 (the FPN and head do not grow); 50 and 101 are their backbones' FLOPs
# ratios (x2.3, x4.3) shrunk the same way, not measured.
DEPTH_COST = {18: 1.0, 34: 1.7, 50: 1.9, 101: 3.3}
PIXEL_FIXED_SHARE = 0.3


def cell_cost(config: "TrialConfig", measured: TrialTime) -> float:
    """A training iteration of `config` in iterations of the measured trial (1.0: the same size)."""
    side = min(config.data.min_size, config.data.max_size)
    pixels = (side / measured.side) ** 2
    depth = DEPTH_COST.get(config.model.depth, 1.0) / DEPTH_COST.get(measured.depth, 1.0)
    return depth * (PIXEL_FIXED_SHARE + (1 - PIXEL_FIXED_SHARE) * pixels) * config.train.batch_size / measured.batch


def trial_seconds(config: "TrialConfig", measured: TrialTime, probe_now: Optional[float] = None) -> float:
    """Seconds of one trial of `config`: the measured fixed part plus its iterations at its own cost."""
    return measured.seconds(config.train.iterations * cell_cost(config, measured), probe_now)


PROBE_IMAGES = 2  # a ResNet-18 training step on PROBE_IMAGES random PROBE_SIZE-px images, one thread
PROBE_SIZE = 128
PROBE_REPEATS = 3  # the median of these steps, after one warm-up step


def machine_probe(repeats: int = PROBE_REPEATS) -> float:
    """Median seconds of one forward + backward pass of a ResNet-18 (random weights) on a
    (PROBE_IMAGES, 3, PROBE_SIZE, PROBE_SIZE) batch, on one thread: convolutions, as in a
    cpu-profile step (~70% of it), so the ratio of two machines' probes is the ratio of their trials."""
    import torch  # here, not at the top: only a profile with a probe pays for importing torch
    import torchvision

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a trial trains on one thread (cluster.cpus_per_trial = 1)
    try:
        model = torchvision.models.resnet18(weights=None)
        images = torch.randn(PROBE_IMAGES, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))
        times = []
        for step in range(repeats + 1):
            start = time.perf_counter()
            model(images).sum().backward()
            if step:  # the first step allocates and picks kernels
                times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def parallel_slots(cluster: dict, cpu_count: Optional[int] = None) -> Optional[int]:
    """Trials a local cluster runs at once (None for an existing cluster we do not size)."""
    if cluster.get("address"):
        return None
    cpus = cluster.get("num_cpus") or cpu_count or os.cpu_count() or 1
    return max(1, math.floor(cpus / max(float(cluster.get("cpus_per_trial") or 1.0), 1e-9)))


def estimate_seconds(seconds: Sequence[float], slots: int) -> float:
    """The trials of these `seconds`, in the plan's order, each started on the slot that frees
    first (as Ray starts the next pending trial), until the last ends; plus the sweep's fixed overhead."""
    loads = [0.0] * max(slots, 1)
    for trial in seconds:
        loads[loads.index(min(loads))] += trial
    return max(loads) + SWEEP_OVERHEAD_S


def estimate_line(plan: SweepPlan, configs: Sequence["TrialConfig"], cpu_count: Optional[int] = None,
                  probe_now: Optional[float] = None) -> str:
    """e.g. "10 trials, about 13 min on 2 CPUs (2 at a time, ~156 s each; profile cpu;
    this machine at 1x the speed of the one measured)" for the trials still to run, `configs`
    (one per trial; each priced by its own size, "~92-276 s each" where they differ).

    `probe_now`: machine_probe() of this machine, measured here when the profile's
    figures have a probe to scale by and none is given.
    """
    trials = len(configs)
    noun = f"{trials} trial" + ("" if trials == 1 else "s")
    measured = MEASURED.get(plan.profile)
    slots = parallel_slots(plan.cluster, cpu_count)
    if trials == 0:
        return f"{noun}: nothing to run"
    why = (f"no measured figures for profile {plan.profile}" if measured is None else
           "an existing Ray cluster" if slots is None else
           "no GPU figures are measured" if plan.cluster.get("gpus_per_trial") else None)
    if why:
        return f"{noun}, time unknown ({why})"
    if measured.probe and probe_now is None:
        probe_now = machine_probe()
    seconds = [trial_seconds(config, measured, probe_now) for config in configs]
    pretraining = pretraining_seconds(plan, probe_now)
    total = estimate_seconds(seconds, slots) + pretraining
    cpus = plan.cluster.get("num_cpus") or cpu_count or os.cpu_count() or 1
    slowdown = measured.slowdown(probe_now)
    speed = f"; this machine at {1 / slowdown:.2g}x the speed of the one measured" if slowdown else ""
    once = f" after ~{pretraining:.0f} s of one-time pretraining" if pretraining else ""
    low, high = round(min(seconds)), round(max(seconds))
    each = f"~{low} s each" if low == high else f"~{low}-{high} s each"
    return (f"{noun}, about {_duration(total)} on {cpus} CPUs ({min(slots, trials)} at a time, "
            f"{each}{once}; profile {plan.profile}{speed})")


def pretraining_seconds(plan: SweepPlan, probe_now: Optional[float] = None) -> float:
    """Seconds of the synthetic pretrainings the sweep still needs (0 when cached or not used)."""
    from detector.config import SYNTHETIC_WEIGHTS
    from detector.pretrain import pretrained_path

    configs = [cell.config for cell in plan.cells] or [plan.base_config]
    pending = {pretrained_path(c.model, c.data): c.model for c in configs if c.model.pretrained == SYNTHETIC_WEIGHTS}
    return sum(PRETRAIN.seconds(_pretrain_steps(model), probe_now) for path, model in pending.items()
               if not path.is_file())


def _pretrain_steps(model: "ModelConfig") -> float:
    """The pretraining's steps in ResNet-18 steps of PRETRAIN_CROP-px crops (what PRETRAIN measured)."""
    scale = PRETRAIN_DEPTH_COST.get(model.depth, 1.0) * (model.pretrain.crop_size / PRETRAIN_CROP) ** 2
    return scale * model.pretrain.for_depth(model.depth).steps


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
