"""Exactly once (issue 24, item 3, and the replayed create_run of item 4): a
trial's folder and checkpoint belong to its cell's identity and config, so a
checkpoint of another config is never resumed; the checkpoint stays until the
driver has stored the result; a corrupt one is set aside and the trial starts
afresh; a replayed create_run leaves one child run per cell and a complete
sweep exits 0.

Sweeps run in-process on one shared local Ray cluster, mostly with trial
functions that train nothing (this module's), the real detector on the smoke
profile where its checkpoint is the point.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import tune

from analysis import layout
from detector.trial import CHECKPOINT_NAME, run_trial
from sweeps.driver import close_and_tally
from sweeps.run import EXIT_ABORTED, EXIT_TRIALS_FAILED, plan_from
from sweeps.tracking import SweepTracker
from sweeps.trainable import restore_checkpoint
from tests.conftest import compose_trial
from tests.test_reliability_failures import FULL_DISK, FailsOnce, run_main, sweep_runs

ONE_CELL = "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}"
TWO_CELLS = "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25,0.75]}"
SAVED_AT = 7  # the iteration checkpoints_then_fails saves


def checkpoints_then_fails(cfg, *, workdir: Path, report) -> dict:
    """A trial that saves a training checkpoint at iteration SAVED_AT, then dies."""
    torch.save({"iteration": SAVED_AT}, Path(workdir) / CHECKPOINT_NAME)
    raise RuntimeError("the worker died after its checkpoint")


pytestmark = pytest.mark.usefixtures("local_ray")  # conftest: one local Ray cluster for the module


def args(root: Path, *extra: str) -> list[str]:
    """A smoke sweep writing under `root` (trial function and cells in `extra`)."""
    return ["+sweep=gamma_alpha", "profile=smoke", "train.iterations=10", f"tracking.uri=sqlite:///{root}/mlflow.db",
            f"output_dir={root}/outputs", f"reports_dir={root}/reports", *extra]


def checkpoints_left(root: Path) -> list[Path]:
    return sorted((root / "outputs").rglob(CHECKPOINT_NAME))


# -- a checkpoint belongs to its cell's identity and config ---------------------------------
@pytest.mark.parametrize("change, resumed", [([], SAVED_AT), (["train.lr=0.02"], None)])
def test_a_checkpoint_is_resumed_by_its_own_config_only(tmp_path, change, resumed):
    first = args(tmp_path, ONE_CELL, f"trial.function={__name__}:checkpoints_then_fails")
    assert run_main(first) == EXIT_TRIALS_FAILED and len(checkpoints_left(tmp_path)) == 1
    parent = sweep_runs(tmp_path)[0][0].info.run_id
    # the same parent continued (resume_parent), with the same or a changed base config
    again = args(tmp_path, ONE_CELL, "trial.function=tests.fake_trials:ap_from_alpha",
                 f"sweep.resume_parent={parent}", *change)
    assert run_main(again) == 0
    parents, children = sweep_runs(tmp_path)
    assert [p.info.run_id for p in parents] == [parent]
    latest = layout.latest_per_cell(children)["loss.alpha=0.25,loss.gamma=2.0,loss.name=focal,seed=0"]
    assert latest.info.status == "FINISHED"
    assert latest.data.metrics.get("resumed_from") == resumed  # the old optimizer only for the same config
    if change:  # the re-run under another config is its own run: params are write-once
        assert latest.data.params["train.lr"] == "0.02"
        assert sorted((c.data.params["train.lr"], c.info.status) for c in children) == [
            ("0.01", "FAILED"), ("0.02", "FINISHED")]
    else:
        assert len(children) == 1


def test_a_trial_folder_is_named_by_profile_parent_and_config_on_a_cluster_too(tmp_path):
    cells = "sweep.trimmed.{}={{loss.gamma:[2.0],loss.alpha:[0.25]}}"
    store = f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"
    smoke = plan_from(["+sweep=gamma_alpha", "profile=smoke", store, cells.format("smoke")])
    cpu = plan_from(["+sweep=gamma_alpha", "profile=cpu", store, cells.format("cpu")])
    lr = plan_from(["+sweep=gamma_alpha", "profile=smoke", store, cells.format("smoke"), "train.lr=0.02"])
    assert smoke.cells[0].key == cpu.cells[0].key == lr.cells[0].key  # the same cell key in each

    def folder(plan, parent: str = "p1") -> Path:  # work_root None: a temp folder on each worker
        return dataclasses.replace(plan, parent_id=parent, work_root=None).workdir(plan.cells[0], "t1")

    assert folder(smoke) == folder(plan_from(["+sweep=gamma_alpha", "profile=smoke", store, cells.format("smoke")]))
    assert len({folder(smoke), folder(cpu), folder(lr), folder(smoke, "p2")}) == 4


# -- kept until the driver has stored the result --------------------------------------------
def test_a_kill_before_the_driver_stored_the_model_resumes_from_the_final_checkpoint(
        tmp_path, monkeypatch, smoke_cache):
    run = args(tmp_path, ONE_CELL, f"data.cache_dir={smoke_cache}", "train.checkpoint_every=10")
    fault = FailsOnce(SweepTracker.log_file, 1, FULL_DISK)  # storing model.pt fails: the driver stops there
    monkeypatch.setattr(SweepTracker, "log_file", fault)
    assert run_main(run) == EXIT_ABORTED and fault.calls == 1
    (left,) = checkpoints_left(tmp_path)
    assert torch.load(left, weights_only=True)["iteration"] == 10  # the trained state was kept

    monkeypatch.undo()
    assert run_main(run) == 0
    (child,) = sweep_runs(tmp_path)[1]
    assert child.info.status == "FINISHED"
    assert child.data.metrics["resumed_from"] == 10  # not trained again from zero
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")] == ["checkpoint/model.pt"]
    assert checkpoints_left(tmp_path) == []  # stored: the driver removed the trial's folder


# -- a corrupt checkpoint ---------------------------------------------------------------------
def test_a_corrupt_checkpoint_is_set_aside_and_the_trial_trains_from_the_start(tmp_path, smoke_cache, caplog):
    saved = tmp_path / "saved.pt"
    torch.save({"iteration": 5, "weights": torch.zeros(1000)}, saved)
    (tmp_path / CHECKPOINT_NAME).write_bytes(saved.read_bytes()[:500])  # a truncated write
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}", "train.iterations=10",
                         "train.checkpoint_every=10"])
    with caplog.at_level(logging.WARNING, logger="detector.trial"):
        result = run_trial(cfg, workdir=tmp_path)
    assert result["iterations"] == 10 and result["train_seconds"] > 0
    assert (tmp_path / f"{CHECKPOINT_NAME}.corrupt").read_bytes() == saved.read_bytes()[:500]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "\n" not in line and line.endswith(f"set aside as {CHECKPOINT_NAME}.corrupt; training from the start")
    assert "is unreadable (RuntimeError: PytorchStreamReader failed" in line
    # the new checkpoint stays in the folder for the caller (the driver removes it once stored)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["iteration"] == 10


def test_a_corrupt_checkpoint_in_a_trial_folder_is_not_resumed_by_the_worker(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    assert restore_checkpoint(None, tmp_path) is None
    assert not (tmp_path / CHECKPOINT_NAME).exists() and (tmp_path / f"{CHECKPOINT_NAME}.corrupt").is_file()


def test_the_further_of_the_folders_and_tunes_checkpoint_is_resumed(tmp_path):
    held = tmp_path / "tune"
    held.mkdir()
    torch.save({"iteration": 8}, held / CHECKPOINT_NAME)  # a retry elsewhere got further
    workdir = tmp_path / "trial"
    workdir.mkdir()
    torch.save({"iteration": 3}, workdir / CHECKPOINT_NAME)  # this node's older try
    assert restore_checkpoint(tune.Checkpoint.from_directory(str(held)), workdir) == 8
    assert torch.load(workdir / CHECKPOINT_NAME, weights_only=True)["iteration"] == 8
    torch.save({"iteration": 9}, workdir / CHECKPOINT_NAME)
    assert restore_checkpoint(tune.Checkpoint.from_directory(str(held)), workdir) == 9  # this one is further


# -- one child run per cell, whatever the network did ----------------------------------------
def test_a_replayed_create_run_leaves_one_child_per_cell_and_a_complete_sweep_exits_0(tmp_path, monkeypatch):
    original = MlflowClient.create_run

    def replayed(self, experiment_id, *a, tags=None, **kw):
        """The response of a child's create_run is lost and the client sends it again:
        the server makes two runs and the client hears of the second."""
        if (tags or {}).get(layout.ROLE) == layout.ROLE_CHILD:
            original(self, experiment_id, *a, tags=tags, **kw)
        return original(self, experiment_id, *a, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "create_run", replayed)
    assert run_main(args(tmp_path, TWO_CELLS, "trial.function=tests.fake_trials:ap_from_alpha")) == 0
    parents, children = sweep_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.data.tags[layout.CELL] for c in children) == [
        f"loss.alpha={alpha},loss.gamma=2.0,loss.name=focal,seed=0" for alpha in (0.25, 0.75)]
    assert all(c.info.status == "FINISHED" for c in children)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    deleted = client.search_runs([children[0].info.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert len(deleted) == 2 and not any(run.data.params for run in deleted)  # the orphans, set aside


def test_an_orphan_answered_after_the_lookup_is_not_counted(tmp_path):
    plan = plan_from(args(tmp_path, ONE_CELL))
    tracker = SweepTracker(f"sqlite:///{tmp_path}/mlflow.db", plan.experiment)
    tracker.open_parent(plan, None)
    cell = plan.cells[0]
    run_id = tracker.start_child(plan, cell, None, "inv1", {})
    late = layout.child_tags(tracker.parent_id, plan.name, cell.overrides, cell.seed, "inv1")
    orphan = tracker.client.create_run(tracker.experiment_id, tags=late).info.run_id  # a slow replay
    tracker.finish_child(run_id, "FINISHED")
    tally = close_and_tally(tracker, "inv1")
    assert tally.counts == {"finished": 1, "failed": 0, "killed": 0} and tally.touched == 1
    assert tracker.client.get_run(orphan).info.lifecycle_stage == "deleted"
