"""Which parent an invocation continues: same base config, another one, or the one named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detector.config import ConfigError
from sweeps.continuation import config_changes, describe, parent_to_continue
from sweeps.run import plan_from
from sweeps.tracking import SweepTracker

# The params of a parent made before an upgrade, and today's base values.
BEFORE = {"eval.timing_images": "10", "train.lr": "0.02", "data.old_key": "1"}
NOW = {"eval.timing_images": "10", "train.lr": "0.01", "eval.channels_last": "True"}


def test_config_changes_name_new_gone_and_changed_keys():
    assert config_changes(NOW, BEFORE) == ["data.old_key (gone)", "eval.channels_last (new)",
                                          "train.lr: 0.02 -> 0.01"]
    assert config_changes(NOW, NOW) == []
    many = [f"k{i} (new)" for i in range(6)]
    assert describe(many) == "k0 (new), k1 (new), k2 (new), k3 (new) and 2 more"


def plan(store: Path, *extra: str):
    return plan_from(["+sweep=gamma_alpha", "profile=smoke", f"tracking.uri=sqlite:///{store}",
                      "tracking.experiment=continuation", *extra])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding one parent of gamma_alpha (smoke) made under the default base config,
    and one of alpha_ce; (tracker, the gamma_alpha parent's id, the alpha_ce parent's id)."""
    store = tmp_path_factory.mktemp("continuation") / "mlflow.db"
    tracker = SweepTracker(f"sqlite:///{store}", "continuation")
    tracker.open_parent(plan(store), None)
    first = tracker.parent_id
    tracker.open_parent(plan_from(["+sweep=alpha_ce", "profile=smoke", f"tracking.uri=sqlite:///{store}",
                                   "tracking.experiment=continuation"]), None)
    return tracker, store, first, tracker.parent_id


def test_same_base_config_continues_silently(stored):
    tracker, store, first, _ = stored
    said = []
    assert parent_to_continue(tracker, plan(store), said.append).info.run_id == first
    assert said == []


def test_another_base_config_starts_anew_naming_the_old_parent_and_the_change(stored):
    tracker, store, first, _ = stored
    said = []
    assert parent_to_continue(tracker, plan(store, "eval.timing_images=5"), said.append) is None
    assert said == [f"a parent run of gamma_alpha (smoke) with another base config exists: {first} "
                    f"(eval.timing_images: 2 -> 5); starting a new parent. To continue that one "
                    f"instead, add sweep.resume_parent={first}"]
    assert parent_to_continue(tracker, plan(store, "eval.timing_images=5", "sweep.resume=false"),
                              said.append) is None and len(said) == 1  # asked for a new one: nothing said


def test_resume_parent_continues_the_named_parent_whatever_its_config(stored):
    tracker, store, first, _ = stored
    chosen = plan(store, "eval.timing_images=5", f"sweep.resume_parent={first}")
    assert parent_to_continue(tracker, chosen, print).info.run_id == first


@pytest.mark.parametrize("which, message", [
    ("nope", "sweep.resume_parent=nope: no such run in sqlite:///"),
    ("other", "is the parent of alpha_ce (smoke), not of gamma_alpha (smoke)"),
])
def test_resume_parent_must_be_a_parent_of_this_sweep(stored, which, message):
    tracker, store, _, other = stored
    run_id = other if which == "other" else which
    with pytest.raises(ConfigError, match=re.escape(message)):
        parent_to_continue(tracker, plan(store, f"sweep.resume_parent={run_id}"), print)


def test_resume_parent_with_resume_false_is_a_contradiction(tmp_path):
    with pytest.raises(ConfigError, match="contradict"):
        plan(tmp_path / "mlflow.db", "sweep.resume_parent=abc", "sweep.resume=false")
