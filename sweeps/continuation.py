"""Which parent run an invocation of a sweep continues.

A sweep continues the newest parent run of its name and profile whose base
trial config hashes the same (`SweepPlan.base_hash`): a changed base config
is another experiment and gets a new parent. An upgrade that adds a config
key (with its default) or changes a profile's value changes the hash as well,
and then the finished cells of the old parent would silently be run again.
So when no parent matches but one of another base config exists, the
invocation says so, naming the keys that differ, and
`sweep.resume_parent=<run id>` continues that parent anyway: its finished
cells count as done and the rest run with today's config (each child run
keeps its own config.yaml and params, so the mix stays visible).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from analysis import layout
from detector.config import ConfigError
from sweeps.plan import SweepPlan

CHANGES_SHOWN = 4  # keys named in the line about another config's parent; the rest are counted


def parent_to_continue(tracker: Any, plan: SweepPlan, say: Callable[[str], None]) -> Optional[Run]:
    """The parent run this invocation continues, or None for a new one.

    `sweep.resume_parent` names it outright; `sweep.resume=false` never continues;
    otherwise the newest parent with the same base config, and if there is none,
    `say` names a parent of another base config that could be continued."""
    if plan.resume_parent:
        return chosen_parent(tracker, plan)
    if not plan.resume:
        return None
    found = tracker.find_parent(plan)
    if found is None:
        other = layout.latest_parent(tracker.client, tracker.experiment_id, plan.name, plan.profile)
        if other is not None:
            say(other_config_line(plan, other))
    return found


def chosen_parent(tracker: Any, plan: SweepPlan) -> Run:
    """The run `sweep.resume_parent` names, if it is a live parent of this sweep and profile
    in this experiment (a one-line ConfigError otherwise)."""
    run_id = plan.resume_parent
    try:
        run = tracker.client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"sweep.resume_parent={run_id}: no such run in {tracker.uri}") from None
    tags = run.data.tags
    if (tags.get(layout.ROLE) != layout.ROLE_PARENT or run.info.experiment_id != tracker.experiment_id
            or run.info.lifecycle_stage != "active"):
        raise ConfigError(f"sweep.resume_parent={run_id} is not a parent run of experiment {tracker.experiment!r}")
    if (tags.get(layout.NAME), tags.get(layout.PROFILE)) != (plan.name, plan.profile):
        raise ConfigError(f"sweep.resume_parent={run_id} is the parent of {tags.get(layout.NAME)} "
                          f"({tags.get(layout.PROFILE)}), not of {plan.name} ({plan.profile})")
    return run


def other_config_line(plan: SweepPlan, other: Run) -> str:
    """What the invocation says when it starts a new parent beside one of another base config."""
    return (f"a parent run of {plan.name} ({plan.profile}) with another base config exists: "
            f"{other.info.run_id} ({describe(config_changes(shared_params(plan), dict(other.data.params)))}); "
            f"starting a new parent. To continue that one instead, add sweep.resume_parent={other.info.run_id}")


def shared_params(plan: SweepPlan) -> dict[str, str]:
    """The base values no cell changes, as the parent run logs them (its params)."""
    return {key: layout.param_text(value) for key, value in plan.shared_values.items()}


def config_changes(now: dict[str, str], before: dict[str, str]) -> list[str]:
    """Each key whose value differs between two parents' params: "key: old -> new",
    "key (new)" or "key (gone)"; sorted by key."""
    changes = []
    for key in sorted(set(now) | set(before)):
        if key not in before:
            changes.append(f"{key} (new)")
        elif key not in now:
            changes.append(f"{key} (gone)")
        elif now[key] != before[key]:
            changes.append(f"{key}: {before[key]} -> {now[key]}")
    return changes


def describe(changes: list[str]) -> str:
    """The first CHANGES_SHOWN changes, and how many more."""
    if not changes:
        return "the same shared values; the cells' keys differ"
    shown = ", ".join(changes[:CHANGES_SHOWN])
    more = len(changes) - CHANGES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
