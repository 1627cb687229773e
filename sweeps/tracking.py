"""The MLflow writer of a sweep: one parent run, one child run per trial,
in the layout `analysis/layout.py` defines (and analysis/ reads).

Only the driver process writes (a local SQLite file must never have several
writers). Resume: the parent is found again by (sweep name, profile, hash of
the base config); its children are matched to cells by their cell key.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient

from analysis import layout
from sweeps.lease import store_lock
from sweeps.plan import Cell, SweepPlan
from sweeps.redact import redact

PARAMS_PER_BATCH = 100  # MLflow's log_batch limit


def quiet_mlflow() -> None:
    """MLflow and its SQL migrations log at INFO on first use of a store, and it
    prints a "View run" link per ended run on a server; keep the terminal for progress."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SweepTracker:
    """Parent and child runs of one sweep in one experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        quiet_mlflow()
        self.uri, self.experiment = uri, experiment
        with store_lock(uri):  # the first use creates or migrates a SQLite store: one process at a time
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = self._experiment_id(experiment)
        self.parent_id = ""

    def _experiment_id(self, name: str) -> str:
        """The experiment's id (created if new), tagged as model training (`mlflow.experimentKind`;
        MLflow 3.17/3.18's UI does not read the tag, see analysis/layout.py). An older experiment gets it too."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            experiment_id = self.client.create_experiment(name, artifact_location=_artifact_location(self.uri, name))
        else:
            experiment_id = found.experiment_id
        if found is None or found.tags.get(layout.EXPERIMENT_KIND) != layout.EXPERIMENT_KIND_TRAINING:
            self.client.set_experiment_tag(experiment_id, layout.EXPERIMENT_KIND, layout.EXPERIMENT_KIND_TRAINING)
        return experiment_id

    # -- parent ------------------------------------------------------------
    def find_parent(self, plan: SweepPlan) -> Optional[Run]:
        """The newest parent run of this sweep, profile and base config."""
        return layout.latest_parent(self.client, self.experiment_id, plan.name, plan.profile, plan.base_hash)

    def open_parent(self, plan: SweepPlan, existing: Optional[Run]) -> bool:
        """Reuse `existing` (the parent found for a resume) or create one; returns True when reused.
        The parent's params are the base values no cell changes (a swept key has no single value)."""
        if existing is not None:
            self.parent_id = existing.info.run_id
            self.client.update_run(self.parent_id, status=layout.RUNNING)
            if plan.command:  # this invocation's: a resume (sweep.seeds=3) covers the earlier cells too
                self.client.set_tag(self.parent_id, layout.COMMAND, plan.command)
            return True
        tags = layout.parent_tags(plan.name, plan.profile, plan.kind, plan.base_hash, plan.table,
                                  command=plan.command)
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{plan.name}-{plan.profile}")
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, plan.shared_values, existing={})
        self.client.log_text(self.parent_id, plan.config_yaml, layout.CONFIG_FILE)
        return False

    def close_parent(self, status: str, counts: dict[str, int]) -> None:
        """Record the trial counts and end the parent run."""
        self.log_metrics(self.parent_id, {f"trials_{k}": float(v) for k, v in counts.items()}, step=0)
        self.client.set_terminated(self.parent_id, status=status)

    # -- children ----------------------------------------------------------
    def children(self, parent_id: Optional[str] = None) -> list[Run]:
        """All child runs of the parent (any status), oldest first."""
        return layout.children(self.client, self.experiment_id, parent_id or self.parent_id)

    def start_child(self, plan: SweepPlan, cell: Cell, reuse: Optional[Run], invocation: str,
                    extra_tags: dict[str, str], run_name: Optional[str] = None) -> str:
        """A child run for `cell`: the existing `reuse` (set RUNNING again) or a new one.
        Tags, params and config.yaml all come from the cell; `run_name` is what the
        MLflow UI lists (default: the cell key)."""
        tags = {**layout.child_tags(self.parent_id, plan.name, cell.overrides, cell.seed, invocation), **extra_tags}
        trial_values = cell.config.to_dict()
        name = (run_name or cell.key)[:250]
        if reuse is not None and changed_params(reuse.data.params, layout.flatten(trial_values)):
            self._retire(reuse)  # another config (sweep.resume_parent after a change): a run records one
            reuse = None
        if reuse is None:
            run_id = self._create_child(tags, name)
            existing: dict[str, str] = {}
        else:
            run_id, existing = reuse.info.run_id, dict(reuse.data.params)
            self.client.update_run(run_id, status=layout.RUNNING, name=name)
            self.set_tags(run_id, tags)
            if layout.ERROR in reuse.data.tags:  # a re-run of a failed cell: the old error no longer holds
                self.client.delete_tag(run_id, layout.ERROR)
        self._log_params(run_id, layout.flatten(trial_values), existing)
        self.client.log_text(run_id, _yaml(trial_values), layout.CONFIG_FILE)
        return run_id

    def _retire(self, run: Run) -> None:
        """An unfinished run that will not continue: KILLED if a killed driver left it RUNNING."""
        if run.info.status == layout.RUNNING:
            self.finish_child(run.info.run_id, layout.KILLED)

    def _create_child(self, tags: dict[str, str], name: str) -> str:
        """A new child run, at most one per (invocation, cell, search trial): looked up by
        those tags first (a callback replayed after a restart of Tune's driver finds its
        run), then created. MLflow's client replays a create_run whose response was lost,
        and the server may then have made two: the one the client returned is kept, the
        other (no params yet: nothing was logged to it) is deleted."""
        found = self.own_runs(tags)
        if found:
            return found[-1].info.run_id
        run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        for run in self.own_runs(tags):
            if run.info.run_id != run_id and not run.data.params:
                self.client.delete_run(run.info.run_id)
        return run_id

    def own_runs(self, tags: dict[str, str]) -> list[Run]:
        """The child runs of this parent with the same invocation, cell and search trial as `tags`."""
        invocation = layout.quoted(tags[layout.INVOCATION])
        query = f"{layout.children_filter(self.parent_id)} and tags.`{layout.INVOCATION}` = {invocation}"
        runs = layout.search_all(self.client, [self.experiment_id], query)
        same = [run for run in runs
                if all(run.data.tags.get(key) == tags.get(key) for key in (layout.CELL, layout.TRIAL_ID))]
        return sorted(same, key=lambda run: run.info.start_time or 0)

    def finish_child(self, run_id: str, status: str, error: Optional[str] = None) -> None:
        """End a child run; a failure keeps its error text in the `error` tag."""
        if error is not None:
            self.client.set_tag(run_id, layout.ERROR, redact(error)[:layout.ERROR_CHARS])
        self.client.set_terminated(run_id, status=status)

    # -- logging -----------------------------------------------------------
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        """All `metrics` at one step in one request (one SQLite transaction)."""
        stamp = int(time.time() * 1000)
        self._log(run_id, metrics=[Metric(k, float(v), stamp, int(step)) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._log(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_file(self, run_id: str, path: Path, artifact_dir: Optional[str] = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_dir)

    def log_folder(self, run_id: str, path: Path, artifact_dir: str) -> None:
        """Every file under `path`, as artifacts under `artifact_dir`."""
        self.client.log_artifacts(run_id, str(path), artifact_path=artifact_dir)
    def _log_params(self, run_id: str, flat: dict[str, Any], existing: dict[str, str]) -> None:
        """Params not logged yet (MLflow params are write-once; a reused run has most of them)."""
        params = [Param(k, layout.param_text(v)) for k, v in flat.items() if k not in existing]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self._log(run_id, params=params[start:start + PARAMS_PER_BATCH])

    def _log(self, run_id: str, metrics: Iterable[Metric] = (), params: Iterable[Param] = (),
             tags: Iterable[RunTag] = ()) -> None:
        """One request; a password in any param or tag (a URI in an error text) is redacted first."""
        params = [Param(p.key, redact(p.value)) for p in params]
        tags = [RunTag(t.key, redact(t.value)) for t in tags]
        self.client.log_batch(run_id, metrics=list(metrics), params=params, tags=tags, synchronous=True)


def changed_params(logged: dict[str, str], flat: dict[str, Any]) -> list[str]:
    """The keys a run logged with another value than `flat` has (MLflow params are write-once)."""
    return sorted(key for key, value in flat.items()
                  if key in logged and logged[key] != redact(layout.param_text(value)))


def _yaml(values: dict[str, Any]) -> str:
    """The trial config as YAML (the `config.yaml` artifact)."""
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def _artifact_location(uri: str, experiment: str) -> Optional[str]:
    """For a SQLite store, artifacts go beside the database file (mlruns/ next
    to mlflow.db, MLflow's own layout for the default store), so the store and
    its artifacts travel together; other stores choose for themselves."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = Path(uri[len("sqlite:///"):]).resolve()
    return (db_path.parent / "mlruns" / experiment).as_uri()
