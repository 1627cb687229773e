"""The Ray Tune function trainable: one cell of the sweep in a Ray worker.

It only computes and calls `tune.report`; the driver's callback does all the
MLflow writing (one process per SQLite file). Exceptions propagate so Tune
marks the trial ERROR (and retries it if trial.max_failures allows).
"""

from __future__ import annotations

import math
from typing import Any

import ray
from ray import tune

from detector.config import TrialConfig
from sweeps.plan import SweepPlan

FINAL_FLAG = "sweep_final"  # set on the last report: the trial returned normally


def train_cell(config: dict[str, Any], plan: SweepPlan) -> None:
    """Rebuild the cell's trial config, run it, forward every report to Tune,
    and end with the returned metrics plus the workdir as a checkpoint."""
    import torch  # here, not at module level: the driver never needs torch

    cell = plan.cell_for(config)
    trial_cfg = TrialConfig.from_dict(cell.trial_values(plan.base))
    # Ray gives a worker the cores it asked for; torch must not use more.
    torch.set_num_threads(max(1, math.floor(plan.cpus_per_trial)))
    workdir = plan.workdir(cell, tune.get_context().get_trial_id())
    workdir.mkdir(parents=True, exist_ok=True)
    forward = _Forward()
    result = plan.trial_function_object()(trial_cfg, workdir=workdir, report=forward)
    final = {**result, "iteration": int(result.get("iterations", forward.iteration)), FINAL_FLAG: 1,
             "node_id": ray.get_runtime_context().get_node_id()}
    tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(workdir)))


class _Forward:
    """The `report` given to run_trial: passes metrics on to Tune, keeping the
    last iteration in case the trial's result does not name it."""

    def __init__(self) -> None:
        self.iteration = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.iteration = int(metrics.get("iteration", self.iteration))
        tune.report(dict(metrics))
