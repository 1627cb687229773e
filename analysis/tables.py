"""A report's tables: their structure (shared with the renderers, analysis/render.py) and how
each declared table (sweep.table, analysis/declaration.py) is built, ours beside the paper's.

A `Table` is columns + rows of `Entry`s. An entry keeps its text (what
Markdown and LaTeX show: "34.0", "34.0 ± 0.3", "failed", "—") and the number
behind it, rounded as shown, so CSV and LaTeX hold the same numbers.

| declaration | table(s) | rows |
|---|---|---|
| rows (and paper) | `name` | one per row key: ours and the paper's, matched by value |
| rows + best_of (+ grid) | `name` (+ `name`_grid) | per key, its best `best_of` value; the full grid |
| no rows | `name` (default "trials") | one per trial, sorted by AP, the override keys that vary |

Whichever side lacks a row shows "—". Ours are percent with one decimal,
mean ± sample std over seeds; the best of our rows (by the first metric) is bold.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from analysis.aggregate import Group, Stat, best_group, group_trials
from analysis.declaration import TableDeclaration
from analysis.layout import COCO_METRICS, FAILED, FINISHED, SPEED_METRIC
from analysis.records import TrialRecord, split_overrides
from analysis.rows import KeyedRow, sortable, value_text
from analysis.sweep import SweepRecord

MISSING = "—"  # a cell with no run (or a value the paper does not give)


@dataclass(frozen=True)
class Column:
    """key: the CSV header (unique); header: what tables show; source: key | ours | paper."""

    key: str
    header: str
    source: str


@dataclass
class Entry:
    """One entry of a table: what one row shows in one column. `value`/`std` are rounded to
    `decimals` (None: as `:g` shows them)."""

    text: str
    value: float | None = None
    std: float | None = None
    n: int = 0  # seeds behind an "ours" value
    decimals: int | None = None
    bold: bool = False

    def number(self) -> str:
        """The value as the table shows it ("" when the cell has no number)."""
        return "" if self.value is None else _fmt(self.value, self.decimals)

    def std_text(self) -> str:
        return "" if self.std is None else _fmt(self.std, self.decimals)


@dataclass
class Row:
    """A row: its cells (one per column) and what the CSV says about its runs."""

    cells: list[Entry]
    best: bool = False  # highlighted: the best of our rows by AP
    n: int = 0  # finished runs behind the row's "ours" cells
    status: str = "missing"  # finished | partial | failed | running | missing
    error: str = ""


@dataclass
class Table:
    """A table in the paper's layout; `name` is the file stem (e.g. "table1b")."""

    name: str
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    show_n: bool = False  # add an "n" (seeds) column when showing it

    def column_cells(self, key: str) -> list[Entry]:
        """The cells of the column with this CSV key, top to bottom."""
        index = [c.key for c in self.columns].index(key)
        return [row.cells[index] for row in self.rows]


def key_entry(value: Any, digits: int | None = None) -> Entry:
    """A key entry: 0.25 -> "0.25", [0.5, 1.0] -> "0.5,1", None -> "—".

    `digits` (significant) shortens sampled floats of an open search.
    """
    if value is None:
        return Entry(MISSING)
    if isinstance(value, (list, tuple)):
        return Entry(",".join(f"{v:g}" for v in value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Entry(str(value))
    text = f"{value:.{digits}g}" if digits else f"{value:g}"
    return Entry(text, value=float(text))


def stat_entry(stat: Stat | None, status: str, decimals: int = 1, show_n: bool = False) -> Entry:
    """An "ours" entry: "34.0", "34.0 ± 0.3" (n > 1), or the status of a group without numbers."""
    if stat is None:
        return Entry(status if status in ("failed", "running", "killed") else MISSING)
    value = round(stat.mean, decimals)
    std = None if stat.std is None else round(stat.std, decimals)
    text = _fmt(value, decimals)
    if std is not None:
        text += f" ± {_fmt(std, decimals)}"
    if show_n and stat.n > 1:
        text += f" (n={stat.n})"
    return Entry(text, value=value, std=std, n=stat.n, decimals=decimals)


def group_entry(group: Group | None, metric: str, decimals: int = 1, show_n: bool = False) -> Entry:
    """The "ours" entry of `metric` for a group of seeds (None: no run -> "—")."""
    if group is None:
        return Entry(MISSING)
    return stat_entry(group.stat(metric), group.status, decimals, show_n)


def paper_entry(value: Any, decimals: int | None = 1) -> Entry:
    """A paper number: AP with one decimal, times as printed; None -> "—"."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return key_entry(value)
    return Entry(_fmt(value, decimals), value=float(value), decimals=decimals)


def _fmt(value: float, decimals: int | None) -> str:
    return f"{value:g}" if decimals is None else f"{value:.{decimals}f}"


# -- the declared tables ------------------------------------------------------------
METRIC_HEADERS = {SPEED_METRIC: "ms"}  # a declaration's `headers` may say more


def build_tables(sweep: SweepRecord) -> list[Table]:
    """The tables the sweep's declaration asks for."""
    declaration = sweep.table
    if declaration.trials:
        title = declaration.title or f"{sweep.name}: trials sorted by {declaration.rank_metric}"
        table = trials_table(declaration, sweep.trials, title)
        _add_speed_note(table, declaration, sweep.trials)
        return [table]
    groups = list(sweep.groups.values())
    title = declaration.title or f"{sweep.name}: ours" + (f" beside {declaration.paper}" if sweep.paper else "")
    tables = [comparison_table(declaration, sweep.rows, groups, title)]
    _add_speed_note(tables[0], declaration, sweep.trials)
    if declaration.grid:
        tables.append(grid_table(declaration, sweep.rows, groups))
    return tables


def comparison_table(declaration: TableDeclaration, rows: Sequence[KeyedRow], groups: Sequence[Group],
                     title: str) -> Table:
    """One row per key: key cells, ours (the chosen best_of value first), the paper's."""
    best = best_group([r.group for r in rows if r.group is not None], declaration.rank_metric)
    paper_columns = ((declaration.best_of,) if declaration.best_of else ()) + declaration.paper_metrics
    table_rows = []
    for keyed in rows:
        ours = [key_entry(keyed.choice(declaration))] if declaration.best_of else []
        ours += [group_entry(keyed.group, m) for m in declaration.metrics]
        row = _row([key_entry(v) for v in keyed.key], ours, keyed.group, best)
        if declaration.paper:
            row.cells += [_paper_entry(keyed.paper, c) for c in paper_columns]
        table_rows.append(row)
    table = Table(declaration.name, title, _columns(declaration), table_rows)
    return _finish(table, groups, declaration.columns)


def grid_table(declaration: TableDeclaration, rows: Sequence[KeyedRow], groups: Sequence[Group]) -> Table:
    """Our rank metric over row key x every best_of value (the paper prints only the best)."""
    at = declaration.columns.index(declaration.best_of)
    values = sorted({g.key[at] for g in groups}, key=lambda v: sortable((v,)))
    ours = [r for r in rows if r.candidates]
    best = best_group([r.group for r in ours if r.group is not None], declaration.rank_metric)
    table_rows = [_grid_row(declaration, r, values, at, best) for r in ours]
    name, metric = declaration.best_of, declaration.rank_metric
    keys = declaration.key_columns
    columns = [Column(c, declaration.header(c), "key") for c in keys]
    columns += [Column(f"{name}={value_text(v)}", f"{declaration.header(name)}={value_text(v)}", "ours")
                for v in values]
    title = declaration.grid_title or (f"{declaration.short_title} (full grid): our {metric} over "
                                       f"{' x '.join(keys)} x {name}; bold: best {name} per {', '.join(keys)}")
    table = _finish(Table(f"{declaration.name}_grid", title, columns, table_rows), groups, declaration.columns)
    table.show_n = False  # each cell says its own n
    return table


def trials_table(declaration: TableDeclaration, trials: Sequence[TrialRecord], title: str) -> Table:
    """One row per trial, sorted by the rank metric (unfinished last), with the config values that vary."""
    metric = declaration.rank_metric
    groups = group_trials(trials, lambda t: (t.run_id,))
    ordered = sorted(groups.values(), key=lambda g: (1, 0.0) if g.mean(metric) is None else (0, -g.mean(metric)))
    best = best_group(ordered, metric)
    varying = split_overrides(trials)[1]
    stopped = any(t.early_stopped for t in trials)  # ASHA: its AP is from fewer iterations
    rows = []
    for group in ordered:
        trial = group.trials[0]
        values = [key_entry(trial.value(dotted), digits=4) for dotted in varying]
        values += [Entry("yes" if trial.early_stopped else "no")] if stopped else []
        ours = [group_entry(group, m) for m in declaration.metrics]
        rows.append(_row([Entry(trial.run_id[:8])] + values, ours, group, best))
    columns = [Column("run", "run", "key")]
    columns += [Column(dotted, declaration.header(dotted), "key") for dotted in varying]
    columns += [Column("early_stopped", "stopped early", "key")] if stopped else []
    columns += _metric_columns(declaration, declaration.metrics, "ours")
    return _finish(Table(declaration.name, title, columns, rows), list(groups.values()), ["run"])


def _columns(declaration: TableDeclaration) -> list[Column]:
    """Key columns; ours (best_of's choice, metrics); the paper's (its best_of value, metrics)."""
    columns = [Column(c, declaration.header(c), "key") for c in declaration.key_columns]
    best_of = declaration.best_of
    if best_of:
        columns.append(Column(best_of, f"best {declaration.header(best_of)}", "ours"))
    columns += _metric_columns(declaration, declaration.metrics, "ours")
    if declaration.paper:
        if best_of:
            columns.append(Column(f"paper_{best_of}", f"paper {declaration.header(best_of)}", "paper"))
        columns += _metric_columns(declaration, declaration.paper_metrics, "paper")
    return columns


def _metric_columns(declaration: TableDeclaration, metrics: Sequence[str], source: str) -> list[Column]:
    prefix = "paper_" if source == "paper" else ""
    return [Column(f"{prefix}{m}", f"{prefix.replace('_', ' ')}{_metric_header(declaration, m)}", source)
            for m in metrics]


def _metric_header(declaration: TableDeclaration, metric: str) -> str:
    return declaration.headers.get(metric, METRIC_HEADERS.get(metric, metric))


def _paper_entry(row: Optional[Mapping[str, Any]], column: str) -> Entry:
    """AP-type numbers with one decimal; others (times, alpha) as the paper prints them."""
    return paper_entry(None if row is None else row.get(column), 1 if column in COCO_METRICS else None)


def _grid_row(declaration: TableDeclaration, keyed: KeyedRow, values: list, at: int, best: Optional[Group]) -> Row:
    by_value = {g.key[at]: g for g in keyed.candidates}
    cells = [key_entry(v) for v in keyed.key]
    members = [by_value.get(v) for v in values]
    for group in members:
        cell = group_entry(group, declaration.rank_metric, show_n=True)
        cell.bold = group is keyed.group and cell.value is not None
        cells.append(cell)
    present = [g for g in members if g is not None]
    statuses = {g.status for g in present}  # missing cells show "—", not in the status
    status = "missing" if not statuses else statuses.pop() if len(statuses) == 1 else "partial"
    errors = [f"{declaration.best_of}={value_text(g.key[at])}: {g.error}" for g in present if g.error]
    best_row = best is not None and keyed.group is best
    for cell in cells[:len(keyed.key)]:
        cell.bold = best_row
    n = sum(len(g.finished) for g in present)
    return Row(cells, best=best_row, n=n, status=status, error="; ".join(errors))


def _row(key_cells: list[Entry], ours: list[Entry], group: Optional[Group], best: Optional[Group]) -> Row:
    """A row of key + ours cells; bold when its group is the best."""
    is_best = group is not None and group is best
    for cell in key_cells + ours:
        cell.bold = is_best and cell.text != MISSING
    return Row(cells=key_cells + ours, best=is_best, n=len(group.finished) if group else 0,
               status=group.status if group else "missing", error=group.error if group else "")


def _finish(table: Table, groups: Iterable[Group], key_names: Sequence[str]) -> Table:
    """Seeds column and notes on cells that failed or are incomplete."""
    groups = list(groups)
    table.show_n = any(len(g.trials) > 1 for g in groups)
    for group in groups:
        if group.status == "finished":
            continue
        where = ", ".join(f"{n}={value_text(v)}" for n, v in zip(key_names, group.key))
        failed = sum(t.status == FAILED for t in group.trials)
        detail = f"{failed} of {len(group.trials)} runs failed" if failed else group.status
        error = f": {group.error[:160]}" if group.error else ""
        table.notes.append(f"{where}: {detail}{error}")
    return table


def speed_note(trials: Sequence[TrialRecord]) -> Optional[str]:
    """How the ms column was measured, in one line: a rise in ms means something
    only beyond the spread between timing passes (None: no finished trial was timed)."""
    timed = [t for t in trials if t.status == FINISHED and SPEED_METRIC in t.metrics]
    if not timed:
        return None
    spreads = [t.speed_spread for t in timed if t.quiet_timing and t.speed_spread is not None]
    if not spreads:
        return ("ms: timed inside each trial while other trials trained beside it; "
                "`sweep.timing=quiet` times every model again, alone, after the trials")
    return (f"ms: median of the quiet timing passes, one model at a time after the trials "
            f"({len(spreads)} of {len(timed)} models); spread between passes, (slowest - fastest) / median: "
            f"median {statistics.median(spreads):.1%}, max {max(spreads):.1%}")


def _add_speed_note(table: Table, declaration: TableDeclaration, trials: Sequence[TrialRecord]) -> None:
    note = speed_note(trials) if SPEED_METRIC in declaration.metrics else None
    if note:
        table.notes.append(note)
