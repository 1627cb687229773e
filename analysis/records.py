"""A sweep's trials as plain values: one `TrialRecord` per child run, as analysis/runs.py reads it.

Plain data and no MLflow, so grouping, tables and tests build on it without a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from analysis.layout import format_value


@dataclass(frozen=True)
class TrialRecord:
    """One child run (one trial of one cell and seed), as plain values.

    `metrics` holds the final metrics that were logged: AP, AP50, AP75, APS,
    APM, APL as fractions in [0, 1] (COCOeval's -1 for "no such objects" is
    kept) and `ms_per_image` in milliseconds.
    """

    run_id: str
    cell: str  # sweep.cell, e.g. "loss.alpha=0.25,loss.gamma=2.0,seed=0"
    overrides: dict[str, Any]  # sweep.overrides, e.g. {"loss.alpha": 0.25}
    seed: int | None
    status: str  # FINISHED | FAILED | RUNNING | SCHEDULED | KILLED
    error: str  # the `error` tag ("" when absent)
    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)  # flattened config, as logged
    start_time: int = 0  # ms since the epoch
    early_stopped: bool = False  # a search trial ASHA stopped (FINISHED, fewer iterations)
    quiet_timing: bool = False  # ms_per_image re-measured after the trials, one model at a time
    speed_spread: float | None = None  # (slowest - fastest) / median of those timing passes
    per_class: dict[str, float] = field(default_factory=dict)  # {category: AP fraction} (-1: no ground truth)

    def value(self, dotted: str, default: Any = None) -> Any:
        """A config value of the trial: its override, else its logged param."""
        if dotted in self.overrides:
            return self.overrides[dotted]
        if dotted in self.params:
            return parse_param(self.params[dotted])
        return default


def parse_param(text: str) -> Any:
    """An MLflow param string back to a value: "0.25" -> 0.25, "None" -> None, "[1, 2]" -> [1, 2]."""
    if text in ("None", "null", ""):
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:  # free text (a path with a colon, ...): keep it as logged
        return text


def split_overrides(trials: Sequence[TrialRecord]) -> tuple[dict[str, Any], list[str]]:
    """(the overrides every trial has with the same value, the sorted keys whose value differs).

    With fewer than two trials nothing is shared: every key is what the trial changed."""
    keys = sorted({k for t in trials for k in t.overrides})
    if len(trials) < 2:
        return {}, keys
    shared = {k: trials[0].overrides[k] for k in keys
              if all(k in t.overrides for t in trials)
              and len({format_value(t.overrides[k]) for t in trials}) == 1}
    return shared, [k for k in keys if k not in shared]


def status_summary(trials: Sequence[TrialRecord]) -> str:
    """e.g. "2 failed, 8 finished" ("" for no trials)."""
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
