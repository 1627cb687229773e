"""Failures that show (issue 24, item 4): failed trials make the command exit
non-zero naming each failed cell; a service failing mid-sweep (the tracking
store past its retries, a full disk) stops the sweep with one line, its runs
marked, and the same command resumes it; a cluster that scales up from zero
is accepted with a "waiting for workers" line; the paper profile checkpoints
and retries by default.

The sweeps run in-process on one shared local Ray cluster with trial
functions that train nothing (this module's), so each takes seconds.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from detector.config import ConfigError
from sweeps.cluster import ClusterInfo, _check_fits, _check_storage
from sweeps.compose import compose_config, resolved
from sweeps.run import EXIT_ABORTED, EXIT_TRIALS_FAILED, main
from sweeps.tracking import SweepTracker
from tests.fake_trials import ap_from_alpha

TWO_CELLS = "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25,0.75]}"


def fails_above_half(cfg, *, workdir: Path, report) -> dict:
    """A trial that raises for alpha > 0.5 and otherwise reports like the detector."""
    if cfg.loss.alpha > 0.5:
        raise RuntimeError(f"boom at alpha {cfg.loss.alpha}")
    return ap_from_alpha(cfg, workdir=workdir, report=report)


def always_fails(cfg, *, workdir: Path, report) -> dict:
    raise RuntimeError("this trial never works")


pytestmark = pytest.mark.usefixtures("local_ray")  # conftest: one local Ray cluster for the module


def sweep_args(root: Path, function: str, *extra: str) -> list[str]:
    """A two-cell smoke grid (alpha .25 and .75) with `function` as its trial, writing under `root`."""
    return ["+sweep=gamma_alpha", "profile=smoke", TWO_CELLS, "train.iterations=20",
            f"trial.function={function}", f"tracking.uri=sqlite:///{root}/mlflow.db",
            f"output_dir={root}/outputs", f"reports_dir={root}/reports", *extra]


def run_main(args: list[str]) -> int:
    """`python -m sweeps.run ARGS` in-process: its exit status."""
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def sweep_runs(root: Path) -> tuple[list, list]:
    """(parent runs, child runs) of the default experiment in root's store."""
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("retinanet-sweeps")
    every = client.search_runs([experiment.experiment_id], max_results=1000)
    return ([r for r in every if r.data.tags.get("sweep.role") == "parent"],
            [r for r in every if r.data.tags.get("sweep.role") == "child"])


# -- failed trials -----------------------------------------------------------------------
@pytest.mark.parametrize("function, failed_alphas", [
    (f"{__name__}:fails_above_half", [0.75]),
    (f"{__name__}:always_fails", [0.25, 0.75]),
])
def test_failed_trials_exit_1_naming_each_failed_cell_in_one_line(tmp_path, capsys, function, failed_alphas):
    code = run_main(sweep_args(tmp_path, function))
    out, err = capsys.readouterr()
    assert code == EXIT_TRIALS_FAILED
    failed_lines = [line for line in out.splitlines() if line.strip().startswith("failed ")]
    assert sorted(failed_lines) == sorted(
        f"  failed loss.alpha={alpha},loss.gamma=2.0,loss.name=focal,seed=0: RuntimeError: "
        + (f"boom at alpha {alpha}" if "above" in function else "this trial never works")
        for alpha in failed_alphas)
    assert err.strip().splitlines()[-1].startswith(f"error: {len(failed_alphas)} of 2 trial(s) failed")
    assert "Traceback" not in err
    children = sweep_runs(tmp_path)[1]
    assert sorted(c.info.status for c in children) == sorted(
        ["FAILED"] * len(failed_alphas) + ["FINISHED"] * (2 - len(failed_alphas)))


# -- a service failing mid-sweep -----------------------------------------------------------
class FailsOnce:
    """Wraps a SweepTracker method: its `nth` call raises `error` (a service past its
    retries), every other call goes through (the service is back)."""

    def __init__(self, method, nth: int, error: Exception) -> None:
        self.method, self.nth, self.error, self.calls = method, nth, error, 0

    def __get__(self, tracker, owner=None):
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.nth:
                raise self.error
            return self.method(tracker, *args, **kwargs)
        return call


OUTAGE = MlflowException("API request to http://mlflow.internal:5000/api/2.0/mlflow/runs/log-batch failed "
                         "with exception HTTPConnectionPool: Max retries exceeded")
FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("method, nth, error, shown", [
    ("log_metrics", 3, OUTAGE, "MlflowException: API request to http://mlflow.internal:5000"),
    ("log_file", 1, FULL_DISK, "OSError: [Errno 28] No space left on device"),
])
def test_a_store_failing_mid_sweep_is_one_line_runs_marked_and_the_same_command_resumes(
        tmp_path, capsys, monkeypatch, method, nth, error, shown):
    args = sweep_args(tmp_path, "tests.fake_trials:ap_from_alpha", "cluster.num_cpus=1")
    fault = FailsOnce(getattr(SweepTracker, method), nth, error)
    monkeypatch.setattr(SweepTracker, method, fault)
    code = run_main(args)
    _, err = capsys.readouterr()
    assert code == EXIT_ABORTED and fault.calls >= nth
    assert err.count("\n") == 1 and err.startswith(f"error: the sweep stopped: {shown}")
    assert "run the same command again to continue" in err
    assert "Traceback" not in err and "Tuner.restore" not in err
    parents, children = sweep_runs(tmp_path)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert children and all(c.info.status in ("KILLED", "FINISHED") for c in children)  # none left RUNNING

    monkeypatch.undo()  # the store is back
    assert run_main(args) == 0
    parents_after, children_after = sweep_runs(tmp_path)
    assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]
    assert parents_after[0].info.status == "FINISHED"
    cells = [c.data.tags["sweep.cell"] for c in children_after]
    assert len(cells) == 2 and len(set(cells)) == 2  # one child run per cell: none duplicated
    assert all(c.info.status == "FINISHED" for c in children_after)


# -- a cluster that scales up from zero ------------------------------------------------------
def cluster_info(local: bool, gpus: float) -> ClusterInfo:
    """A head node with 4 CPUs and `gpus` GPUs (0: the GPU workers are not there yet)."""
    return ClusterInfo(address="10.0.0.1:6379", local=local, client=False, cpus=4, gpus=gpus, nodes=1,
                       max_node_cpus=4, max_node_gpus=gpus, machines=1)


PAPER_TRIAL = {"cpus_per_trial": 4, "gpus_per_trial": 1, "storage_path": "s3://bucket/ray-results"}


def test_an_existing_cluster_with_no_gpu_worker_yet_is_waited_for_with_one_line():
    line = _check_fits(cluster_info(local=False, gpus=0), PAPER_TRIAL)
    assert line.startswith("waiting for workers: no Ray node fits cluster.gpus_per_trial=1 yet (1 node(s) now)")
    assert "\n" not in line
    assert _check_fits(cluster_info(local=False, gpus=1), PAPER_TRIAL) is None  # fits now: nothing to say


def test_a_local_cluster_too_small_for_a_trial_is_still_refused():
    with pytest.raises(ConfigError, match=r"^cluster.gpus_per_trial=1 but no Ray node has more than 0 GPUs$"):
        _check_fits(cluster_info(local=True, gpus=0), PAPER_TRIAL)


def test_a_scaling_cluster_needs_storage_every_new_node_reaches():
    with pytest.raises(ConfigError, match="will add machines for the trials: set cluster.storage_path"):
        _check_storage(cluster_info(local=False, gpus=0), {**PAPER_TRIAL, "storage_path": None}, scaling=True)


# -- the paper profile ------------------------------------------------------------------------
def test_the_paper_profile_checkpoints_and_retries_by_default():
    values = resolved(compose_config(["profile=paper"]))
    every, iterations = values["train"]["checkpoint_every"], values["train"]["iterations"]
    assert isinstance(every, int) and 0 < every <= iterations // 20  # at least 20 checkpoints in a trial
    assert values["trial"]["max_failures"] >= 1
