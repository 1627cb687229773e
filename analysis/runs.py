"""Read a sweep from MLflow, once: the parent run, its table declaration, one plain record per child.

The run layout (tag and metric names, the cell key, the queries) is
analysis/layout.py's, shared with the writer (sweeps/tracking.py) and the
test fixtures; this module only turns those runs into plain records.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis import layout
from analysis.declaration import TableDeclaration
from analysis.errors import AnalysisError, DeclarationError
from analysis.parse import parse_table
from analysis.records import TrialRecord
from analysis.sweep import SweepRecord

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SWEEP_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# While analysis/ talks to MLflow: fail fast on an unreachable server (the
# defaults, 7 retries with backoff and a 120 s timeout, turn a typo in the URI
# into minutes of silence) and keep download progress bars off the terminal.
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@contextlib.contextmanager
def store_errors(uri: str, action: str = "read") -> Iterator[None]:
    """Turn MLflow/network errors into a one-line AnalysisError; CLIENT_ENV meanwhile."""
    saved = {name: os.environ.get(name) for name in CLIENT_ENV}
    for name, value in CLIENT_ENV.items():
        os.environ.setdefault(name, value)  # a user's own setting wins
    try:
        yield
    except (MlflowException, OSError) as error:  # OSError covers requests' errors
        raise AnalysisError(f"cannot {action} MLflow store {uri}: {_first_line(error)}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def open_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for `tracking_uri` (None: MLflow's default); a local store must exist.

    Reading never creates a store: MLflow would silently make an empty
    sqlite file or mlruns/ folder for a mistyped path.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()  # checked before the client, which creates it
    path = _local_store_path(uri)
    if path is not None and not path.exists():
        raise AnalysisError(f"no MLflow store at {uri} (pass --tracking-uri)")
    with store_errors(uri):
        return MlflowClient(uri)


def load_sweep(
    client: MlflowClient,
    sweep_or_run_id: str,
    experiment: str = layout.EXPERIMENT,
    profile: str | None = None,
) -> SweepRecord:
    """The latest parent run of a sweep name (of `profile`, if given), or the
    parent run with that id (a 32-hex-digit run id), and its trials."""
    with store_errors(client.tracking_uri):
        if RUN_ID.match(sweep_or_run_id):
            parent = get_parent(client, sweep_or_run_id)
        else:
            parent = find_parent(client, sweep_or_run_id, experiment, profile)
        runs = layout.children(client, parent.info.experiment_id, parent.info.run_id)
    tags = parent.data.tags
    return SweepRecord(
        run_id=parent.info.run_id,
        name=tags.get(layout.NAME, ""),
        profile=tags.get(layout.PROFILE, ""),
        kind=tags.get(layout.KIND, ""),
        status=parent.info.status,
        trials=[trial_record(run) for run in layout.latest_per_cell(runs).values()],
        table=declaration_of(parent),
        tags=dict(tags),
        experiment_id=parent.info.experiment_id,
    )


def declaration_of(parent: Run) -> TableDeclaration:
    """The table declaration the parent run carries (none: a table of the trials)."""
    try:
        return parse_table(layout.table_of(parent))
    except DeclarationError as error:  # e.g. logged by an older version of the schema
        raise AnalysisError(f"parent run {parent.info.run_id}: {error}") from None


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run with this id; AnalysisError (one line) when there is none."""
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise AnalysisError(f"no run with id {run_id}") from None
        raise


def get_parent(client: MlflowClient, run_id: str) -> Run:
    """The run with this id, which must be a sweep's parent."""
    run = get_run(client, run_id)
    role = run.data.tags.get(layout.ROLE)
    if role != layout.ROLE_PARENT:
        raise AnalysisError(f"run {run_id} is not a sweep's parent run ({layout.ROLE}={role})")
    return run


def find_parent(client: MlflowClient, sweep: str, experiment: str, profile: str | None = None) -> Run:
    """The most recently started parent run of `sweep` (and `profile`) in `experiment`."""
    for name, value in (("sweep name", sweep), ("profile", profile or "x")):
        if not SWEEP_NAME.match(value):  # the value goes into a filter string
            raise AnalysisError(f"invalid {name} {value!r} (letters, digits, _ . - only)")
    experiment_id = _experiment_id(client, experiment)
    parent = layout.latest_parent(client, experiment_id, sweep, profile)
    if parent is None:
        names = ", ".join(sweep_names(client, experiment_id)) or "none"
        which = f"sweep {sweep!r}" + (f" with profile {profile!r}" if profile else "")
        raise AnalysisError(f"no runs of {which} in experiment {experiment!r} (sweeps with runs: {names})")
    return parent


def sweep_names(client: MlflowClient, experiment_id: str) -> list[str]:
    """Sorted names of the sweeps that have a parent run in the experiment."""
    parents = layout.search_all(client, [experiment_id], layout.parent_filter())
    return sorted({run.data.tags.get(layout.NAME, "?") for run in parents})


def trial_record(run: Run) -> TrialRecord:
    """The plain record of one child run."""
    tags = run.data.tags
    seed = tags.get(layout.SEED)
    return TrialRecord(
        run_id=run.info.run_id,
        cell=tags.get(layout.CELL, run.info.run_id),
        overrides=layout.decode_overrides(tags.get(layout.OVERRIDES)),
        seed=int(seed) if seed not in (None, "", "None") else None,
        status=run.info.status,
        error=tags.get(layout.ERROR, ""),
        metrics={k: v for k, v in run.data.metrics.items() if k in layout.FINAL_METRICS},
        params=dict(run.data.params),
        start_time=run.info.start_time or 0,
        early_stopped=tags.get(layout.EARLY_STOPPED) == "true",
        quiet_timing=tags.get(layout.TIMING) == layout.QUIET_TIMING,
        speed_spread=run.data.metrics.get(layout.SPEED_SPREAD),
        per_class=layout.per_class_of(run.data.metrics),
    )


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()
                          if not e.name.startswith(layout.LEASE_PREFIX)) or "none"
        raise AnalysisError(f"no experiment {name!r} (experiments: {names})")
    return experiment.experiment_id


def _local_store_path(uri: str) -> Path | None:
    """The file or folder of a sqlite / file store URI; None for servers and others."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        if not uri.startswith("sqlite:///") or ":memory:" in uri:
            return None
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme == "file" else uri)
    return None


def _first_line(error: BaseException) -> str:
    """The gist of an MLflow/network error: the OS reason if there is one
    ("Connection refused" rather than urllib3's nested retry report), else its
    first line, at most 200 characters."""
    text = str(error).strip()
    reason = re.search(r"\[Errno -?\d+\] ([^\"')]+)|(Read timed out)", text)
    if reason:
        return reason.group(1) or reason.group(2)
    lines = text.splitlines()
    return lines[0][:200] if lines else type(error).__name__
