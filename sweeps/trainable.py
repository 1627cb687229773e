"""The Ray Tune function trainable: one cell of the sweep in a Ray worker.

It only computes and calls `tune.report`; the driver's callback does all the
MLflow writing (one process per SQLite file). Exceptions propagate so Tune
marks the trial ERROR (and retries it if trial.max_failures allows).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune

from sweeps.plan import Cell, SweepPlan

FINAL_FLAG = "sweep_final"  # set on the last report: the trial returned normally


def cell_of(config: dict[str, Any], plan: SweepPlan) -> Cell:
    """The cell of a Tune trial config: a grid hands the Cell itself (built once,
    on the driver); a search hands Optuna's sampled values, built here."""
    return config["cell"] if plan.kind == "grid" else plan.search_cell(config)


def train_cell(config: dict[str, Any], plan: SweepPlan) -> None:
    """Run the cell, forward every report to Tune, and end with the returned
    metrics plus the workdir as a checkpoint."""
    cell = cell_of(config, plan)
    workdir = plan.workdir(cell, tune.get_context().get_trial_id())
    result = run_cell(cell, plan, workdir, tune.report)
    final = {**result, FINAL_FLAG: 1, "node_id": ray.get_runtime_context().get_node_id()}
    tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(workdir)))


def run_cell(cell: Cell, plan: SweepPlan, workdir: Path, report: Callable[[dict], None]) -> dict[str, Any]:
    """The cell's trial with `report` for its progress; returns its final metrics (with `iteration`)."""
    import torch  # here, not at module level: the driver never needs torch

    # Ray gives a worker the cores it asked for; torch must not use more.
    torch.set_num_threads(max(1, math.floor(plan.cluster["cpus_per_trial"])))
    workdir.mkdir(parents=True, exist_ok=True)
    forward = _Forward(report)
    result = plan.trial_function_object()(cell.config, workdir=workdir, report=forward)
    return {**result, "iteration": int(result.get("iterations", forward.iteration))}


class _Forward:
    """The `report` given to run_trial: passes metrics on, keeping the last
    iteration in case the trial's result does not name it."""

    def __init__(self, report: Callable[[dict], None]) -> None:
        self.report = report
        self.iteration = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.iteration = int(metrics.get("iteration", self.iteration))
        self.report(dict(metrics))
