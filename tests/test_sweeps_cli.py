"""The sweep command line as a user runs it (subprocesses): one-line errors
with a non-zero exit for bad input, and a driver killed mid-sweep that the
same command then resumes without duplicating any MLflow run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def sweep_cli(cwd: Path, *args: str, **popen: object) -> subprocess.Popen:
    """`python -m sweeps.run ARGS` in `cwd` (its default MLflow store is cwd/mlflow.db)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "sweeps.run", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.mark.parametrize("args, message", [
    (["+sweep=nope"], "unknown sweep 'nope'; available: alpha_ce, anchors, fl_star, gamma_alpha"),
    ([], "no sweep given"),
    (["+sweep=gamma_alpha", "loss.alpha=1.5"], "loss.alpha=1.5 must be in [0, 1]"),
    (["+sweep=gamma_alpha", "loss.gamma=-1"], "loss.gamma=-1 must be >= 0"),
    (["+sweep=gamma_alpha", "model.anchors.aspect_ratios=[]"], "model.anchors.aspect_ratios is empty"),
    (["+sweep=gamma_alpha", "data=coco"], "data.root is missing"),
    (["+sweep=alpha_ce", "sweep.cells=[{loss.alpha:2.0}]"], "loss.alpha=2.0 must be in [0, 1] (sweep cell"),
    (["+sweep=gamma_alpha", "cluster.gpus_per_trial=-1"], "cluster.gpus_per_trial=-1 must be >= 0"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_starts(tmp_path, args, message):
    process = sweep_cli(tmp_path, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []  # nothing written: no store, no outputs/


def test_help_lists_the_sweeps_with_a_users_own_and_exits_0(tmp_path):
    (tmp_path / "mine" / "sweep").mkdir(parents=True)
    (tmp_path / "mine" / "sweep" / "my_gammas.yaml").write_text("grid: {loss.gamma: [0.0, 2.0]}\n")
    process = sweep_cli(tmp_path, "--help", "--config-dir", str(tmp_path / "mine"))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == ""
    assert out.startswith("usage: python -m sweeps.run +sweep=<name>")
    sweeps_line = next(line for line in out.splitlines() if line.strip().startswith("sweeps:"))
    assert "gamma_alpha" in sweeps_line and "my_gammas" in sweeps_line
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]  # nothing written


def test_an_unknown_flag_is_one_line_pointing_at_help(tmp_path):
    process = sweep_cli(tmp_path, "+sweep=gamma_alpha", "--seeds=3")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err == "error: unknown option --seeds=3; give Hydra overrides (key=value, +sweep=name) " \
                  "and optionally --config-dir DIR; --help lists the choices\n"


def finished_children(db: Path) -> int:
    """FINISHED child runs in the store, read-only (the driver is the one writer)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
        query = ("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                 "where t.key = 'sweep.role' and t.value = 'child' and r.status = 'FINISHED'")
        try:
            return connection.execute(query).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def test_ctrl_c_exits_130_without_the_finalisation_that_crashed_a_half_started_ray(tmp_path):
    """A Ctrl-C inside ray.init left Ray's core half started and the exit crashed (SIGSEGV, -11).
    Stand-in for that teardown: an atexit handler that crashes; the interrupted path must skip it."""
    script = (
        "import atexit, os, signal, sweeps.run as run\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))\n"
        "def interrupted(*args, **kwargs): raise KeyboardInterrupt\n"
        "run.plan_from = interrupted\n"
        "run.main(['+sweep=gamma_alpha'])\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "interrupted: run the same command again to continue the sweep\n"


def test_killed_driver_is_resumed_by_the_same_command(tmp_path, smoke_cache):
    args = ["+sweep=gamma_alpha", "profile=smoke", f"data.cache_dir={smoke_cache}", "sweep.seeds=2",
            "train.iterations=40"]
    first = sweep_cli(tmp_path, *args, start_new_session=True)
    deadline = time.monotonic() + 240
    while finished_children(tmp_path / "mlflow.db") < 1 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, first.communicate()[1]
    first.kill()  # SIGKILL: no chance to close a run or stop Ray
    first.communicate(timeout=60)
    time.sleep(5)  # Ray's own processes follow their driver down
    try:  # anything of that run's process group still alive would hold CPUs: end it
        os.killpg(first.pid, signal.SIGKILL)
    except ProcessLookupError:  # the expected case: the group is gone
        pass

    second = sweep_cli(tmp_path, *args)
    out, err = second.communicate(timeout=400)
    assert second.returncode == 0, err
    assert "Reports:" in out and "MLflow: experiment 'retinanet-sweeps', parent run" in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    every = client.search_runs([client.get_experiment_by_name("retinanet-sweeps").experiment_id])
    parents = [r for r in every if r.data.tags["sweep.role"] == "parent"]
    children = [r for r in every if r.data.tags["sweep.role"] == "child"]
    cells = [c.data.tags["sweep.cell"] for c in children]
    assert len(parents) == 1 and len(cells) == 4 and len(set(cells)) == 4  # one child per cell
    assert all(c.info.status == "FINISHED" for c in children)
    assert parents[0].info.status == "FINISHED"


# -- concurrent invocations ------------------------------------------------------------
ONE_CELL = ["profile=smoke", "train.iterations=10", "cluster.num_cpus=1"]


def _children(db: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    every = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    return [r for r in every if r.data.tags.get("sweep.role") == "child"]


def test_two_sweeps_started_at_once_in_a_fresh_folder_both_finish(tmp_path, smoke_cache):
    """The new SQLite store is created once, under a lock (it used to race in its migration)."""
    common = [*ONE_CELL, f"data.cache_dir={smoke_cache}"]
    first = sweep_cli(tmp_path, "+sweep=gamma_alpha", "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}",
                      *common)
    second = sweep_cli(tmp_path, "+sweep=alpha_ce", "sweep.trimmed.smoke={loss.alpha:[0.75]}", *common)
    for process in (first, second):
        out, err = process.communicate(timeout=400)
        assert process.returncode == 0, err
        assert "1 finished, 0 failed" in out
    children = _children(tmp_path / "mlflow.db")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


# The same sweep twice (refused in one line, or waited for; one child per cell): tests/test_ledger_server.py,
# with the drivers on 'two hosts' against one MLflow server.
