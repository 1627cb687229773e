"""Sweeps end to end, in-process: a real local Ray cluster (shared by the
module), a real MLflow store in tmp_path, the real detector on the smoke
profile. Each sweep is run once by a module fixture and checked by several
tests, to keep the module to a couple of minutes on 2 cores.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest
import ray
from mlflow.tracking import MlflowClient

from detector.config import ConfigError
from sweeps.cluster import quiet_ray
from sweeps.run import main_with

SIX = ("AP", "AP50", "AP75", "APS", "APM", "APL")
# A cell whose loss diverges at once: no prior on the class bias and a huge lr.
FAILING_CELL = "sweep.cells=[{model.prior_prob:null,train.lr:1.0e6}]"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One 2-CPU local Ray cluster for every sweep of this module (sweeps reuse
    a Ray already initialised in the process and leave it running)."""
    quiet_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow SQLite store for the module (creating one costs seconds);
    each test writes its own experiment in it."""
    return tmp_path_factory.mktemp("store") / "mlflow.db"


def overrides(root: Path, store: Path, smoke_cache: str, *extra: str) -> list[str]:
    """A smoke sweep writing its outputs under `root` and its runs to the
    experiment named after `root` in `store`."""
    return ["profile=smoke", f"data.cache_dir={smoke_cache}", f"tracking.uri=sqlite:///{store}",
            f"tracking.experiment={root.name}", f"output_dir={root}/outputs", f"reports_dir={root}/reports", *extra]


def runs(root: Path, store: Path) -> tuple[list, list]:
    """(parent runs, child runs) of the experiment of `root`."""
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(root.name)
    every = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in every if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in every if r.data.tags.get("sweep.role") == "child"]
    return parents, children


# -- a grid with one failing cell ---------------------------------------------------
@pytest.fixture(scope="module")
def grid(tmp_path_factory, store, smoke_cache):
    """gamma_alpha on smoke (gamma 0 and 2) plus a cell that diverges."""
    root = tmp_path_factory.mktemp("grid")
    args = overrides(root, store, smoke_cache, "+sweep=gamma_alpha", FAILING_CELL)
    outcome = main_with(args, quiet=True)
    return root, args, outcome


def test_grid_has_one_parent_and_one_child_per_cell(grid, store):
    root, _, outcome = grid
    parents, children = runs(root, store)
    assert [p.info.run_id for p in parents] == [outcome.parent_run_id]
    tags = parents[0].data.tags
    assert (tags["sweep.name"], tags["sweep.profile"], tags["sweep.kind"]) == ("gamma_alpha", "smoke", "grid")
    assert tags["config_hash"] and tags["git.commit"]
    assert len(children) == 3 and len({c.data.tags["sweep.cell"] for c in children}) == 3
    assert all(c.data.tags["mlflow.parentRunId"] == outcome.parent_run_id for c in children)


def test_finished_children_hold_metrics_config_and_checkpoint(grid, store):
    root, _, _ = grid
    client = MlflowClient(f"sqlite:///{store}")
    finished = [c for c in runs(root, store)[1] if c.info.status == "FINISHED"]
    assert sorted(json.loads(c.data.tags["sweep.overrides"])["loss.gamma"] for c in finished) == [0.0, 2.0]
    for child in finished:
        assert set(SIX) | {"ms_per_image", "loss", "loss_cls", "loss_box", "lr"} <= set(child.data.metrics)
        assert child.data.params["loss.alpha"] == "0.25" and child.data.tags["sweep.seed"] == "0"
        assert child.data.tags["sweep.cell"].endswith("seed=0")
        history = client.get_metric_history(child.info.run_id, "loss")
        assert [m.step for m in history] == list(range(10, 101, 10))  # every train.log_every
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "metrics.json", "checkpoint"} <= artifacts
        assert [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")] == ["checkpoint/model.pt"]


def test_failing_trial_is_failed_with_its_error_and_others_finish(grid, store):
    root, _, outcome = grid
    children = runs(root, store)[1]
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1
    assert "NonFiniteLossError" in failed[0].data.tags["error"]
    assert "non-finite loss" in failed[0].data.tags["error"]
    assert sum(c.info.status == "FINISHED" for c in children) == 2
    assert outcome.counts["finished"] == 2 and outcome.counts["failed"] == 1


def test_rerun_skips_finished_cells_and_reruns_the_failed_one_in_its_run(grid, store):
    root, args, outcome = grid
    before = {c.data.tags["sweep.cell"]: c for c in runs(root, store)[1]}
    again = main_with(args, quiet=True)
    parents, children = runs(root, store)
    assert again.parent_run_id == outcome.parent_run_id and len(parents) == 1
    after = {c.data.tags["sweep.cell"]: c for c in children}
    assert len(children) == 3 and after.keys() == before.keys()
    assert {k: c.info.run_id for k, c in after.items()} == {k: c.info.run_id for k, c in before.items()}
    for key, child in after.items():
        if before[key].info.status == "FINISHED":  # not run again: untouched
            assert child.info.end_time == before[key].info.end_time
    assert again.counts == {"finished": 0, "failed": 1, "killed": 0, "before": 2}


# -- a renamed copy of a sweep, in the user's own folder ------------------------------
def test_renamed_copy_in_a_config_dir_gets_its_paper_table(tmp_path, store, smoke_cache):
    """The table is declared in the sweep file, not chosen by the sweep's name."""
    text = (Path(__file__).resolve().parents[1] / "conf" / "sweep" / "gamma_alpha.yaml").read_text()
    (tmp_path / "my_conf" / "sweep").mkdir(parents=True)
    (tmp_path / "my_conf" / "sweep" / "my_focal.yaml").write_text(text.replace("name: gamma_alpha", "name: my_focal"))
    args = overrides(tmp_path, store, smoke_cache, "+sweep=my_focal", "train.iterations=20")
    outcome = main_with(args, config_dir=str(tmp_path / "my_conf"), quiet=True)
    assert outcome.plan.name == "my_focal" and outcome.counts["finished"] == 2
    assert outcome.reports_dir == tmp_path / "reports" / "my_focal"
    markdown = "\n".join(path.read_text() for path in outcome.reports_dir.glob("*.md"))
    assert "Table 1b" in markdown
    assert "34.0" in markdown and "31.1" in markdown  # the paper's AP at gamma 2 and at gamma 0


# -- interrupted, then resumed -------------------------------------------------------
def test_interrupted_sweep_resumes_without_duplicates(tmp_path, store, smoke_cache):
    args = overrides(tmp_path, store, smoke_cache, "+sweep=gamma_alpha", "sweep.seeds=2", "train.iterations=40")
    first = main_with(args, stop_after=1, quiet=True)
    assert first.interrupted and first.counts["finished"] >= 1
    early = {c.data.tags["sweep.cell"]: c for c in runs(tmp_path, store)[1]}
    assert len(early) < 4 or any(c.info.status != "FINISHED" for c in early.values())

    second = main_with(args, quiet=True)
    parents, children = runs(tmp_path, store)
    assert second.parent_run_id == first.parent_run_id and len(parents) == 1
    assert not second.interrupted and second.counts["before"] == first.counts["finished"]
    cells = [c.data.tags["sweep.cell"] for c in children]
    assert len(cells) == 4 and len(set(cells)) == 4  # exactly one child per cell
    assert all(c.info.status == "FINISHED" for c in children)
    late = {c.data.tags["sweep.cell"]: c.info.run_id for c in children}
    assert all(late[key] == run.info.run_id for key, run in early.items())  # unfinished runs were reused


def test_resume_false_starts_a_new_parent(tmp_path, store, smoke_cache):
    args = overrides(tmp_path, store, smoke_cache, "+sweep=gamma_alpha", "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}",
                     "train.iterations=20")
    first = main_with(args, quiet=True)
    second = main_with([*args, "sweep.resume=false"], quiet=True)
    parents, children = runs(tmp_path, store)
    assert first.parent_run_id != second.parent_run_id and len(parents) == 2 and len(children) == 2


def test_resume_parent_continues_across_a_changed_base_config(tmp_path, store, smoke_cache):
    """After an upgrade adds or changes a base value, the old parent's finished cells still count."""
    args = overrides(tmp_path, store, smoke_cache, "+sweep=gamma_alpha", "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}",
                     "train.iterations=20")
    first = main_with(args, quiet=True)
    changed = [*args, "eval.timing_images=3"]  # another base config hash
    second = main_with([*changed, f"sweep.resume_parent={first.parent_run_id}"], quiet=True)
    parents, children = runs(tmp_path, store)
    assert second.parent_run_id == first.parent_run_id and second.resumed
    assert len(parents) == 1 and len(children) == 1 and second.counts["before"] == 1  # nothing ran again


# -- Optuna search ---------------------------------------------------------------------
def test_search_twice_continues_one_study(tmp_path, store, smoke_cache):
    journal = tmp_path / "journal.log"
    args = overrides(tmp_path, store, smoke_cache, "+sweep=search", f"sweep.storage={journal}", "sweep.num_samples=2",
                     "sweep.eval_every=20", "train.iterations=40")
    first = main_with(args, quiet=True)
    second = main_with(args, quiet=True)
    study = optuna.load_study(study_name="search-smoke",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(str(journal))))
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    parents, children = runs(tmp_path, store)
    assert first.parent_run_id == second.parent_run_id and len(children) == 4
    for child in children:
        overrides_ = json.loads(child.data.tags["sweep.overrides"])
        assert 0.01 <= overrides_["loss.alpha"] <= 0.999 and overrides_["train.eval_every"] == 20
        assert overrides_["model.anchors.aspect_ratios"] in ([1.0], [0.5, 1.0, 2.0])
        assert "AP" in child.data.metrics


# -- bad input, in-process ---------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["+sweep=nope"], "unknown sweep 'nope'; available: alpha_ce"),
    (["+sweep=gamma_alpha", "loss.alpha=1.5"], "loss.alpha=1.5 must be in [0, 1]"),
    (["+sweep=gamma_alpha", "sweep.cells=[{loss.gamma:-1}]"], "loss.gamma=-1 must be >= 0"),
])
def test_bad_input_raises_one_line_config_error(tmp_path, store, smoke_cache, extra, message):
    with pytest.raises(ConfigError) as error:
        main_with(overrides(tmp_path, store, smoke_cache, *extra), quiet=True)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "outputs").exists()


# -- the quiet timing phase ------------------------------------------------------------
def test_speed_sweep_times_each_model_again_after_the_trials(tmp_path, store, smoke_cache, capfd):
    args = overrides(tmp_path, store, smoke_cache, "+sweep=speed_accuracy", "train.iterations=10")
    outcome = main_with(args, quiet=True)
    assert "Downloading artifacts" not in capfd.readouterr().err  # MLflow's progress bar, once per model
    children = runs(tmp_path, store)[1]
    assert outcome.counts["finished"] == 2 and len(children) == 2
    client = MlflowClient(f"sqlite:///{store}")
    for child in children:
        assert child.data.tags["sweep.timing"] == "quiet"
        history = client.get_metric_history(child.info.run_id, "ms_per_image")
        assert len(history) == 2 and history[-1].value == child.data.metrics["ms_per_image"]  # the quiet one
        assert child.data.metrics["ms_per_image_spread"] >= 0
    table = (outcome.reports_dir / "table1e.md").read_text()
    assert "ms: median of the quiet timing passes, one model at a time after the trials (2 of 2 models)" in table
    assert children[0].data.tags["sweep.timing_protocol"] == "channels_last,32x5"

    # A model timed under another protocol is timed again by the next invocation; the other is not.
    client.set_tag(children[0].info.run_id, "sweep.timing_protocol", "nchw,10x5")
    again = main_with(args, quiet=True)
    assert again.resumed and len(runs(tmp_path, store)[1]) == 2  # no trial ran again
    lengths = sorted(len(client.get_metric_history(c.info.run_id, "ms_per_image")) for c in children)
    assert lengths == [2, 3]
    assert client.get_run(children[0].info.run_id).data.tags["sweep.timing_protocol"] == "channels_last,32x5"
