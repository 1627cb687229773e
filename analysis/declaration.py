"""A sweep's table declaration, parsed (analysis/parse.py reads `sweep.table` into it).

Plain frozen data: what each row column derives from, how rows sort, the
plot and the findings declared, and how the findings are decided. The
schema and its one-line errors are analysis/parse.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from analysis import layout
from analysis.derive import DERIVATIONS, Getter
from analysis.design import VerdictDesign
from analysis.paper import same_value

AP3 = ("AP", "AP50", "AP75")
TRIALS_METRICS = AP3 + (layout.SPEED_METRIC,)


@dataclass(frozen=True)
class RowSource:
    """Where a row column's value comes from: a derivation of the trial's config."""

    column: str  # the paper's column name, e.g. "num_aspects"
    derivation: str  # a name in analysis/derive.py's DERIVATIONS
    argument: str  # its dotted config path (or prefix)
    only_if: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (column, allowed values): else blank

    def raw_value(self, get: Getter) -> Any:
        """The derived value, before `only_if`."""
        return DERIVATIONS[self.derivation](get, self.argument)


@dataclass(frozen=True)
class OrderItem:
    """One sort key of the rows: a column, ascending unless `descending`, or in `values`' order."""

    column: str
    descending: bool = False
    values: Optional[tuple[Any, ...]] = None


@dataclass(frozen=True)
class PlotDeclaration:
    """A plot kind of analysis/plots.py and its options."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass(frozen=True)
class TableDeclaration:
    """A parsed `sweep.table`; `raw` is the plain dict it came from (what the parent run logs)."""

    name: str = "trials"
    title: Optional[str] = None
    paper: Optional[str] = None
    rows: tuple[RowSource, ...] = ()
    best_of: Optional[str] = None
    grid: bool = False
    grid_title: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[str, ...] = TRIALS_METRICS
    paper_metrics: tuple[str, ...] = ()
    order_by_paper: bool = False
    order: tuple[OrderItem, ...] = ()
    plot: Optional[PlotDeclaration] = None
    findings: tuple[str, ...] = ()
    verdicts: VerdictDesign = VerdictDesign()
    raw: dict[str, Any] = field(default_factory=dict)  # plain, JSON-able

    @property
    def trials(self) -> bool:
        """No rows declared: the table lists the trials, one row each."""
        return not self.rows

    @property
    def columns(self) -> tuple[str, ...]:
        """Every row column, as declared (the key of a group of seeds)."""
        return tuple(source.column for source in self.rows)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns a table row is keyed by: all but `best_of`."""
        return tuple(c for c in self.columns if c != self.best_of)

    @property
    def rank_metric(self) -> str:
        """The metric that ranks rows (best row, best_of): the first of `metrics`."""
        return self.metrics[0]

    @property
    def short_title(self) -> str:
        """The paper's name of the table, e.g. "Table 1b" (the title before its colon)."""
        return (self.title or self.name).split(":")[0]

    def header(self, column: str) -> str:
        return self.headers.get(column, column)

    def row_values(self, get: Getter) -> tuple[Any, ...]:
        """The row columns' values of one trial, `only_if` applied."""
        raw = {source.column: source.raw_value(get) for source in self.rows}
        return tuple(None if not _holds(source, raw) else raw[source.column] for source in self.rows)


def _holds(source: RowSource, raw: Mapping[str, Any]) -> bool:
    """`only_if` of a row column: every named column's raw value is among its allowed values."""
    return all(any(same_value(raw.get(column), v) for v in allowed) for column, allowed in source.only_if)
