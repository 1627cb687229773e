"""The Ray Tune experiment of one sweep invocation: the trainable with its
resources, the grid or the Optuna search, retries, callbacks, quiet output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ray import tune

from sweeps.plan import SweepPlan
from sweeps.space import Cell
from sweeps.trainable import train_cell


@dataclass
class Experiment:
    """Everything Tune needs beyond the plan."""

    name: str  # unique per invocation: resume is ours (MLflow), not Tune's
    storage_path: str  # absolute; trial checkpoints land here before MLflow
    cpus_per_trial: float
    gpus_per_trial: float
    max_failures: int
    callbacks: list[tune.Callback]
    stopper: Optional[tune.Stopper] = None


class StopAfterTrials(tune.Callback, tune.Stopper):
    """Ends the whole experiment once `count` trials have completed (a test
    hook standing in for Ctrl-C: the trials still running are cut short).
    A callback too, because a Stopper sees results, not completions."""

    def __init__(self, count: int) -> None:
        self.count, self.completed = count, 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.completed += 1

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.completed >= self.count


def grid_tuner(plan: SweepPlan, cells: list[Cell], experiment: Experiment) -> tune.Tuner:
    """One trial per pending cell; the config names the cell by its key."""
    space = {"cell": tune.grid_search([cell.key for cell in cells])}
    return tune.Tuner(_trainable(plan, experiment), param_space=space,
                      tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
                      run_config=_run_config(experiment))


def search_tuner(plan: SweepPlan, searcher: Any, scheduler: Any, num_samples: int,
                 experiment: Experiment) -> tune.Tuner:
    """`num_samples` trials proposed by `searcher`, stopped early by `scheduler`."""
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                     reuse_actors=True)
    return tune.Tuner(_trainable(plan, experiment), tune_config=tune_config, run_config=_run_config(experiment))


def _trainable(plan: SweepPlan, experiment: Experiment) -> Any:
    """train_cell with the plan put in Ray's object store once, and per-trial resources."""
    resources = {"cpu": experiment.cpus_per_trial, "gpu": experiment.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_cell, plan=plan), resources)


def _run_config(experiment: Experiment) -> tune.RunConfig:
    return tune.RunConfig(
        name=experiment.name,
        storage_path=experiment.storage_path,
        callbacks=experiment.callbacks,
        stop=experiment.stopper,
        failure_config=tune.FailureConfig(max_failures=experiment.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=0,  # our rich display replaces Tune's tables
        log_to_file=False,
    )
