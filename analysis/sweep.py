"""A sweep as a report sees it: built once, read by the tables, findings, plots and the HTML page.

`SweepRecord` holds what analysis/runs.py read from MLflow (the parent run's
tags, the table declaration, the trials with their per-class AP) and, built
on first use and then kept, the paper's table and our keyed rows: every part
of a report reads the same rows, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Optional

from analysis.aggregate import Group, Key, group_trials
from analysis.declaration import TableDeclaration
from analysis.paper import PaperTable, load_paper
from analysis.records import TrialRecord
from analysis.rows import KeyedRow, keyed_rows


@dataclass(frozen=True)
class SweepRecord:
    """A parent run, its table declaration and its trials (one record per cell key,
    see `layout.latest_per_cell`)."""

    run_id: str
    name: str  # sweep.name, e.g. "gamma_alpha"
    profile: str  # sweep.profile, e.g. "cpu"
    kind: str  # sweep.kind: "grid" | "search"
    status: str
    trials: list[TrialRecord]
    table: TableDeclaration = field(default_factory=TableDeclaration)  # sweep.table, parsed
    tags: dict[str, str] = field(default_factory=dict)  # the parent's tags: the command, git state, versions
    experiment_id: str = ""  # where the runs are (the page's MLflow links)

    @property
    def papers(self) -> Mapping[str, PaperTable]:
        """Every table of the paper (plots draw other tables beside the declared one)."""
        return load_paper()

    @property
    def paper(self) -> Optional[PaperTable]:
        """The paper's table the declaration names (None: no paper)."""
        return self.papers[self.table.paper] if self.table.paper else None

    @cached_property
    def groups(self) -> dict[Key, Group]:
        """Our trials grouped by every row column (their seeds together), in first-seen order."""
        return group_trials(self.trials, lambda trial: self.table.row_values(trial.value))

    @cached_property
    def rows(self) -> list[KeyedRow]:
        """Our groups keyed like the paper's rows, beside the paper's, in the declared order."""
        return keyed_rows(self.table, self.groups, self.paper)

    def candidates(self) -> list[Group]:
        """Every group of ours, row by row (with best_of: every candidate, not only the chosen)."""
        return [g for row in self.rows for g in row.candidates]
