"""How long a sweep will take, said before the cluster starts: one line from measured figures.

    estimate = ceil(trials / parallel slots) * seconds per trial + fixed overhead

Seconds per trial are measured per profile (`MEASURED`, the one place they
are kept) as seconds per training iteration plus a fixed part (building the
model and data, evaluation, the Ray worker), so `train.iterations=...` on the
command line scales the estimate. A profile with no measurement (paper, a
user's own) or a cluster we do not size (`cluster.address`) says "time unknown".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence

from sweeps.plan import SweepPlan

SWEEP_OVERHEAD_S = 35.0  # Ray start and stop, MLflow store, the report (2-core machine, loaded: a smoke sweep of
# 6 trials x 40 iterations took 75 s wall, 40 s of it in the trials)


@dataclass(frozen=True)
class TrialTime:
    """Measured seconds of one trial of a profile, on one core."""

    per_iteration: float
    fixed: float
    source: str  # where the figure comes from (re-measure and update it here)

    def seconds(self, iterations: int) -> float:
        return self.fixed + self.per_iteration * iterations


MEASURED: dict[str, TrialTime] = {
    # 100 iterations: train_seconds 8.7 s (load ~5); in a sweep ~13 s per trial at 40 iterations
    # (Ray worker start, imports, evaluation and the prediction pictures are the fixed part).
    "smoke": TrialTime(per_iteration=0.09, fixed=9.0, source="issue 11, smoke sweeps, 2-core machine"),
    # The main command from a fresh clone on a quiet 2-core machine (2026-11-22): 14 trials of 500
    # iterations, two at a time, ~95 s each (0.17 s per step with both cores busy, ~10 s fixed);
    # the whole command 683 s with data generation, Ray and the report. Under load trials take 2-4x longer.
    "cpu": TrialTime(per_iteration=0.17, fixed=10.0, source="main command, fresh clone, quiet 2-core machine"),
}


def parallel_slots(cluster: dict, cpu_count: Optional[int] = None) -> Optional[int]:
    """Trials a local cluster runs at once (None for an existing cluster we do not size)."""
    if cluster.get("address"):
        return None
    cpus = cluster.get("num_cpus") or cpu_count or os.cpu_count() or 1
    return max(1, math.floor(cpus / max(float(cluster.get("cpus_per_trial") or 1.0), 1e-9)))


def estimate_seconds(trials: int, slots: int, trial_seconds: float) -> float:
    """ceil(trials / slots) waves of one trial each, plus the sweep's fixed overhead."""
    return math.ceil(trials / max(slots, 1)) * trial_seconds + SWEEP_OVERHEAD_S


def estimate_line(plan: SweepPlan, trials: int, cpu_count: Optional[int] = None) -> str:
    """e.g. "14 trials, about 12 min on 2 CPUs (2 at a time, ~100 s each; profile cpu)"."""
    noun = f"{trials} trial" + ("" if trials == 1 else "s")
    measured = MEASURED.get(plan.profile)
    slots = parallel_slots(plan.cluster, cpu_count)
    if trials == 0:
        return f"{noun}: nothing to run"
    if measured is None or slots is None:
        why = f"no measured figures for profile {plan.profile}" if measured is None else "an existing Ray cluster"
        return f"{noun}, time unknown ({why})"
    per_trial = measured.seconds(_iterations(plan))
    total = estimate_seconds(trials, slots, per_trial)
    cpus = plan.cluster.get("num_cpus") or cpu_count or os.cpu_count() or 1
    return (f"{noun}, about {_duration(total)} on {cpus} CPUs ({min(slots, trials)} at a time, "
            f"~{per_trial:.0f} s each; profile {plan.profile})")


def _iterations(plan: SweepPlan) -> int:
    """Training iterations per trial: the mean over the grid's cells, else the base config's."""
    counts: Sequence[int] = [cell.config.train.iterations for cell in plan.cells]
    return round(sum(counts) / len(counts)) if counts else int(plan.base["train"]["iterations"])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
