"""The Ray Tune run of one sweep invocation: the trainable with its resources,
the grid or the Optuna search, retries, callbacks, quiet output.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ray import tune

from sweeps.plan import Cell, SweepPlan
from sweeps.trainable import train_cell


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


def grid_tuner(plan: SweepPlan, cells: Sequence[Cell], run: tune.RunConfig) -> tune.Tuner:
    """One trial per pending cell; the config carries the Cell (its trial config built once)."""
    space = {"cell": tune.grid_search(list(cells))}
    return tune.Tuner(_trainable(plan), param_space=space,
                      tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True,
                                                  trial_dirname_creator=_dirname),
                      run_config=run)


def search_tuner(plan: SweepPlan, searcher: Any, scheduler: Any, run: tune.RunConfig) -> tune.Tuner:
    """`num_samples` trials proposed by `searcher`, stopped early by `scheduler`."""
    assert plan.search is not None
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=plan.search.num_samples,
                                  reuse_actors=True, trial_dirname_creator=_dirname)
    return tune.Tuner(_trainable(plan), tune_config=tune_config, run_config=run)


def run_config(plan: SweepPlan, name: str, storage_path: Optional[str], callbacks: list,
               stopper: Optional[tune.Stopper]) -> tune.RunConfig:
    """Tune's settings: where checkpoints go, retries, our callbacks, no Tune output."""
    return tune.RunConfig(
        name=name,  # unique per invocation: resume is ours (MLflow), not Tune's
        storage_path=storage_path,
        callbacks=callbacks,
        stop=stopper,
        failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=0,  # our rich display replaces Tune's tables
        log_to_file=False,
    )


def _trainable(plan: SweepPlan) -> Any:
    """train_cell with the plan put in Ray's object store once, and per-trial resources."""
    resources = {"cpu": float(plan.cluster["cpus_per_trial"]), "gpu": float(plan.cluster.get("gpus_per_trial") or 0)}
    return tune.with_resources(tune.with_parameters(train_cell, plan=plan), resources)


def _dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"
