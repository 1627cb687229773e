"""A sweep's declared table(s) (sweep.table, analysis/declaration.py), ours beside the paper's.

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
from typing import Any, Iterable, Mapping, Optional, Sequence

from analysis.aggregate import Group, best_group, group_trials, normalise
from analysis.declaration import TableDeclaration
from analysis.layout import COCO_METRICS, FINISHED, SPEED_METRIC
from analysis.paper import PaperTable, load_paper
from analysis.rows import KeyedRow, keyed_rows, our_groups, sortable
from analysis.runs import SweepRecord, TrialRecord
from analysis.table import MISSING, Cell, Column, Row, Table, group_cell, key_cell, paper_cell

METRIC_HEADERS = {SPEED_METRIC: "ms"}  # a declaration's `headers` may say more


def build_tables(sweep: SweepRecord, paper: Optional[Mapping[str, PaperTable]] = None) -> list[Table]:
    """The tables the sweep's declaration asks for."""
    declaration = sweep.table
    if declaration.trials:
        title = declaration.title or f"{sweep.name}: trials sorted by {declaration.rank_metric}"
        table = trials_table(declaration, sweep.trials, title)
        _add_speed_note(table, declaration, sweep.trials)
        return [table]
    paper_table = (paper or load_paper())[declaration.paper] if declaration.paper else None
    groups = our_groups(declaration, sweep.trials)
    rows = keyed_rows(declaration, groups, paper_table)
    title = declaration.title or f"{sweep.name}: ours" + (f" beside {declaration.paper}" if paper_table else "")
    tables = [comparison_table(declaration, rows, list(groups.values()), title)]
    _add_speed_note(tables[0], declaration, sweep.trials)
    if declaration.grid:
        tables.append(grid_table(declaration, rows, list(groups.values())))
    return tables


def comparison_table(declaration: TableDeclaration, rows: Sequence[KeyedRow], groups: Sequence[Group],
                     title: str) -> Table:
    """One row per key: key cells, ours (the chosen best_of value first), the paper's."""
    best = best_group([r.group for r in rows if r.group is not None], declaration.rank_metric)
    paper_columns = ((declaration.best_of,) if declaration.best_of else ()) + declaration.paper_metrics
    table_rows = []
    for keyed in rows:
        ours = [key_cell(keyed.choice(declaration))] if declaration.best_of else []
        ours += [group_cell(keyed.group, m) for m in declaration.metrics]
        row = _row([key_cell(v) for v in keyed.key], ours, keyed.group, best)
        if declaration.paper:
            row.cells += [_paper_cell(keyed.paper, c) for c in paper_columns]
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
    columns += [Column(f"{name}={_text(v)}", f"{declaration.header(name)}={_text(v)}", "ours") for v in values]
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
    varying = varying_overrides(trials)
    stopped = any(t.early_stopped for t in trials)  # ASHA: its AP is from fewer iterations
    rows = []
    for group in ordered:
        trial = group.trials[0]
        values = [key_cell(trial.value(dotted), digits=4) for dotted in varying]
        values += [Cell("yes" if trial.early_stopped else "no")] if stopped else []
        ours = [group_cell(group, m) for m in declaration.metrics]
        rows.append(_row([Cell(trial.run_id[:8])] + values, ours, group, best))
    columns = [Column("run", "run", "key")]
    columns += [Column(dotted, declaration.header(dotted), "key") for dotted in varying]
    columns += [Column("early_stopped", "stopped early", "key")] if stopped else []
    columns += _metric_columns(declaration, declaration.metrics, "ours")
    return _finish(Table(declaration.name, title, columns, rows), list(groups.values()), ["run"])


def varying_overrides(trials: Sequence[TrialRecord]) -> list[str]:
    """The override keys whose value differs between trials, sorted (all of them for one trial)."""
    names = sorted({name for t in trials for name in t.overrides})
    if len(trials) < 2:
        return names
    return [n for n in names if len({repr(normalise(t.value(n))) for t in trials}) > 1]


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


def _paper_cell(row: Optional[Mapping[str, Any]], column: str) -> Cell:
    """AP-type numbers with one decimal; others (times, alpha) as the paper prints them."""
    return paper_cell(None if row is None else row.get(column), 1 if column in COCO_METRICS else None)


def _grid_row(declaration: TableDeclaration, keyed: KeyedRow, values: list, at: int, best: Optional[Group]) -> Row:
    by_value = {g.key[at]: g for g in keyed.candidates}
    cells = [key_cell(v) for v in keyed.key]
    members = [by_value.get(v) for v in values]
    for group in members:
        cell = group_cell(group, declaration.rank_metric, show_n=True)
        cell.bold = group is keyed.group and cell.value is not None
        cells.append(cell)
    present = [g for g in members if g is not None]
    statuses = {g.status for g in present}  # missing cells show "—", not in the status
    status = "missing" if not statuses else statuses.pop() if len(statuses) == 1 else "partial"
    errors = [f"{declaration.best_of}={_text(g.key[at])}: {g.error}" for g in present if g.error]
    best_row = best is not None and keyed.group is best
    for cell in cells[:len(keyed.key)]:
        cell.bold = best_row
    n = sum(len(g.finished) for g in present)
    return Row(cells, best=best_row, n=n, status=status, error="; ".join(errors))


def _row(key_cells: list[Cell], ours: list[Cell], group: Optional[Group], best: Optional[Group]) -> Row:
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
        where = ", ".join(f"{n}={_text(v)}" for n, v in zip(key_names, group.key))
        failed = sum(t.status == "FAILED" for t in group.trials)
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


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
