"""Per sweep, the paper's table layout with our numbers beside the paper's.

| sweep | table(s) | rows |
|---|---|---|
| alpha_ce | table1a | alpha (CE, gamma = 0) |
| gamma_alpha | table1b, table1b_grid | gamma with its best alpha; the gamma x alpha grid |
| anchors | table1c | (#scales, #aspect ratios) |
| ohem | table1d | (method, batch, NMS) |
| speed_accuracy | table1e | (depth, scale) |
| fl_star | table3 | (loss, gamma, beta) |
| search (and any other) | trials | one per trial, sorted by AP |

Rows are the union of ours and the paper's, matched by value with float
tolerance; whichever side lacks a row shows "—". Ours are percent with one
decimal, mean ± sample std over seeds; the best of our rows is highlighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from analysis import keys
from analysis.aggregate import Group, Key, best_group, best_per_first_key, group_trials
from analysis.paper import PaperTable, load_paper, same_value
from analysis.runs import SweepRecord, TrialRecord
from analysis.table import MISSING, Cell, Column, Row, Table, group_cell, key_cell, paper_cell

AP3 = ("AP", "AP50", "AP75")
ALL_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL", "ms_per_image")
HEADERS = {"ms_per_image": "ms", "time_ms": "ms (M40)"}
METHOD_ORDER = {"CE": 0, "OHEM": 1, "OHEM 1:3": 2, "FL": 3, "FL*": 4}


@dataclass(frozen=True)
class Spec:
    """A comparison table: our groups keyed like the paper's rows.

    key_columns: (paper column name, header) of the row key, in `key`'s order;
    metrics: ours shown; paper_metrics: the paper's columns shown beside them.
    """

    name: str
    title: str
    paper: str
    key: Callable[[TrialRecord], tuple]
    key_columns: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...] = AP3
    paper_metrics: tuple[str, ...] = AP3
    order: Callable[[Key], Any] | None = None


def _ohem_order(key: Key) -> Any:
    method, batch, nms = key  # the paper's order: NMS .7 then .5, batch ascending
    return (METHOD_ORDER.get(method, 9), -(nms or 0), batch or 0)


SPECS = {
    "alpha_ce": Spec("table1a", "Table 1a: alpha-balanced CE (gamma = 0) over alpha",
                     "table1a_alpha_ce", keys.alpha_key, (("alpha", "α"),)),
    "anchors": Spec("table1c", "Table 1c: anchor scales per octave x aspect ratios",
                    "table1c_anchors", keys.anchors_key,
                    (("num_scales", "#sc"), ("num_aspects", "#ar")),
                    order=lambda k: _sortable((k[1], k[0]))),
    "ohem": Spec("table1d", "Table 1d: OHEM vs focal loss",
                 "table1d_ohem", keys.ohem_key,
                 (("method", "method"), ("batch_size", "batch"), ("nms_threshold", "nms")),
                 order=_ohem_order),
    "speed_accuracy": Spec("table1e", "Table 1e: speed vs accuracy (depth x input scale)",
                           "table1e_speed_accuracy", keys.speed_key,
                           (("depth", "depth"), ("scale", "scale")),
                           metrics=ALL_METRICS,
                           paper_metrics=("AP", "AP50", "AP75", "APS", "APM", "APL", "time_ms")),
    "fl_star": Spec("table3", "Appendix Table 3: FL* vs FL and CE",
                    "appendix_table3_fl_star", keys.fl_star_key,
                    (("loss", "loss"), ("gamma", "γ"), ("beta", "β")),
                    order=lambda k: (METHOD_ORDER.get(k[0], 9),) + _sortable(k[1:])),
}
SEARCH_COLUMNS = (
    ("loss.alpha", "α"),
    ("loss.gamma", "γ"),
    ("model.anchors.scales_per_octave", "scales"),
    ("model.anchors.aspect_ratios", "ratios"),
)


def build_tables(sweep: SweepRecord, paper: dict[str, PaperTable] | None = None) -> list[Table]:
    """The tables of a sweep, by its name (an unknown name gets the trials table)."""
    paper = load_paper() if paper is None else paper
    if sweep.name == "gamma_alpha":
        return [gamma_best_alpha_table(sweep.trials, paper["table1b_gamma_alpha"]),
                gamma_alpha_grid_table(sweep.trials)]
    if sweep.name in SPECS:
        spec = SPECS[sweep.name]
        return [comparison_table(spec, sweep.trials, paper[spec.paper])]
    columns = SEARCH_COLUMNS if sweep.name == "search" else _override_columns(sweep.trials)
    return [trials_table(sweep.trials, columns, f"{sweep.name}: trials sorted by AP")]


def comparison_table(spec: Spec, trials: Sequence[TrialRecord], paper: PaperTable) -> Table:
    """Ours beside the paper's, one row per key of either side."""
    groups = group_trials(trials, spec.key)
    names = [name for name, _ in spec.key_columns]
    row_keys = _union_keys(list(groups), [tuple(r[n] for n in names) for r in paper.rows])
    row_keys.sort(key=spec.order or _sortable)
    best = best_group(groups.values())
    rows = []
    for key in row_keys:
        group = groups.get(key)
        ours = [group_cell(group, m) for m in spec.metrics]
        row = _row([key_cell(v) for v in key], ours, group, best)
        row.cells += _paper_cells(paper.find(dict(zip(names, key))), spec.paper_metrics)
        rows.append(row)
    columns = _key_columns(spec.key_columns) + _metric_columns(spec.metrics, spec.paper_metrics)
    return _finish(Table(spec.name, spec.title, columns, rows), groups.values(), names)


def gamma_best_alpha_table(trials: Sequence[TrialRecord], paper: PaperTable) -> Table:
    """Table 1b: per gamma, the alpha with the best mean AP over seeds, as the paper reports."""
    groups = group_trials(trials, keys.gamma_alpha_key)
    per_gamma = best_per_first_key(groups.values())
    row_keys = _union_keys([(g,) for g in per_gamma], [(r["gamma"],) for r in paper.rows])
    row_keys.sort(key=_sortable)
    best = best_group(per_gamma.values())
    rows = []
    for (gamma,) in row_keys:
        group = per_gamma.get(gamma)
        alpha = key_cell(group.key[1] if group and group.mean() is not None else None)
        ours = [alpha] + [group_cell(group, m) for m in AP3]
        row = _row([key_cell(gamma)], ours, group, best)
        found = paper.find({"gamma": gamma})
        row.cells += _paper_cells(found, ("alpha",) + AP3, decimals={"alpha": None})
        rows.append(row)
    columns = [Column("gamma", "γ", "key"), Column("alpha", "best α", "ours")]
    columns += _metric_columns(AP3, ())
    columns += [Column("paper_alpha", "paper α", "paper")] + _metric_columns((), AP3)
    title = "Table 1b: focal loss over gamma, each with its best alpha"
    return _finish(Table("table1b", title, columns, rows), groups.values(), ["gamma", "alpha"])


def gamma_alpha_grid_table(trials: Sequence[TrialRecord]) -> Table:
    """The full gamma x alpha grid of our AP (the paper prints only the best alpha)."""
    groups = group_trials(trials, keys.gamma_alpha_key)
    gammas = sorted({k[0] for k in groups}, key=lambda v: _sortable((v,)))
    alphas = sorted({k[1] for k in groups}, key=lambda v: _sortable((v,)))
    per_gamma = best_per_first_key(groups.values())
    best = best_group(per_gamma.values())
    rows = [_grid_row(gamma, alphas, groups, per_gamma.get(gamma), best) for gamma in gammas]
    columns = [Column("gamma", "γ", "key")]
    columns += [Column(f"alpha={_text(a)}", f"α={_text(a)}", "ours") for a in alphas]
    title = "Table 1b (full grid): our AP over gamma x alpha; bold: best alpha per gamma"
    table = _finish(Table("table1b_grid", title, columns, rows), groups.values(), ["gamma", "alpha"])
    table.show_n = False  # each cell says its own n
    return table


def trials_table(
    trials: Sequence[TrialRecord], value_columns: Sequence[tuple[str, str]], title: str
) -> Table:
    """One row per trial, sorted by AP (unfinished last), with the config values that vary."""
    groups = group_trials(trials, keys.search_key)
    ordered = sorted(groups.values(), key=_by_ap_descending)
    best = best_group(ordered)
    stopped = any(t.early_stopped for t in trials)  # ASHA: its AP is from fewer iterations
    rows = []
    for group in ordered:
        trial = group.trials[0]
        values = [key_cell(trial.value(dotted), digits=4) for dotted, _ in value_columns]
        values += [Cell("yes" if trial.early_stopped else "no")] if stopped else []
        ours = [group_cell(group, m) for m in AP3 + ("ms_per_image",)]
        rows.append(_row([Cell(trial.run_id[:8])] + values, ours, group, best))
    columns = [Column("run", "run", "key")]
    columns += [Column(dotted, header, "key") for dotted, header in value_columns]
    columns += [Column("early_stopped", "stopped early", "key")] if stopped else []
    columns += _metric_columns(AP3 + ("ms_per_image",), ())
    return _finish(Table("trials", title, columns, rows), groups.values(), ["run"])


def _grid_row(gamma: Any, alphas: list, groups: dict, chosen: Group | None, best: Group | None) -> Row:
    cells = [key_cell(gamma)]
    members = [groups.get((gamma, alpha)) for alpha in alphas]
    for group in members:
        cell = group_cell(group, "AP", show_n=True)
        cell.bold = group is chosen and cell.value is not None
        cells.append(cell)
    present = [g for g in members if g is not None]
    statuses = {g.status for g in present}  # missing cells show "—", not in the status
    status = "missing" if not statuses else statuses.pop() if len(statuses) == 1 else "partial"
    errors = [f"alpha={_text(g.key[1])}: {g.error}" for g in present if g.error]
    best_row = best is not None and chosen is best
    if best_row:
        cells[0].bold = True
    n = sum(len(g.finished) for g in present)
    return Row(cells, best=best_row, n=n, status=status, error="; ".join(errors))


def _row(key_cells: list[Cell], ours: list[Cell], group: Group | None, best: Group | None) -> Row:
    """A row of key + ours cells; bold when its group is the best."""
    is_best = group is not None and group is best
    for cell in key_cells + ours:
        cell.bold = is_best and cell.text != MISSING
    return Row(
        cells=key_cells + ours,
        best=is_best,
        n=len(group.finished) if group else 0,
        status=group.status if group else "missing",
        error=group.error if group else "",
    )


def _paper_cells(row: dict | None, columns: Sequence[str], decimals: dict | None = None) -> list[Cell]:
    decimals = {"time_ms": None, **(decimals or {})}
    return [paper_cell(None if row is None else row.get(c), decimals.get(c, 1)) for c in columns]


def _key_columns(key_columns: Sequence[tuple[str, str]]) -> list[Column]:
    return [Column(name, header, "key") for name, header in key_columns]


def _metric_columns(ours: Sequence[str], paper: Sequence[str]) -> list[Column]:
    columns = [Column(m, HEADERS.get(m, m), "ours") for m in ours]
    return columns + [Column(f"paper_{m}", f"paper {HEADERS.get(m, m)}", "paper") for m in paper]


def _finish(table: Table, groups: Sequence[Group], key_names: Sequence[str]) -> Table:
    """Seeds column and notes on cells that failed or are incomplete."""
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


def _union_keys(ours: list[Key], theirs: list[tuple]) -> list[Key]:
    """Our keys, then the paper's keys no key of ours matches (float tolerance)."""
    union = list(ours)
    for key in theirs:
        if not any(_same_key(key, k) for k in union):
            union.append(key)
    return union


def _same_key(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))


def _sortable(key: Sequence) -> tuple:
    """A sort key for tuples mixing numbers, strings and None (None last)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) if v is not None
                 else (2, 0, "") for v in key)


def _by_ap_descending(group: Group) -> tuple[int, float]:
    """Finished groups by mean AP, best first; groups without AP after them."""
    ap = group.mean()
    return (1, 0.0) if ap is None else (0, -ap)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _override_columns(trials: Sequence[TrialRecord]) -> list[tuple[str, str]]:
    """(dotted, header) of every override key any trial has, for an unknown sweep."""
    names = sorted({name for t in trials for name in t.overrides})
    return [(name, name) for name in names]
