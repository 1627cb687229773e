"""The paper's findings (reference/findings.yaml), evaluated on a sweep's table rows.

A finding names a reference table, a comparison kind (`COMPARISONS`) and its
operands as row keys of that table. Evaluating it picks the operand rows
among ours and among the paper's, hands our seed values to the verdict rule
of analysis/findings.py, and computes the paper's number the same way from
its table. The result (`FindingResult`) is what the report prints and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import yaml

from analysis import findings as rules
from analysis.aggregate import Group, best_group
from analysis.errors import DeclarationError
from analysis.layout import FINAL_METRICS, SPEED_METRIC
from analysis.paper import PaperTable, load_paper
from analysis.rows import KeyedRow, keyed_rows, matches, our_groups, select, sortable

if TYPE_CHECKING:
    from analysis.declaration import TableDeclaration
    from analysis.runs import SweepRecord

FINDINGS_FILE = Path(__file__).with_name("reference") / "findings.yaml"
FIELDS = ("statement", "table", "compare", "a", "b", "margin", "along", "of", "metric", "paper_metric")


@dataclass(frozen=True)
class Finding:
    """One finding of the paper, as findings.yaml states it."""

    id: str
    statement: str
    table: str
    compare: str
    a: Optional[Mapping[str, Any]] = None
    b: Optional[Mapping[str, Any]] = None
    margin: Optional[float] = None
    along: Optional[str] = None
    of: Optional[str] = None
    metric: str = "AP"
    paper_metric: str = "AP"

    def columns(self) -> set[str]:
        """The row columns it names."""
        named = {self.along} if self.along else set()
        for operand in (self.a, self.b):
            for key, value in (operand or {}).items():
                named |= set(value) if key == "not" else {key}
        return named


@dataclass(frozen=True)
class FindingResult:
    """A finding evaluated on a sweep: our estimate, the paper's number, the verdict."""

    id: str
    statement: str
    verdict: str  # reproduced | not reproduced | inconclusive
    ours: str  # as shown, e.g. "+2.1 [+0.4, +3.8]"
    paper: str  # as shown, e.g. "+2.9"
    estimate: Optional[float]  # our number (a difference, a mean, the weakest step...)
    low: Optional[float]  # its 95% interval over seeds (None: no interval)
    high: Optional[float]
    paper_value: Optional[float]
    n: int  # the fewest finished seeds behind a compared cell
    unit: str  # "AP" (points) or "ms"
    compared: str  # which rows were compared, and why the verdict


@dataclass(frozen=True)
class Comparison:
    """A comparison kind: the fields it needs and how it is evaluated."""

    fields: tuple[str, ...]
    evaluate: Callable[["Finding", "Context"], FindingResult]


@dataclass(frozen=True)
class Context:
    """What a finding is evaluated on: our rows and the paper's table."""

    declaration: "TableDeclaration"
    rows: Sequence[KeyedRow]
    paper: PaperTable

    @property
    def columns(self) -> tuple[str, ...]:
        return self.declaration.key_columns


def sweep_findings(sweep: "SweepRecord", paper: Optional[Mapping[str, PaperTable]] = None) -> list[FindingResult]:
    """The findings the sweep's declaration lists, evaluated on its runs."""
    declaration = sweep.table
    if not declaration.findings or declaration.paper is None:
        return []
    paper_table = (paper or load_paper())[declaration.paper]
    rows = keyed_rows(declaration, our_groups(declaration, sweep.trials), paper_table)
    return evaluate_all(declaration, rows, paper_table)


def evaluate_all(declaration: "TableDeclaration", rows: Sequence[KeyedRow],
                 paper: PaperTable) -> list[FindingResult]:
    """Each listed finding on these rows."""
    known = load_findings()
    context = Context(declaration, rows, paper)
    return [evaluate(known[i], context) for i in declaration.findings]


def evaluate(finding: Finding, context: Context) -> FindingResult:
    return COMPARISONS[finding.compare].evaluate(finding, context)


# -- the comparison kinds ---------------------------------------------------------
def _difference(rule: Callable[..., rules.Outcome]) -> Callable[[Finding, Context], FindingResult]:
    """beats / on_par: the best row of a against the best row of b."""

    def evaluate(finding: Finding, context: Context) -> FindingResult:
        ra, rb = (_pick(context, operand, finding.metric) for operand in (finding.a, finding.b))
        extra = () if finding.margin is None else (finding.margin,)
        outcome = rule(_seeds(ra, finding.metric), _seeds(rb, finding.metric), *extra)
        pa, pb = (_paper_pick(context, operand, finding.paper_metric) for operand in (finding.a, finding.b))
        paper = None if pa is None or pb is None else pa[finding.paper_metric] - pb[finding.paper_metric]
        compared = f"{_describe(ra, context)} vs {_describe(rb, context)}"
        return _result(finding, outcome, paper, compared, signed=True)

    return evaluate


def _at_most(finding: Finding, context: Context) -> FindingResult:
    row = _pick(context, finding.a, finding.metric)
    outcome = rules.at_most(_seeds(row, finding.metric), finding.margin)
    found = _paper_pick(context, finding.a, finding.paper_metric)
    paper = None if found is None else found[finding.paper_metric]
    return _result(finding, outcome, paper, _describe(row, context), signed=False)


def _trend(rising: bool) -> Callable[[Finding, Context], FindingResult]:
    """rises / falls: every adjacent step along a column, within each value of the others."""

    def evaluate(finding: Finding, context: Context) -> FindingResult:
        ours = [row for row in context.rows if row.group is not None]
        steps = [(_seeds(p, finding.metric), _seeds(q, finding.metric))
                 for p, q in _steps(ours, context.columns, finding.along)]
        outcome = rules.trend(steps, rising)
        theirs = [(p[finding.paper_metric], q[finding.paper_metric])
                  for p, q in _steps(context.paper.rows, context.columns, finding.along)]
        diffs = [q - p for p, q in theirs if p is not None and q is not None]
        paper = (min(diffs) if rising else max(diffs)) if diffs else None
        compared = f"the weakest of {len(steps)} steps along {finding.along}"
        return _result(finding, outcome, paper, compared, signed=True)

    return evaluate


def _choice_trend(rising: bool) -> Callable[[Finding, Context], FindingResult]:
    """best_rises / best_falls: our chosen best_of value along a column."""

    def evaluate(finding: Finding, context: Context) -> FindingResult:
        declaration = context.declaration
        ours = sorted((r for r in context.rows if r.choice(declaration) is not None),
                      key=lambda r: sortable(r.key))
        points = [rules.Choice(r.choice(declaration), _seeds(r, finding.metric),
                               _runner_up(r, finding.metric)) for r in ours]
        outcome = rules.choice_trend(points, rising)
        theirs = sorted((r for r in context.paper.rows if r.get(finding.of) is not None),
                        key=lambda r: sortable((r[finding.along],)))
        paper_values = [r[finding.of] for r in theirs]
        result = _result(finding, outcome, paper_values[-1] - paper_values[0] if paper_values else None,
                         f"{finding.of} per {finding.along}", signed=True, unit=finding.of)
        return _replace_text(result, _path([p.value for p in points]), _path(paper_values))

    return evaluate


COMPARISONS: dict[str, Comparison] = {
    "beats": Comparison(("a", "b"), _difference(rules.beats)),
    "on_par": Comparison(("a", "b", "margin"), _difference(rules.on_par)),
    "at_most": Comparison(("a", "margin"), _at_most),
    "rises": Comparison(("along",), _trend(rising=True)),
    "falls": Comparison(("along",), _trend(rising=False)),
    "best_rises": Comparison(("along", "of"), _choice_trend(rising=True)),
    "best_falls": Comparison(("along", "of"), _choice_trend(rising=False)),
}
OPTIONAL = ("statement", "table", "compare", "metric", "paper_metric")


# -- loading and checking -------------------------------------------------------------
@lru_cache(maxsize=1)
def load_findings() -> dict[str, Finding]:
    """Every finding of reference/findings.yaml by id, checked (DeclarationError, one line)."""
    raw = yaml.safe_load(FINDINGS_FILE.read_text(encoding="utf-8")) or {}
    return {str(key): _finding(str(key), spec) for key, spec in raw.items()}


def check_finding(finding: Finding, declaration: "TableDeclaration") -> Optional[str]:
    """Why a finding cannot be tested on a declared table (None: it can)."""
    if finding.table != declaration.paper:
        return f"tests {finding.table}, not this table's paper {declaration.paper}"
    for column in sorted(finding.columns()):
        if column not in declaration.key_columns:
            return f"names {column!r}, not a row key of this table; row keys: {', '.join(declaration.key_columns)}"
    if finding.of is not None:
        if finding.of != declaration.best_of:
            return f"needs best_of: {finding.of}"
        if declaration.key_columns != (finding.along,):
            return f"needs the rows keyed by {finding.along} alone"
    return None


def _finding(key: str, spec: Any) -> Finding:
    where = f"findings.yaml: {key}"
    if not isinstance(spec, dict):
        raise DeclarationError(f"{where}: must be a mapping of {', '.join(FIELDS)}")
    for name in spec:
        if name not in FIELDS:
            raise DeclarationError(f"{where}: unknown key {name!r}; allowed: {', '.join(FIELDS)}")
    kind = COMPARISONS.get(spec.get("compare"))
    if kind is None:
        raise DeclarationError(f"{where}.compare: unknown comparison {spec.get('compare')!r}; "
                               f"allowed: {', '.join(COMPARISONS)}")
    for name in FIELDS:
        if name in kind.fields + ("statement", "table", "compare") and name not in spec:
            raise DeclarationError(f"{where}.{name}: required by {spec['compare']}")
        if name in spec and name not in kind.fields + OPTIONAL:
            raise DeclarationError(f"{where}.{name}: not used by {spec['compare']}")
    finding = Finding(id=key, **{**spec, "paper_metric": spec.get("paper_metric", spec.get("metric", "AP"))})
    _check_against_paper(finding, where)
    return finding


def _check_against_paper(finding: Finding, where: str) -> None:
    tables = load_paper()
    if finding.table not in tables:
        raise DeclarationError(f"{where}.table: unknown reference table {finding.table!r}; "
                               f"allowed: {', '.join(sorted(tables))}")
    columns = tables[finding.table].columns
    for column in sorted(finding.columns() | ({finding.of} if finding.of else set())):
        if column not in columns:
            raise DeclarationError(f"{where}: {column!r} is not a column of {finding.table}; "
                                   f"columns: {', '.join(columns)}")
    if finding.metric not in FINAL_METRICS:
        raise DeclarationError(f"{where}.metric: unknown metric {finding.metric!r}; "
                               f"allowed: {', '.join(FINAL_METRICS)}")
    if finding.paper_metric not in columns:
        raise DeclarationError(f"{where}.paper_metric: {finding.paper_metric!r} is not a column of "
                               f"{finding.table}; columns: {', '.join(columns)}")
    if finding.margin is not None and (not isinstance(finding.margin, (int, float)) or finding.margin < 0):
        raise DeclarationError(f"{where}.margin: must be a number >= 0")


# -- helpers ---------------------------------------------------------------------------
def _pick(context: Context, operand: Mapping[str, Any], metric: str) -> Optional[KeyedRow]:
    """Our row for an operand: the one matching, or the best (by our mean) of several."""
    found = [row for row in select(context.rows, context.columns, operand) if row.group is not None]
    scored = [row for row in found if row.group.mean(metric) is not None]
    if scored:
        return max(scored, key=lambda row: row.group.mean(metric))
    return found[0] if found else None


def _paper_pick(context: Context, operand: Mapping[str, Any], metric: str) -> Optional[Mapping[str, Any]]:
    """The paper's row for an operand: the one matching, or the best of several by its number."""
    found = [row for row in context.paper.rows if matches(row, operand) and row.get(metric) is not None]
    return max(found, key=lambda row: row[metric]) if found else None


def _seeds(row: Optional[KeyedRow], metric: str) -> list[float]:
    return [] if row is None or row.group is None else row.group.values(metric)


def _runner_up(row: KeyedRow, metric: str) -> Optional[list[float]]:
    """The seeds of the best candidate after the chosen one (None: nothing else finished)."""
    others: list[Group] = [g for g in row.candidates if g is not row.group]
    second = best_group(others, metric)
    return None if second is None else second.values(metric)


def _steps(rows: Sequence[Any], columns: Sequence[str], along: str) -> list[tuple[Any, Any]]:
    """Adjacent pairs along `along`, within each value of the other key columns.

    Works on our KeyedRows and on the paper's row dicts alike."""
    def values(row: Any) -> Mapping[str, Any]:
        return row.values(columns) if isinstance(row, KeyedRow) else row

    others = [c for c in columns if c != along]
    lines: dict[tuple, list[Any]] = {}
    for row in rows:
        if values(row).get(along) is not None:
            lines.setdefault(tuple(values(row).get(c) for c in others), []).append(row)
    steps = []
    for members in lines.values():
        members.sort(key=lambda row: sortable((values(row)[along],)))
        steps += list(zip(members, members[1:]))
    return steps


def _describe(row: Optional[KeyedRow], context: Context) -> str:
    """e.g. "gamma=2 (alpha=0.25)" or "no run"."""
    if row is None:
        return "no run"
    text = ", ".join(f"{c}={_text(v)}" for c, v in row.values(context.columns).items() if v is not None)
    choice = row.choice(context.declaration) if context.declaration.best_of else None
    return text + (f" ({context.declaration.best_of}={_text(choice)})" if choice is not None else "")


def _result(finding: Finding, outcome: rules.Outcome, paper: Optional[float], compared: str,
            signed: bool, unit: Optional[str] = None) -> FindingResult:
    interval = outcome.interval
    fmt = (lambda v: f"{v:+.1f}") if signed else (lambda v: f"{v:.1f}")
    if outcome.estimate is None:
        ours = "—"
    elif interval is None:
        ours = fmt(outcome.estimate)
    else:
        ours = f"{fmt(outcome.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"
    return FindingResult(
        id=finding.id, statement=finding.statement, verdict=outcome.verdict, ours=ours,
        paper="—" if paper is None else fmt(paper), estimate=outcome.estimate,
        low=None if interval is None else interval.low, high=None if interval is None else interval.high,
        paper_value=paper, n=outcome.n, unit=unit or ("ms" if finding.metric == SPEED_METRIC else "AP"),
        compared=f"{compared}: {outcome.reason}")


def _replace_text(result: FindingResult, ours: str, paper: str) -> FindingResult:
    return replace(result, ours=ours if result.estimate is not None else "—", paper=paper or "—")


def _path(values: Sequence[float]) -> str:
    """A chosen value along the axis, e.g. "0.75 → 0.5 → 0.25" (repeats collapsed)."""
    shown: list[str] = []
    for value in values:
        if not shown or shown[-1] != _text(value):
            shown.append(_text(value))
    return " → ".join(shown)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
