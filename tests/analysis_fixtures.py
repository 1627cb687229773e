"""Log a fake sweep with the real MLflow client, through analysis/layout.py.

A parent run (layout.parent_tags, with the table declaration of the repo's
conf/sweep/<name>.yaml; params = the flattened base config; artifact
config.yaml) and one child per trial (layout.child_tags; params = the
flattened trial config as layout.param_text writes them; per-step loss and
AP, final metrics at the last step; FAILED with an `error` tag). Reusable by
any test that needs a sweep in a tracking store.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import pytest
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis import layout

LAST_STEP = 20
SHM = Path("/dev/shm")
SWEEP_DIR = Path(__file__).resolve().parents[1] / "conf" / "sweep"
BASE_CONFIG: dict[str, Any] = {  # the trial config a child logs (flattened) as params
    "loss": {"name": "focal", "alpha": 0.25, "gamma": 2.0, "beta": 1.0,
             "ohem": {"batch_per_image": 128, "nms_thresh": 0.7, "max_pos_fraction": None}},
    "model": {"depth": 18, "anchors": {"scales_per_octave": 3, "aspect_ratios": [0.5, 1.0, 2.0]}},
    "data": {"min_size": 128, "max_size": 128},
    "train": {"seed": 0},
}
SAME_AS_CONF = object()  # log_fake_sweep's default: the table block of conf/sweep/<name>.yaml


@dataclass
class FakeTrial:
    """One child: its overrides, seed and final metrics (fractions; ms_per_image in ms).

    status FAILED (with `error`) or RUNNING logs no final metrics.
    """

    overrides: dict[str, Any]
    seed: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = layout.FINISHED
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # extra child tags


def fake_metrics(ap: float, ms: float = 10.0) -> dict[str, float]:
    """Final metrics derived from AP (a fraction), distinct per metric."""
    return {"AP": ap, "AP50": ap + 0.15, "AP75": ap + 0.02, "APS": ap - 0.1,
            "APM": ap + 0.03, "APL": ap + 0.08, layout.SPEED_METRIC: ms}


def table_block(sweep: str) -> Optional[dict[str, Any]]:
    """The `table:` block of the repo's conf/sweep/<sweep>.yaml (None when there is no such file)."""
    path = SWEEP_DIR / f"{sweep}.yaml"
    if not path.exists():
        return None
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("table")


def log_fake_sweep(
    tracking_uri: str,
    name: str,
    trials: list[FakeTrial],
    *,
    experiment: str = layout.EXPERIMENT,
    artifact_location: str | None = None,
    profile: str = "cpu",
    kind: str = "grid",
    start_time: int | None = None,
    table: Any = SAME_AS_CONF,
) -> str:
    """Log a parent run of sweep `name` and its children; returns the parent run id.

    `table`: the declaration the parent carries (default: conf/sweep/<name>.yaml's,
    none for a name without a file; pass `table_block("gamma_alpha")` for a copy).
    `artifact_location` is used when the experiment is created (keep it
    under the test's tmp_path so nothing is written to the working dir).
    """
    client = MlflowClient(tracking_uri)
    experiment_id = _experiment(client, experiment, artifact_location)
    start = start_time or int(time.time() * 1000)
    declaration = table_block(name) if table is SAME_AS_CONF else table
    tags = {**layout.parent_tags(name, profile, kind, "abc123", declaration), layout.ENV_GIT_COMMIT: "0" * 40}
    parent = client.create_run(experiment_id, start_time=start, run_name=name, tags=tags)
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=_params(layout.flatten(BASE_CONFIG)))
    client.log_text(parent_id, json.dumps(BASE_CONFIG), "config.yaml")
    for i, trial in enumerate(trials):
        _log_child(client, experiment_id, parent_id, name, trial, start + 1 + i)
    client.set_terminated(parent_id, layout.FINISHED)
    return parent_id


def _experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _log_child(client: MlflowClient, experiment_id: str, parent_id: str, name: str,
               trial: FakeTrial, start: int) -> str:
    tags = layout.child_tags(parent_id, name, trial.overrides, trial.seed, invocation="test")
    if trial.error:
        tags[layout.ERROR] = trial.error[:layout.ERROR_CHARS]
    tags.update(trial.tags)
    run = client.create_run(experiment_id, start_time=start, tags=tags)
    run_id = run.info.run_id
    config = {**layout.flatten(BASE_CONFIG), **trial.overrides, "train.seed": trial.seed}
    client.log_batch(run_id, params=_params(config), metrics=_metrics(trial))
    if trial.status != layout.RUNNING:
        client.set_terminated(run_id, trial.status)
    return run_id


def _metrics(trial: FakeTrial) -> list[Metric]:
    """Per-step losses, a mid-training AP, and the final metrics at the last step."""
    now = int(time.time() * 1000)
    metrics = [Metric("loss", 1.0 / step, now, step) for step in (10, LAST_STEP)]
    if trial.status != layout.FINISHED:
        return metrics
    metrics.append(Metric("AP", trial.metrics.get("AP", 0.0) / 2, now, 10))
    metrics += [Metric(k, v, now + 1, LAST_STEP) for k, v in trial.metrics.items()]
    return metrics


def _params(config: Mapping[str, Any]) -> list[Param]:
    return [Param(k, layout.param_text(v)) for k, v in config.items()]


# ---------------------------------------------------------------------------
# A standard store with one parent per sweep, shared by the analysis tests.
# AP values are fractions; None marks a FAILED seed. Expectations in the
# tests are derived from these dicts, not typed twice.

NAN_ERROR = "NonFiniteLossError: loss became nan at iteration 3 (loss_cls=nan, loss_box=0.41)"
ALPHA_CE_AP = {0.1: None, 0.25: 0.105, 0.5: 0.281, 0.75: 0.312, 0.9: 0.298}  # 0.99, 0.999 missing
# (gamma, alpha) -> AP per seed. (2, .5) has the best single seed but not the best mean;
# (.5, .75) is missing; (0, .5) lost a seed; gamma 5 failed entirely.
GAMMA_ALPHA_AP = {
    (0.0, 0.25): [0.201, 0.205], (0.0, 0.5): [0.262, None], (0.0, 0.75): [0.301, 0.297],
    (0.5, 0.25): [0.251, 0.249], (0.5, 0.5): [0.311, 0.315],
    (2.0, 0.25): [0.330, 0.310], (2.0, 0.5): [0.340, 0.240], (2.0, 0.75): [0.200, 0.204],
    (5.0, 0.25): [None],
}
BEST_ALPHA = {0.0: 0.75, 0.5: 0.5, 2.0: 0.25}
ANCHORS_AP = {(1, (1.0,)): 0.30, (2, (1.0,)): 0.31, (1, (0.5, 1.0, 2.0)): 0.32, (3, (0.5, 1.0, 2.0)): 0.34}
SPEED = {(18, 96): (0.25, 8.0), (18, 128): (0.27, 12.5), (34, 96): (0.28, 13.0), (34, 128): (0.30, 19.0)}
OHEM = [
    ({"loss.name": "ohem", "loss.ohem.batch_per_image": 128, "loss.ohem.nms_thresh": 0.7}, 0.27),
    ({"loss.name": "ohem", "loss.ohem.batch_per_image": 128, "loss.ohem.nms_thresh": 0.5,
      "loss.ohem.max_pos_fraction": 0.25}, 0.26),
    ({"loss.name": "focal", "loss.gamma": 2.0, "loss.alpha": 0.25}, 0.33),
]
FL_STAR = [
    ({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": 0.75}, 0.30),
    ({"loss.name": "focal", "loss.gamma": 2.0, "loss.alpha": 0.25}, 0.33),
    ({"loss.name": "fl_star", "loss.gamma": 2.0, "loss.beta": 1.0, "loss.alpha": 0.25}, 0.325),
]
SEARCH_AP = [0.21, 0.33, None, 0.29]  # one trial failed


def standard_trials() -> dict[str, list[FakeTrial]]:
    """Sweep name -> its fake trials (the data above as FakeTrials)."""
    return {
        "alpha_ce": [_trial({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": a}, 0, ap)
                     for a, ap in ALPHA_CE_AP.items()],
        "gamma_alpha": [_trial({"loss.gamma": g, "loss.alpha": a}, seed, ap)
                        for (g, a), aps in GAMMA_ALPHA_AP.items() for seed, ap in enumerate(aps)],
        "anchors": [_trial({"model.anchors.scales_per_octave": s, "model.anchors.aspect_ratios": list(r)}, 0, ap)
                    for (s, r), ap in ANCHORS_AP.items()],
        "speed_accuracy": [_trial({"model.depth": d, "data.min_size": s}, 0, ap, ms)
                           for (d, s), (ap, ms) in SPEED.items()],
        "ohem": [_trial(o, 0, ap) for o, ap in OHEM],
        "fl_star": [_trial(o, 0, ap) for o, ap in FL_STAR],
        "search": _search_trials(),
    }


def _search_trials() -> list[FakeTrial]:
    trials = [_trial({"loss.alpha": 0.1 + 0.2 * i, "loss.gamma": 0.5 * i + 0.123456,
                      "model.anchors.scales_per_octave": i % 4 + 1,
                      "model.anchors.aspect_ratios": [1.0] if i % 2 else [0.5, 1.0, 2.0]}, 0, ap)
              for i, ap in enumerate(SEARCH_AP)]
    trials[-1].tags[layout.EARLY_STOPPED] = "true"  # ASHA stopped it
    return trials


def log_standard_store(tracking_uri: str, artifact_location: str) -> dict[str, str]:
    """Log every standard sweep (plus an older gamma_alpha parent); returns name -> parent id."""
    old = int(time.time() * 1000) - 10_000_000
    log_fake_sweep(tracking_uri, "gamma_alpha", [_trial({"loss.gamma": 2.0, "loss.alpha": 0.25}, 0, 0.01)],
                   artifact_location=artifact_location, start_time=old)
    return {name: log_fake_sweep(tracking_uri, name, trials, artifact_location=artifact_location,
                                 kind="search" if name == "search" else "grid")
            for name, trials in standard_trials().items()}


def _trial(overrides: dict[str, Any], seed: int, ap: float | None, ms: float = 10.0) -> FakeTrial:
    if ap is None:
        return FakeTrial(overrides, seed, status=layout.FAILED, error=NAN_ERROR)
    return FakeTrial(overrides, seed, fake_metrics(ap, ms))


@dataclass(frozen=True)
class Store:
    """A tracking store holding the standard sweeps."""

    uri: str
    parents: dict[str, str]  # sweep name -> its latest parent run id


_STORES: dict[str, Store] = {}  # basetemp -> store: one per session for every importing module


@pytest.fixture(scope="session")
def analysis_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One sqlite store with every standard sweep, shared by the session.

    Each test module imports this fixture (which makes it a fixture of that
    module), so the store itself is cached here to be built only once.
    """
    base = str(tmp_path_factory.getbasetemp())
    if base not in _STORES:
        root = _store_dir(tmp_path_factory)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        _STORES[base] = Store(uri, log_standard_store(uri, str(root / "artifacts")))
    return _STORES[base]


def _store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in memory (/dev/shm) when there is one: each of the ~150 sqlite commits
    syncs to disk, 3x slower on a busy disk. Removed at exit."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        return tmp_path_factory.mktemp("mlflow")
    root = Path(tempfile.mkdtemp(prefix="analysis-mlflow-", dir=SHM))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root
