"""Trials -> groups: the trials of one configuration (its seeds) together, summarised.

A group is keyed by a tuple of config values (e.g. `(gamma, alpha)`); its
metrics are the mean and sample standard deviation over the seeds whose run
FINISHED, in the units the tables show (`layout.shown`: AP in percent).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

from analysis.layout import FAILED, FINISHED, RUNNING, SCHEDULED, shown
from analysis.records import TrialRecord

KEY_DIGITS = 9  # keys are rounded so 0.1 from JSON and 0.1 from a param group together

Key = tuple[Hashable, ...]


@dataclass(frozen=True)
class Stat:
    """Mean and sample std (None when n = 1) over n finished seeds, in display units."""

    mean: float
    std: float | None
    n: int


@dataclass(frozen=True)
class Group:
    """The trials of one configuration: its seeds, finished or not."""

    key: Key
    trials: tuple[TrialRecord, ...]

    @property
    def finished(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == FINISHED]

    @property
    def status(self) -> str:
        """finished (all seeds) | partial (some failed) | failed | running | killed ..."""
        statuses = {t.status for t in self.trials}
        if statuses == {FINISHED}:
            return "finished"
        if FINISHED in statuses:
            return "partial"
        for status in (RUNNING, SCHEDULED, FAILED):
            if status in statuses:
                return status.lower()
        return sorted(statuses)[0].lower()

    @property
    def error(self) -> str:
        """The error of the first failed seed ("" when none failed)."""
        return next((t.error or t.status for t in self.trials if t.status == FAILED), "")

    def values(self, metric: str) -> list[float]:
        """`metric` of each finished seed, in display units (percent for AP...)."""
        values = [shown(metric, t.metrics.get(metric)) for t in self.finished]
        return [v for v in values if v is not None]

    def stat(self, metric: str) -> Stat | None:
        """Mean/std of `metric` over finished seeds (percent for AP...); None if absent."""
        values = self.values(metric)
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else None
        return Stat(mean=statistics.fmean(values), std=std, n=len(values))

    def mean(self, metric: str = "AP") -> float | None:
        stat = self.stat(metric)
        return None if stat is None else stat.mean


def normalise(value: Any) -> Hashable:
    """A hashable, rounded form of a config value (lists become tuples)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value, KEY_DIGITS)
    if isinstance(value, (list, tuple)):
        return tuple(normalise(v) for v in value)
    return str(value)


def group_trials(
    trials: Iterable[TrialRecord], key: Callable[[TrialRecord], Key]
) -> dict[Key, Group]:
    """Trials grouped by `key(trial)` (normalised), in first-seen order."""
    members: dict[Key, list[TrialRecord]] = {}
    for trial in trials:
        members.setdefault(tuple(normalise(v) for v in key(trial)), []).append(trial)
    return {k: Group(key=k, trials=tuple(v)) for k, v in members.items()}


def best_group(groups: Iterable[Group], metric: str = "AP") -> Group | None:
    """The group with the highest mean `metric` over its finished seeds."""
    scored = [(g.mean(metric), g) for g in groups if g.mean(metric) is not None]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None
