"""The MLflow run layout of a sweep: the one place that names its tags, its
metrics, the cell key and the queries. `sweeps/` writes with it, `analysis/`
reads with it, and the test fixtures log fake sweeps with it.

A sweep is one *parent* run (tags `sweep.role=parent`, `sweep.name`,
`sweep.profile`, `sweep.kind`, `config_hash`, `sweep.table`,
`sweep.command`, and what produced it: `git.commit`, `git.dirty`, `env.*`)
and one *child* run per trial (tags `mlflow.parentRunId`, `sweep.role=child`,
`sweep.cell`, `sweep.overrides`, `sweep.seed`, ...; params: the flattened
trial config; metrics: per-step losses, the final COCO metrics as fractions
in [0, 1] and `ms_per_image`).

Depends on nothing heavy: the MLflow client is passed in, never imported.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence

EXPERIMENT = "retinanet-sweeps"  # the default experiment name
# experiments named so are the sweep ledger's leases (sweeps/ledger.py), not sweeps: no listing shows them
LEASE_PREFIX = ".sweep-lease/"

# -- tags ------------------------------------------------------------------
PARENT_ID = "mlflow.parentRunId"  # MLflow's own: nests a child under its parent in the UI
ROLE = "sweep.role"  # parent | child
NAME = "sweep.name"  # the sweep's name (conf/sweep/<name>.yaml, or the user's own file)
PROFILE = "sweep.profile"  # smoke | cpu | paper | custom
KIND = "sweep.kind"  # grid | search
TABLE = "sweep.table"  # parent: the sweep's table declaration as JSON (analysis reads it)
COMMAND = "sweep.command"  # parent: the command line of the invocation that last ran it (the reports print it)
CONFIG_HASH = "config_hash"  # parent: hash of the base trial config (resume finds the parent by it)
CELL = "sweep.cell"  # child: the stable cell key (see `cell_key`)
OVERRIDES = "sweep.overrides"  # child: JSON of the cell's dotted overrides
SEED = "sweep.seed"
INVOCATION = "sweep.invocation"  # child: which run of the command last touched it
TRIAL_ID = "sweep.trial_id"  # child of a search: the Tune trial id
EARLY_STOPPED = "sweep.early_stopped"  # "true" when ASHA stopped the trial
ERROR = "error"  # child: `Type: message` of a failure, first ERROR_CHARS characters
NODE_ID, NODE_IP = "ray.node_id", "ray.node_ip"
TIMING = "sweep.timing"  # child: QUIET_TIMING once ms_per_image was re-measured after the trials (sweeps/timing.py)
QUIET_TIMING = "quiet"
TIMING_PROTOCOL = "sweep.timing_protocol"  # child: how the quiet phase timed it, e.g. "channels_last,32x5"
NOTE = "mlflow.note.content"  # MLflow's own: a run's Markdown description (parent: tables and findings)
# Experiment tag naming the experiment's kind, MLflow's own key. The MLflow 3.17/3.18 UI does
# not read it: which view an experiment opens on (GenAI "Overview" or the training runs) comes
# from the URL's `workflowType` for that page, else from the sidebar's GenAI / Model training
# switch, kept per browser. Set for whatever else reads experiment tags; it changes nothing in the UI.
EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING = "mlflow.experimentKind", "custom_model_development"
# The MLflow UI's saved views (3.17+, its "Views" list): an experiment tag per view holding
# {name, createdAt, updatedAt, state: the runs page's facets and columns as JSON}. A link with
# `viewStateShareKey=<key>` opens one, columns included, which the URL alone cannot carry.
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_METRICS = ("AP", "AP50", "AP75", "ms_per_image")  # the columns a sweep's view shows, then its swept params
# Every run (parent and child): what produced it. env.device of a child is what its trial used.
ENV_PYTHON, ENV_TORCH, ENV_TORCHVISION = "env.python", "env.torch", "env.torchvision"
ENV_RAY, ENV_MLFLOW, ENV_OPTUNA, ENV_DEVICE = "env.ray", "env.mlflow", "env.optuna", "env.device"
ENV_GIT_COMMIT, ENV_GIT_DIRTY = "git.commit", "git.dirty"  # git.dirty: "true" | "false" | "unknown"
DATA_DIGEST = "data.digest"  # sha256 (16 hex) of the train and val annotation files
ENV_TAGS = (ENV_PYTHON, ENV_TORCH, ENV_TORCHVISION, ENV_RAY, ENV_MLFLOW, ENV_OPTUNA, ENV_DEVICE,
            ENV_GIT_COMMIT, ENV_GIT_DIRTY, DATA_DIGEST)

ROLE_PARENT, ROLE_CHILD = "parent", "child"
NOTE_CHARS = 8000  # MLflow's longest tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
FINISHED, FAILED, KILLED, RUNNING, SCHEDULED = "FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED"
ERROR_CHARS = 500

# -- metrics ---------------------------------------------------------------
COCO_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")  # fractions in [0, 1]; -1: no such objects
SPEED_METRIC = "ms_per_image"
SPEED_SPREAD = "ms_per_image_spread"  # (slowest - fastest) / median of the quiet timing passes
FINAL_METRICS = COCO_METRICS + (SPEED_METRIC,)
TRAIN_METRICS = ("loss", "loss_cls", "loss_box", "lr")  # per step (step = iteration)
PARENT_COUNTS = ("finished", "failed", "killed", "before")  # parent metrics trials_<count>
PER_CLASS_PREFIX = "AP/"  # child: final AP of one category, `AP/<category name>` (-1: no ground truth)
DEVICE_RESULT = "device"  # the key of a trial's result naming the device it ran on (-> env.device)

# -- artifacts ---------------------------------------------------------------
CONFIG_FILE = "config.yaml"  # child: the trial's composed config (parent: the sweep's)
METRICS_FILE = "metrics.json"  # child: the final metrics, as the trial wrote them
MODEL_FILE = "checkpoint/model.pt"  # child: the final weights (what loss_cdf and the quiet timing load)
REPORT_DIR = "reports"  # parent: the report's files (tables, plots, the page), as written under reports/<sweep>/
REPORT_PAGE = "index.html"  # the report's one self-contained page, in REPORT_DIR
PER_CLASS_FILE = "per_class.json"  # {category name: AP}, the trial writes it into its workdir
PR_CURVES_FILE = "pr_curves.png"  # precision-recall curve per category at IoU 0.5
PREDICTIONS_DIR = "predictions"  # a few validation images, predictions and ground truth drawn


class RunLike(Protocol):
    """What the queries need of an `mlflow.entities.Run` (tests may pass lookalikes)."""

    info: Any  # .run_id, .status, .start_time, .experiment_id
    data: Any  # .tags, .params, .metrics


# -- the cell key ----------------------------------------------------------
def format_value(value: Any) -> str:
    """Strings bare, everything else as compact JSON: 0.25 -> "0.25", [1.0] -> "[1.0]"."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def cell_key(overrides: Mapping[str, Any], seed: int) -> str:
    """The stable key of a cell: sorted dotted overrides, then the seed.

    e.g. `loss.alpha=0.25,loss.gamma=2.0,seed=0`; resume matches child runs on it."""
    parts = [f"{name}={format_value(value)}" for name, value in sorted(overrides.items())]
    return ",".join([*parts, f"seed={seed}"])


def encode_overrides(overrides: Mapping[str, Any]) -> str:
    """The `sweep.overrides` tag: JSON with sorted keys."""
    return json.dumps(dict(overrides), sort_keys=True)


def decode_overrides(text: Optional[str]) -> dict[str, Any]:
    """The `sweep.overrides` tag back to a dict ({} when absent or unreadable)."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# -- what a run carries ------------------------------------------------------
def parent_tags(name: str, profile: str, kind: str, config_hash: str,
                table: Optional[Mapping[str, Any]], command: str = "") -> dict[str, str]:
    """The tags of a sweep's parent run (`command`: the command line, when known)."""
    tags = {ROLE: ROLE_PARENT, NAME: name, PROFILE: profile, KIND: kind, CONFIG_HASH: config_hash,
            TABLE: json.dumps(table or {}, sort_keys=True)}
    return {**tags, COMMAND: command} if command else tags


def child_tags(parent_id: str, name: str, overrides: Mapping[str, Any], seed: int,
               invocation: str = "") -> dict[str, str]:
    """The tags of a trial's child run."""
    return {PARENT_ID: parent_id, ROLE: ROLE_CHILD, NAME: name, CELL: cell_key(overrides, seed),
            OVERRIDES: encode_overrides(overrides), SEED: str(seed), INVOCATION: invocation}


def shown(metric: str, value: Optional[float]) -> Optional[float]:
    """A logged metric as reports show it: COCO fractions -> percent, as the paper prints them;
    COCOeval's -1 ("no such objects") -> None; other metrics (ms) unchanged."""
    if value is None or (metric in COCO_METRICS and value < 0):
        return None
    return 100.0 * value if metric in COCO_METRICS else value


def per_class_metric(category: str) -> str:
    """`AP/<category>`; characters MLflow refuses in a metric name become `_`."""
    safe = "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in category)
    return PER_CLASS_PREFIX + safe


def per_class_of(metrics: Mapping[str, float]) -> dict[str, float]:
    """{category: AP} of a run's metrics (its `AP/<category>` ones)."""
    return {k[len(PER_CLASS_PREFIX):]: v for k, v in metrics.items() if k.startswith(PER_CLASS_PREFIX)}


def note_text(markdown: str, more: str = "") -> str:
    """A run description that fits a tag: cut at a line end, then `more` (where the rest is)."""
    if len(markdown) <= NOTE_CHARS:
        return markdown
    tail = f"\n\n… cut here. {more}".rstrip()
    return markdown[:NOTE_CHARS - len(tail)].rsplit("\n", 1)[0] + tail


def run_page(server: str, experiment_id: str, run_id: str = "") -> str:
    """The MLflow UI's page of one run (no run: the experiment's runs, which `runs_page` queries)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")


def runs_page(server: str, experiment_id: str, parent_id: str, saved_view: bool = False) -> str:
    """The MLflow UI's runs page of one sweep: the trials of parent run `parent_id`, best AP first;
    with `saved_view`, the sweep's saved view (`runs_view`, written by the report) with its columns.

    The UI (3.17, 3.18) takes from the URL only the view (`workflowType`, for this page alone: it
    would open on GenAI's Overview otherwise, until the sidebar's "Model training" switch is set
    in that browser), a saved view's key, and the runs facets (searchFilter, orderByKey,
    orderByAsc, ...), which make it ignore a saved view: so one or the other."""
    if saved_view:
        query = {"viewStateShareKey": view_key(parent_id), "workflowType": "machine_learning"}
    else:
        query = {"workflowType": "machine_learning", "searchFilter": children_filter(parent_id),
                 "orderByKey": "metrics.`AP`", "orderByAsc": "false"}
    return f"{run_page(server, experiment_id)}?{urlencode(query, quote_via=quote)}"


def view_key(parent_id: str) -> str:
    """The key of a sweep's saved view: one per parent run, so a rebuilt report replaces it."""
    return f"sweep-{parent_id}"


def runs_view(name: str, parent_id: str, params: Sequence[str], now_ms: int) -> tuple[str, str]:
    """(experiment tag, value) of a sweep's saved view in the MLflow UI: its trials, best AP first,
    with VIEW_METRICS and `params` (the swept config keys) as columns."""
    columns = [f"metrics.`{m}`" for m in VIEW_METRICS] + [f"params.`{p}`" for p in params]
    state = {"searchFilter": children_filter(parent_id), "orderByKey": "metrics.`AP`", "orderByAsc": False,
             "selectedColumns": columns}
    envelope = {"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)}
    return SAVED_VIEW_PREFIX + view_key(parent_id), json.dumps(envelope)


def table_of(run: RunLike) -> dict[str, Any]:
    """The table declaration a parent run carries ({} for none)."""
    try:
        value = json.loads(run.data.tags.get(TABLE) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def param_text(value: Any) -> str:
    """How a config value is logged as an MLflow param: lists and dicts as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the params of a nested config; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- queries ---------------------------------------------------------------
def quoted(value: str) -> str:
    """A value for an MLflow filter string; quotes inside are rejected, not escaped."""
    if "'" in value or "\\" in value:
        raise ValueError(f"{value!r}: quotes and backslashes are not allowed in sweep names")
    return f"'{value}'"


def parent_filter(name: Optional[str] = None, profile: Optional[str] = None,
                  config_hash: Optional[str] = None) -> str:
    """Filter for the parent runs of a sweep (any sweep when name is None)."""
    parts = [f"tags.`{ROLE}` = '{ROLE_PARENT}'"]
    for tag, value in ((NAME, name), (PROFILE, profile), (CONFIG_HASH, config_hash)):
        if value is not None:
            parts.append(f"tags.`{tag}` = {quoted(value)}")
    return " and ".join(parts)


def children_filter(parent_id: str) -> str:
    """Filter for every child run of a parent."""
    return f"tags.`{PARENT_ID}` = {quoted(parent_id)}"


def search_all(client: Any, experiment_ids: Sequence[str], filter_string: str,
               order_by: Optional[list[str]] = None) -> list[Any]:
    """Every run matching the filter, following MLflow's page tokens."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=1000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def latest_parent(client: Any, experiment_id: str, name: str, profile: Optional[str] = None,
                  config_hash: Optional[str] = None) -> Optional[Any]:
    """The most recently started parent run of a sweep, or None."""
    runs = client.search_runs([experiment_id], parent_filter(name, profile, config_hash),
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def children(client: Any, experiment_id: str, parent_id: str) -> list[Any]:
    """Every child run of a parent (any status), oldest first."""
    runs = search_all(client, [experiment_id], children_filter(parent_id))
    return sorted(runs, key=lambda run: run.info.start_time or 0)


def latest_per_cell(runs: Iterable[RunLike]) -> dict[str, Any]:
    """One run per cell key: a FINISHED run if any, else the latest started.

    A resumed sweep may hold several runs of one cell (a failed try and its
    re-run); resume and the tables both see the cell once."""
    chosen: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get(CELL)
        old = chosen.get(key) if key else None
        if key and (old is None or run.info.status == FINISHED or old.info.status != FINISHED):
            chosen[key] = run
    return chosen

