"""Open searches: stale trials of a dead driver, and ASHA stopping a trial
early, recorded as such in MLflow and in the Optuna study."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from analysis import layout
from sweeps.run import main_with
from sweeps.search import EARLY_STOPPED_ATTR, fail_stale_trials, optuna_storage

PROJECT = Path(__file__).resolve().parents[1]


def test_running_trials_left_by_a_dead_driver_are_failed(tmp_path):
    storage = optuna_storage(str(tmp_path / "journal.log"))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    done = study.ask()
    study.tell(done, 0.5)
    left = [study.ask(), study.ask()]  # a driver killed here leaves these RUNNING for good
    again = optuna.load_study(study_name="s", storage=optuna_storage(str(tmp_path / "journal.log")))
    assert fail_stale_trials(again) == [t.number for t in left]
    states = [t.state for t in again.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.FAIL] * 2


def test_in_an_rdb_study_only_trials_whose_heartbeat_expired_are_failed(tmp_path):
    """Another live search's trials are left alone (they used to be failed as stale, on any
    storage, which broke that search); those of a driver whose lease was taken over (known
    dead) are failed at once; the seed of a search beside a live one differs."""
    from sweeps.search import OWNER_ATTR, sampler_seed

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=optuna_storage(url), direction="maximize")
    dead, live, killed = study.ask(), study.ask(), study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    killed.set_user_attr(OWNER_ATTR, "gone")
    quick = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    again = optuna.load_study(study_name="s", storage=quick)
    time.sleep(4.5)  # SQLite's clock has whole seconds
    for trial in (live, killed):
        study._storage.record_heartbeat(trial._trial_id)  # renewed a moment ago
    assert fail_stale_trials(again, dead_owners={"gone"}) == [dead.number, killed.number]
    assert [t.state for t in again.get_trials()] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING,
                                                     optuna.trial.TrialState.FAIL]
    assert sampler_seed(7, 2, "a", live=False) == sampler_seed(7, 2, "b", live=False) == 9  # alone: reproducible
    assert sampler_seed(7, 2, "a", live=True) != sampler_seed(7, 2, "b", live=True)


def test_a_search_that_ends_leaves_none_of_its_trials_running(tmp_path):
    """After a Ctrl-C the driver's own unfinished trials were left RUNNING in an RDB study until
    their heartbeat expired (fault_injection --server --search: 2 left RUNNING after a SIGINT)."""
    from sweeps.run import plan_from
    from sweeps.search import make_searcher
    from sweeps.trainable import FINAL_FLAG

    url = f"sqlite:///{tmp_path}/optuna.db"
    plan = plan_from(["+sweep=search", "profile=smoke", f"sweep.storage={url}"])
    searcher, _ = make_searcher(plan.search, plan.name, plan.profile, plan.base_seed, plan.base_hash, "me",
                                frozenset())
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {searcher.metric: 0.5, FINAL_FLAG: True})  # a trial that returned
    assert searcher.fail_open_trials() == ["b"]
    study = searcher._ot_study
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert searcher.fail_open_trials() == []


def test_asha_stops_a_weak_trial_and_mlflow_and_optuna_both_say_so(tmp_path, monkeypatch, smoke_cache):
    # Ray's workers inherit the environment: they import tests.fake_trials from here.
    monkeypatch.setenv("PYTHONPATH", str(PROJECT))
    journal = tmp_path / "journal.log"
    store = tmp_path / "mlflow.db"
    outcome = main_with([
        "+sweep=search", "profile=smoke", f"data.cache_dir={smoke_cache}", f"tracking.uri=sqlite:///{store}",
        f"output_dir={tmp_path}/outputs", f"reports_dir={tmp_path}/reports", "cluster.num_cpus=1",
        "trial.function=tests.fake_trials:ap_from_alpha", f"sweep.storage={journal}", "sweep.num_samples=6",
        "sweep.sampler=random", "sweep.eval_every=10", "sweep.asha={grace_period:1,reduction_factor:2}",
        "train.iterations=40", "train.log_every=10"], quiet=True)
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("retinanet-sweeps").experiment_id
    children = layout.children(client, experiment, outcome.parent_run_id)
    stopped = [c for c in children if c.data.tags.get(layout.EARLY_STOPPED) == "true"]
    assert len(children) == 6 and stopped, "one trial at least falls below the median at a rung"
    assert all(c.info.status == "FINISHED" for c in children)
    study = optuna.load_study(study_name="search-smoke", storage=optuna_storage(str(journal)))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == len(stopped) and all(t.user_attrs[EARLY_STOPPED_ATTR] for t in pruned)
    stopped_alphas = sorted(layout.decode_overrides(c.data.tags[layout.OVERRIDES])["loss.alpha"] for c in stopped)
    assert sorted(t.params["loss.alpha"] for t in pruned) == stopped_alphas
    assert outcome.counts["finished"] == 6 and outcome.study.endswith("(6 trials)")


def test_a_study_refuses_a_search_with_another_base_config(tmp_path):
    from detector.config import ConfigError
    from sweeps.search import BASE_HASH_ATTR, check_study_base, make_searcher
    from sweeps.spec import SearchSpec

    spec = SearchSpec(storage=str(tmp_path / "journal.log"))
    check_study_base(spec, "search", "cpu", "aaa")  # no study yet: nothing to refuse
    make_searcher(spec, "search", "cpu", base_seed=0, base_hash="aaa")
    study = optuna.load_study(study_name="search-cpu", storage=optuna_storage(spec.storage))
    assert study.user_attrs[BASE_HASH_ATTR] == "aaa"
    check_study_base(spec, "search", "cpu", "aaa")  # the same base config continues it
    with pytest.raises(ConfigError, match=r"^study 'search-cpu' in .*journal.log holds trials of another base "
                                          r"config \(hash aaa, this one bbb\).*sweep.study_name=\.\.\.$"):
        check_study_base(spec, "search", "cpu", "bbb")
