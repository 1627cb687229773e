"""A trial whose Ray worker is killed is retried and continues from its last
checkpoint held in Tune's storage: one child run, finished, resumed."""

from __future__ import annotations

import os
import signal
import threading
import time

from mlflow.tracking import MlflowClient

from analysis import layout
from sweeps.cluster import trial_worker_pids
from sweeps.run import main_with


def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path, smoke_cache):
    store = tmp_path / "mlflow.db"
    args = ["+sweep=gamma_alpha", "profile=smoke", f"data.cache_dir={smoke_cache}", f"tracking.uri=sqlite:///{store}",
            f"output_dir={tmp_path}/outputs", f"reports_dir={tmp_path}/reports", "cluster.num_cpus=1",
            "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}", "train.iterations=80",
            "train.checkpoint_every=10", "train.log_every=10", "trial.max_failures=1"]
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=main_with(args, quiet=True)))
    runner.start()
    deadline = time.monotonic() + 300
    held = []  # a training checkpoint in Tune's storage (not the trial's own folder)
    while not held and runner.is_alive() and time.monotonic() < deadline:
        held = list((tmp_path / "outputs" / "ray_results").glob("*/*/checkpoint_*/checkpoint_last.pt"))
        time.sleep(0.2)
    assert held, "the trial handed a checkpoint to Tune"
    workers = trial_worker_pids(os.getpid())  # this test's cluster: not a sweep running beside it
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    runner.join(timeout=400)
    result = outcome["result"]
    assert result.counts == {"finished": 1, "failed": 0, "killed": 0, "before": 0}
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("retinanet-sweeps").experiment_id
    children = layout.children(client, experiment, result.parent_run_id)
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    resumed = client.get_metric_history(children[0].info.run_id, "resumed_from")
    assert resumed and 10 <= resumed[-1].value < 80  # it continued, not restarted
    assert children[0].data.metrics["AP"] >= 0
