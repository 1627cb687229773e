"""Several drivers, one MLflow server on PostgreSQL, one Optuna study in PostgreSQL
(tests/pg.py): what the sweep ledger (sweeps/ledger.py) guarantees across hosts.
Each driver has an `output_dir` of its own, standing in for another host: the
local flock under it does not see the others, only the ledger in the store does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from analysis.layout import LEASE_PREFIX

PROJECT = Path(__file__).resolve().parents[1]
SLOW = "trial.function=tests.fake_trials:slow_ap"


def driver(root: Path, uri: str, *args: str, gate: Path | None = None) -> subprocess.Popen:
    """`python -m sweeps.run ARGS` as a driver on its own 'host' (root: its output_dir, reports and cwd);
    its trials hold their first report until `gate` exists (tests/fake_trials.py slow_ap)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "PYTHONUNBUFFERED": "1",
           **({"FAKE_TRIAL_GATE": str(gate)} if gate else {})}
    command = [sys.executable, "-m", "sweeps.run", "profile=smoke", f"tracking.uri={uri}", f"output_dir={root}/out",
               f"reports_dir={root}/reports", "cluster.num_cpus=1", SLOW, *args]
    return subprocess.Popen(command, cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, what: str, timeout: float = 240.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver ended before {what}: {process.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def read_until(process: subprocess.Popen, text: str) -> str:
    """The driver's output up to the first line holding `text` (it writes unbuffered)."""
    seen = ""
    while text not in seen:
        line = process.stdout.readline()
        assert line, f"the driver ended without saying {text!r}: {seen + process.communicate()[0]}"
        seen += line
    return seen


def leases(client: MlflowClient) -> list[str]:
    return [e.name for e in client.search_experiments() if e.name.startswith(LEASE_PREFIX)]


def runs(client: MlflowClient, experiment: str, role: str) -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [r for r in client.search_runs([found.experiment_id], max_results=1000)
            if r.data.tags.get("sweep.role") == role]


def one_finished_child_per_cell(client: MlflowClient, experiment: str, cells: int) -> None:
    children = runs(client, experiment, "child")
    keys = [c.data.tags["sweep.cell"] for c in children]
    assert len(keys) == cells and len(set(keys)) == cells, keys  # none lost, none duplicated
    assert all(c.info.status == "FINISHED" for c in children)
    assert [p.info.status for p in runs(client, experiment, "parent")] == ["FINISHED"]


def test_a_second_driver_on_another_host_refuses_in_one_line_or_waits(mlflow_server, smoke_cache, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    args = ["+sweep=gamma_alpha", "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}", "train.iterations=20",
            "tracking.experiment=two-drivers", f"data.cache_dir={smoke_cache}"]
    gate = tmp_path / "go"
    first = driver(tmp_path / "host-a", mlflow_server.uri, *args, gate=gate)
    wait_for(lambda: leases(client), "the first driver's lease", process=first)
    refused = driver(tmp_path / "host-b", mlflow_server.uri, *args)
    waiting = driver(tmp_path / "host-c", mlflow_server.uri, *args, "sweep.wait=true")
    out, err = refused.communicate(timeout=240)
    assert refused.returncode == 75 and out == "", err
    assert err.startswith("error: sweep gamma_alpha (smoke) is already running (host ")
    assert f"pid {first.pid}, since " in err and err.count("\n") == 1
    read_until(waiting, "waiting for it to end")
    gate.touch()  # the first driver's trial goes on, and ends
    out_first, err_first = first.communicate(timeout=400)
    out_wait, err_wait = waiting.communicate(timeout=400)
    assert first.returncode == 0 and waiting.returncode == 0, err_first + err_wait
    assert "1 done in earlier runs" in out_wait, out_first + out_wait
    one_finished_child_per_cell(client, "two-drivers", cells=1)
    assert leases(client) == []  # released, and never listed as a sweep


def test_two_searches_on_one_shared_study_are_fenced_and_no_live_trial_is_failed(
        mlflow_server, postgres, smoke_cache, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    storage = postgres.create_database("optuna_shared")
    args = ["+sweep=search", f"sweep.storage={storage}", "sweep.study_name=shared", "sweep.num_samples=2",
            "sweep.sampler=random", "sweep.eval_every=10", "train.iterations=20", "train.log_every=5",
            "tracking.experiment=shared-study", f"data.cache_dir={smoke_cache}"]
    gate = tmp_path / "go"
    first = driver(tmp_path / "host-a", mlflow_server.uri, *args, gate=gate)
    wait_for(lambda: len(leases(client)) == 2, "the first search's leases (sweep and study)", process=first)
    second = driver(tmp_path / "host-b", mlflow_server.uri, *args, "sweep.name=search_b")  # another sweep, same study
    out, err = second.communicate(timeout=240)
    gate.touch()
    assert second.returncode == 75, out + err
    assert err.startswith("error: study 'shared' is already running (host ") and err.count("\n") == 1
    out_first, err_first = first.communicate(timeout=400)
    assert first.returncode == 0, out_first + err_first
    study = optuna.load_study(study_name="shared", storage=storage)
    states = {t.state for t in study.trials}
    assert len(study.trials) == 2 and states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    import psycopg

    with psycopg.connect(storage) as connection:  # its trials carried Optuna heartbeats (what staleness reads)
        assert connection.execute("select count(*) from trial_heartbeats").fetchone()[0] == 2
    assert leases(client) == []


@pytest.mark.outage  # ~3 min: not in the default run (pyproject.toml); python -m pytest -m outage
def test_a_database_outage_mid_sweep_loses_and_duplicates_nothing(mlflow_server, postgres, smoke_cache, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    args = ["+sweep=gamma_alpha", "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25,0.75]}",
            "train.iterations=20", "tracking.experiment=outage", f"data.cache_dir={smoke_cache}"]
    gate = tmp_path / "go"
    first = driver(tmp_path / "host-a", mlflow_server.uri, *args, gate=gate)
    wait_for(lambda: runs(client, "outage", "child"), "the first child run", process=first)
    postgres.stop()  # the tracking server stays up, its database does not
    gate.touch()  # the trials report while it is down
    time.sleep(30)
    postgres.start()
    out, err = first.communicate(timeout=400)
    assert first.returncode in (0, 69), out + err  # rode it out, or stopped with one line to resume
    again = driver(tmp_path / "host-a", mlflow_server.uri, *args)  # the same command
    out_again, err_again = again.communicate(timeout=400)
    assert again.returncode == 0, out_again + err_again
    one_finished_child_per_cell(client, "outage", cells=2)
    assert leases(client) == []
