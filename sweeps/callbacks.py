"""The Tune callback that records trials in MLflow, from the driver process.

Trials only call `tune.report`; Tune hands every result to this callback in
the driver, so exactly one process writes the tracking store. A grid cell
whose child run exists from an earlier, unfinished invocation gets that run
back instead of a new one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from mlflow.entities import Run
from ray import cloudpickle, tune
from ray.tune.experiment import Trial

from analysis import layout
from analysis.layout import FAILED, FINISHED, KILLED
from sweeps import environment
from sweeps.plan import Cell, SweepPlan
from sweeps.progress import constant_overrides, trial_label
from sweeps.redact import conceal, reveal
from sweeps.tracking import SweepTracker
from sweeps.trainable import FINAL_FLAG

# What a trial reports beside the metrics: never logged as MLflow metrics.
NOT_METRICS = {"iteration", "iterations", FINAL_FLAG, "node_id", "done", "training_iteration", "trial_id",
               "time_this_iter_s", "time_total_s", "timestamp", "time_since_restore",
               "iterations_since_restore", "pid", "date", "hostname", "node_ip", "config",
               "experiment_tag", "checkpoint_dir_name", "should_checkpoint", layout.DEVICE_RESULT}


class MlflowCallback(tune.Callback):
    """Child run per trial: params and config.yaml at start, metrics per
    report, checkpoint and metrics.json at the end, FAILED with the error.

    Keeps no tally of its own: what happened is read back from MLflow, so it
    also works where Tune runs it on the cluster (Ray Client, `ray://`).

    A store that fails (a server down past its retries, a full disk) must not
    end the sweep with Tune's traceback, nor fail a trial that trained well
    (Tune turns an error in `on_trial_complete` into the trial's): the first
    such error is kept in `broken`, nothing more is written, and `stopper()`
    ends the Tune run; the driver then says so in one line."""

    def __init__(self, plan: SweepPlan, tracker: SweepTracker, previous: dict[str, Run], invocation: str,
                 environment_tags: Optional[dict[str, str]] = None) -> None:
        self.plan = plan
        self.tracker = tracker
        self.invocation = invocation
        self.previous = previous  # cell key -> unfinished child run of an earlier invocation
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self.cells: dict[str, Cell] = {}  # Tune trial id -> its cell (a search's is built once, here)
        # versions and git state, the same for every trial (env.device and data.digest are per trial)
        self.environment = {k: v for k, v in (environment_tags or {}).items()
                            if k not in (layout.ENV_DEVICE, layout.DATA_DIGEST)}
        self.constant = constant_overrides(plan)  # overrides no trial's name needs to show
        self.broken: Optional[BaseException] = None  # the store's first error; then nothing more is written

    def stopper(self) -> tune.Stopper:
        """Ends the Tune run once the store has failed (the trials could not be recorded)."""
        return _StopWhenBroken(self)

    def _guarded(self, hook: Callable[..., None], *args: Any) -> None:
        """Run a hook unless the store already failed; keep its first error instead of raising."""
        if self.broken is not None:
            return
        try:
            hook(*args)
        except Exception as error:  # noqa: BLE001 - kept, and reported by the driver in one line
            self.broken = error

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: the MLflow client is rebuilt from its URI where Tune unpickles this."""
        state = dict(self.__dict__)
        tracker = state.pop("tracker")
        # Tune pickles its callbacks into storage_path: the URI goes without its password
        state["_store"] = (conceal(tracker.uri), tracker.experiment, tracker.parent_id)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        uri, experiment, parent_id = state.pop("_store")
        self.__dict__.update(state)
        self.tracker = SweepTracker(reveal(uri), experiment)
        self.tracker.parent_id = parent_id

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guarded(self._run_of, trial)

    def _run_of(self, trial: Trial) -> str:
        """The trial's child run, opened on first sight (a trial whose worker never
        started reaches on_trial_error without on_trial_start); retries keep theirs."""
        if trial.trial_id not in self.runs:
            self._open_run(trial)
        return self.runs[trial.trial_id]

    def _open_run(self, trial: Trial) -> None:
        cell = self.cells[trial.trial_id] = self.plan.cell_of(trial.config)
        extra = {**self.environment, layout.DATA_DIGEST: environment.data_digest(cell.config.data)}
        if self.plan.search is not None:
            extra[layout.TRIAL_ID] = trial.trial_id
        reuse = self.previous.pop(cell.key, None)  # a search has no previous cells to reuse
        name = trial_label(cell.overrides, cell.seed, self.constant, self.plan.seeds > 1)
        self.runs[trial.trial_id] = self.tracker.start_child(self.plan, cell, reuse, self.invocation, extra, name)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        self._guarded(self._record_result, trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guarded(self._record_completion, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guarded(self._record_error, trial)

    def _record_result(self, trial: Trial, result: dict) -> None:
        run_id = self._run_of(trial)
        metrics = numeric_metrics(result)
        if metrics:
            self.tracker.log_metrics(run_id, metrics, step=int(result.get("iteration", 0)))
        if result.get(FINAL_FLAG):
            tags = {layout.NODE_ID: result.get("node_id", ""), layout.NODE_IP: result.get("node_ip", "")}
            if result.get(layout.DEVICE_RESULT):  # what the trial ran on (a trial function may not say)
                tags[layout.ENV_DEVICE] = str(result[layout.DEVICE_RESULT])
            self.tracker.set_tags(run_id, tags)

    def _record_completion(self, trial: Trial) -> None:
        run_id = self._run_of(trial)
        if (trial.last_result or {}).get(FINAL_FLAG):
            self._log_outputs(run_id, trial.checkpoint, int(trial.last_result.get("iteration", 0)))
            status = FINISHED
        elif self.plan.search is not None:  # stopped by ASHA: a finished, shorter trial
            self.tracker.set_tags(run_id, {layout.EARLY_STOPPED: "true"})
            status = FINISHED
        else:  # a grid trial stopped before its end: the sweep was interrupted
            status = KILLED
        self.tracker.finish_child(run_id, status)
        if status == FINISHED:
            self._drop_workdir(trial)

    def _record_error(self, trial: Trial) -> None:
        self.tracker.finish_child(self._run_of(trial), FAILED, error=trial_error_text(trial))

    def _drop_workdir(self, trial: Trial) -> None:
        """A finished trial's folder (model.pt, metrics.json) is in MLflow now.
        On a multi-machine cluster the folder may be on another node: then there is nothing here."""
        workdir = self.plan.workdir(self.cells[trial.trial_id], trial.trial_id)
        if workdir.is_dir():
            shutil.rmtree(workdir)

    def _log_outputs(self, run_id: str, checkpoint: Optional[tune.Checkpoint], step: int) -> None:
        """From the trial's final checkpoint (its workdir): checkpoint/model.pt, metrics.json,
        per_class.json (also as `AP/<category>` metrics), pr_curves.png and predictions/."""
        if checkpoint is None:
            return
        with checkpoint.as_directory() as folder:
            model_dir, model_name = layout.MODEL_FILE.rsplit("/", 1)  # the trial writes model.pt in its workdir
            model = Path(folder) / model_name
            if model.is_file():
                self.tracker.log_file(run_id, model, model_dir)
            for name in (layout.METRICS_FILE, layout.PER_CLASS_FILE, layout.PR_CURVES_FILE):
                if (Path(folder) / name).is_file():
                    self.tracker.log_file(run_id, Path(folder) / name)
            if (Path(folder) / layout.PREDICTIONS_DIR).is_dir():
                self.tracker.log_folder(run_id, Path(folder) / layout.PREDICTIONS_DIR, layout.PREDICTIONS_DIR)
            per_class = per_class_metrics(Path(folder) / layout.PER_CLASS_FILE)
            if per_class:
                self.tracker.log_metrics(run_id, per_class, step=step)


class _StopWhenBroken(tune.Stopper):
    """Tune's stop condition: the MLflow callback's store has failed."""

    def __init__(self, callback: MlflowCallback) -> None:
        self.callback = callback

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.callback.broken is not None


def per_class_metrics(path: Path) -> dict[str, float]:
    """`AP/<category>` metrics from a trial's per_class.json ({} when it wrote none)."""
    if not path.is_file():
        return {}
    values = json.loads(path.read_text())
    return {layout.per_class_metric(name): float(ap) for name, ap in values.items()}


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The trial's own numbers in a Tune result (Tune adds bookkeeping keys)."""
    return {k: float(v) for k, v in result.items()
            if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def trial_error_text(trial: Trial) -> str:
    """`ExceptionType: message` of the trial's original exception (not Ray's wrapper).

    Read from the driver-side copy Tune writes just before `on_trial_error`
    (`trial.get_pickled_error()` reads the storage copy, not synced yet)."""
    pickled = trial.pickled_error_file
    if pickled and Path(pickled).is_file():
        error = cloudpickle.loads(Path(pickled).read_bytes())
        cause = getattr(error, "cause", None) or error
        return f"{type(cause).__name__}: {cause}".strip()
    text = Path(trial.error_file).read_text() if trial.error_file and Path(trial.error_file).is_file() else ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trial failed; Tune recorded no error"
