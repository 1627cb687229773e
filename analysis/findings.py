"""The paper's findings (reference/findings.yaml), evaluated on a sweep's table rows.

A finding names a reference table, a comparison kind (`COMPARISONS`, the one
registry of kinds) and its operands as row keys or cells of that table.
Evaluating the findings of one report takes three steps:

1. each kind picks its cells among ours and the paper's, and hands our seed
   values to a verdict rule of analysis/rules.py (an `Evidence`); the
   paper's number is computed the same way from its table;
2. the sweep's declared family-wise rule (analysis/design.py, Holm by
   default) turns the findings' p-values into each one's level;
3. each finding is decided at its level (`FindingResult`): the verdict, our
   estimate and interval, the paper's number, both relative to the AP scale
   of their reference cell, the smallest effect our seeds could decide, and
   how many seeds each compared cell had and lost.

With `pooled_variance: true` declared, one residual variance of the sweep's
cells (stats.pool) replaces each cell's own, when Bartlett's test finds the
cells' variances compatible at the declared level; the report says which.

A new comparison kind is one change here: its evaluate function and its
`COMPARISONS` entry (the findings.yaml keys it needs and may take; a key new
to findings.yaml is a `Finding` field). A new verdict rule goes in
analysis/rules.py, a new family-wise rule in analysis/design.py's FAMILY_RULES.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import yaml

from analysis import rules, stats
from analysis.aggregate import Group
from analysis.errors import DeclarationError
from analysis.layout import FINAL_METRICS, SPEED_METRIC
from analysis.paper import load_paper
from analysis.rows import KeyedRow, lines, matches, select, sortable, value_text
from analysis.strict import known, strict
from analysis.sweep import SweepRecord

FINDINGS_FILE = Path(__file__).with_name("reference") / "findings.yaml"
COMMON = ("statement", "table", "compare", "metric", "paper_metric", "reference")


@dataclass(frozen=True)
class Finding:
    """One finding of the paper, as findings.yaml states it."""

    id: str
    statement: str
    table: str
    compare: str
    a: Optional[Mapping[str, Any]] = None
    b: Optional[Mapping[str, Any]] = None
    terms: tuple[tuple[float, Mapping[str, Any]], ...] = ()  # contrast: (weight, cell)
    margin: Optional[float] = None  # metric units
    margin_relative: Optional[float] = None  # a fraction of the reference cell's metric
    along: Optional[str] = None
    reference: Optional[Mapping[str, Any]] = None  # the cell whose metric scales the effect
    metric: str = "AP"
    paper_metric: str = "AP"

    @property
    def unit(self) -> str:
        """What its numbers are in: "ms" for the speed metric, else "AP" (points)."""
        return "ms" if self.metric == SPEED_METRIC else "AP"

    def row_columns(self) -> set[str]:
        """The columns it names in row operands (a, b) and `along`: row keys of the table."""
        named = {self.along} if self.along else set()
        for operand in (self.a, self.b):
            named |= _named(operand)
        return named

    def cell_columns(self) -> set[str]:
        """The columns it names in cells (terms, reference): any row column, best_of included."""
        return set().union(*(_named(cell) for _, cell in self.terms), _named(self.reference))


@dataclass(frozen=True)
class SeedCount:
    """Seeds behind a finding: the compared cell with the fewest finished seeds, and losses."""

    finished: int  # that cell's finished seeds (with the metric)
    logged: int  # that cell's trials in MLflow, whatever their status
    failed: int  # trials not finished, over every compared cell
    missing: int  # compared cells with no trial at all

    def text(self) -> str:
        """e.g. "3 of 3", "2 of 3, 1 failed", "0, 1 cell not run"."""
        text = f"{self.finished} of {self.logged}" if self.logged else f"{self.finished}"
        if self.failed:
            text += f", {self.failed} failed"
        if self.missing:
            text += f", {self.missing} cell{'s' if self.missing > 1 else ''} not run"
        return text


@dataclass(frozen=True)
class FindingResult:
    """A finding evaluated on a sweep at its family-wise level."""

    id: str
    statement: str
    verdict: str  # reproduced | not reproduced | inconclusive
    ours: str  # as shown, e.g. "+2.1 [+0.4, +3.8]"
    paper: str  # as shown, e.g. "+2.9"
    estimate: Optional[float]  # our number (a difference, a contrast, a mean, the weakest step)
    low: Optional[float]  # its interval at `confidence` (None: no interval)
    high: Optional[float]
    paper_value: Optional[float]
    n: int  # the fewest finished seeds behind a compared cell
    unit: str  # "AP" (points) or "ms"
    compared: str  # which cells were compared, and why the verdict
    relative: Optional[float] = None  # estimate / our reference cell's metric
    paper_relative: Optional[float] = None  # paper_value / the paper's reference cell's metric
    level: float = 0.05  # the level the verdict used (after the family-wise rule)
    confidence: Optional[float] = None  # of the interval shown
    p_value: float = 1.0  # the smallest level deciding it (what the family-wise rule ranks)
    detectable: Optional[float] = None  # minimum detectable effect at `level` (TOST: margin needed)
    seeds_needed: Optional[int] = None  # undecided: seeds per cell that would decide the observed effect
    decidable: str = ""  # e.g. "decidable if the true difference is ≥ 2.1 AP"
    seeds: str = ""  # e.g. "3 of 3", "2 of 3, 1 failed"
    failed: int = 0  # trials of the compared cells that did not finish
    variance: str = "Welch"  # how the se was made: Welch, or the pooled variance and its check
    family: str = ""  # the family-wise rule, e.g. "Holm over 3 findings, 5% family-wise"
    signed: bool = True  # a difference (shown with its sign), or a mean (at_most)


@dataclass(frozen=True)
class Evaluated:
    """A finding's evidence before its level is known, and what shows beside it."""

    evidence: rules.Evidence
    paper_value: Optional[float]
    compared: str
    groups: tuple[Optional[Group], ...]  # ours, compared (None: no run)
    reference: Optional[float] = None  # our reference cell's metric
    paper_reference: Optional[float] = None
    signed: bool = True
    note: str = ""  # added to `compared`, e.g. the margin


@dataclass(frozen=True)
class Comparison:
    """A comparison kind: the fields it needs, those it may take, and how it is evaluated."""

    fields: tuple[str, ...]
    evaluate: Callable[["Finding", SweepRecord], Evaluated]
    optional: tuple[str, ...] = ()


def sweep_findings(sweep: SweepRecord) -> list[FindingResult]:
    """The findings the sweep's declaration lists, evaluated on its rows (one family), each at
    the level the declared family-wise rule gives it."""
    design = sweep.table.verdicts
    if not sweep.table.findings or sweep.paper is None:
        return []
    chosen = [load_findings()[i] for i in sweep.table.findings]
    evaluated = [COMPARISONS[f.compare].evaluate(f, sweep) for f in chosen]
    levels = design.levels([e.evidence.p_value for e in evaluated])
    family = design.describe(len(chosen))
    return [_result(f, e, level, sweep, family) for f, e, level in zip(chosen, evaluated, levels)]


def _pooled(sweep: SweepRecord, metric: str) -> Optional[stats.Pooled]:
    """The declared pooled variance of `metric`, when compatible (else None: Welch)."""
    if not sweep.table.verdicts.pooled_variance:
        return None
    found = _pool(sweep, metric)
    return found if found is not None and found.compatible else None


def _variance_text(sweep: SweepRecord, metric: str, unit: str) -> str:
    """How the standard errors were made, and whether the cells agree on a pooled variance."""
    if not sweep.table.verdicts.pooled_variance:
        return "Welch"
    found = _pool(sweep, metric)
    if found is None:
        return "Welch: pooled variance declared, but no cell has 2 seeds that differ"
    check = f"{found.cells} cells, Bartlett p {found.p:.2g}"
    floored = f", {found.floored} at a floor left out" if found.floored else ""
    if not found.compatible:
        return f"Welch: pooled variance declared, not used: the cells' variances differ ({check}{floored})"
    return f"pooled: s {found.variance ** 0.5:.2g} {unit}, df {found.df} ({check}: compatible{floored})"


# -- the comparison kinds ---------------------------------------------------------
def _beats(finding: Finding, sweep: SweepRecord) -> Evaluated:
    """a > b: the best row of a against the best row of b (Welch, or the pooled variance)."""
    ra, rb = (_pick(sweep, operand, finding.metric) for operand in (finding.a, finding.b))
    estimate = stats.difference(_seeds(ra, finding.metric), _seeds(rb, finding.metric), _pooled(sweep, finding.metric))
    return _pair(finding, sweep, ra, rb, rules.beats(estimate))


def _on_par(finding: Finding, sweep: SweepRecord) -> Evaluated:
    """|a - b| <= margin by TOST; the margin in metric units, or relative to the reference cell."""
    ra, rb = (_pick(sweep, operand, finding.metric) for operand in (finding.a, finding.b))
    estimate = stats.difference(_seeds(ra, finding.metric), _seeds(rb, finding.metric), _pooled(sweep, finding.metric))
    reference = _reference(finding, sweep, rb)
    margin = finding.margin
    if margin is None:  # margin_relative (checked on loading): a fraction of our reference's metric
        margin = None if reference is None else finding.margin_relative * reference
    if margin is None:
        evidence: rules.Evidence = rules.Directional(stats.NoEstimate("the reference cell has no seed: no margin"))
        note = "margin unknown"
    else:
        evidence = rules.Equivalence(estimate, margin)
        note = f"margin ±{margin:.2g} {finding.unit}" + (f" ({finding.margin_relative:.0%} of {reference:.1f})"
                                                 if finding.margin is None else "")
    return _pair(finding, sweep, ra, rb, evidence, note)


def _at_most(finding: Finding, sweep: SweepRecord) -> Evaluated:
    """mean(a) <= margin."""
    row = _pick(sweep, finding.a, finding.metric)
    evidence = rules.at_most(stats.mean(_seeds(row, finding.metric), _pooled(sweep, finding.metric)), finding.margin)
    found = _paper_pick(sweep, finding.a, finding.paper_metric)
    paper = None if found is None else found[finding.paper_metric]
    return Evaluated(evidence, paper, _describe(row, sweep), (_group(row),),
                     _reference(finding, sweep, None), _paper_reference(finding, sweep, None), signed=False)


def _trend(rising: bool) -> Callable[[Finding, SweepRecord], Evaluated]:
    """rises / falls: every adjacent step along a column, within each value of the others.
    Size is relative to the mean of the compared cells (the table's scale)."""

    def evaluate(finding: Finding, sweep: SweepRecord) -> Evaluated:
        ours = [row for row in sweep.rows if row.group is not None]
        pairs = _steps(ours, sweep.table.key_columns, finding.along)
        pooled = _pooled(sweep, finding.metric)
        steps = [stats.difference(_seeds(q, finding.metric), _seeds(p, finding.metric), pooled) for p, q in pairs]
        theirs = [(p[finding.paper_metric], q[finding.paper_metric])
                  for p, q in _steps(sweep.paper.rows, sweep.table.key_columns, finding.along)]
        diffs = [q - p for p, q in theirs if p is not None and q is not None]
        paper = (min(diffs) if rising else max(diffs)) if diffs else None
        cells = tuple({id(r): r for pair in pairs for r in pair}.values())
        means = [m for m in (_mean(r, finding.metric) for r in cells) if m is not None]
        paper_means = [v for pair in theirs for v in pair if v is not None]
        return Evaluated(rules.trend(steps, rising), paper, f"the weakest of {len(steps)} steps along {finding.along}",
                         tuple(_group(r) for r in cells), _average(means), _average(paper_means))

    return evaluate


def _contrast(finding: Finding, sweep: SweepRecord) -> Evaluated:
    """sum_i c_i mean(cell_i) > 0: a linear contrast of cells (best_of columns included),
    with the Welch-Satterthwaite df, or the pooled variance."""
    groups = [_group_at(sweep, cell, finding.metric) for _, cell in finding.terms]
    terms = [(weight, _seeds_of(g, finding.metric)) for (weight, _), g in zip(finding.terms, groups)]
    estimate = stats.contrast(terms, _pooled(sweep, finding.metric))
    paper_rows = [_paper_pick(sweep, cell, finding.paper_metric) for _, cell in finding.terms]
    paper = (None if any(r is None for r in paper_rows) else
             sum(w * r[finding.paper_metric] for (w, _), r in zip(finding.terms, paper_rows)))
    compared = " ".join(f"{'+' if w > 0 else '-'} {_weight(w)}{_cell_text(cell)}" for w, cell in finding.terms)
    return Evaluated(rules.beats(estimate), paper, compared.removeprefix("+ "), tuple(groups),
                     _reference(finding, sweep, None), _paper_reference(finding, sweep, None))


COMPARISONS: dict[str, Comparison] = {
    "beats": Comparison(("a", "b"), _beats),
    "on_par": Comparison(("a", "b"), _on_par, optional=("margin", "margin_relative")),
    "at_most": Comparison(("a", "margin"), _at_most),
    "rises": Comparison(("along",), _trend(rising=True)),
    "falls": Comparison(("along",), _trend(rising=False)),
    "contrast": Comparison(("terms",), _contrast),
}


# -- loading and checking -------------------------------------------------------------
@lru_cache(maxsize=1)
def load_findings() -> dict[str, Finding]:
    """Every finding of reference/findings.yaml by id, checked (DeclarationError, one line)."""
    raw = yaml.safe_load(FINDINGS_FILE.read_text(encoding="utf-8")) or {}
    return {str(key): _finding(str(key), spec) for key, spec in raw.items()}


def _finding(key: str, raw: Any) -> Finding:
    """One entry of findings.yaml: Finding's keys and types (analysis/strict.py), then those of its kind."""
    where = f"findings.yaml: {key}"
    spec = strict(raw, where, Finding, skip=("id",))
    kind = COMPARISONS[known(spec.get("compare"), COMPARISONS, f"{where}.compare", "comparison")]
    for name in kind.fields + COMMON[:3]:
        if name not in spec:
            raise DeclarationError(f"{where}.{name}: required by {spec['compare']}")
    for name in spec:
        if name not in kind.fields + kind.optional + COMMON:
            raise DeclarationError(f"{where}.{name}: not used by {spec['compare']}")
    for name in ("margin", "margin_relative"):
        if (spec.get(name) or 0) < 0:
            raise DeclarationError(f"{where}.{name}: must be a number >= 0")
    if spec["compare"] == "on_par" and (spec.get("margin") is None) == (spec.get("margin_relative") is None):
        raise DeclarationError(f"{where}: on_par needs one of margin (metric units) or margin_relative "
                               f"(a fraction of the reference cell's metric)")
    if "terms" in spec:
        spec["terms"] = _terms(spec["terms"], where)
    finding = Finding(id=key, **{**spec, "paper_metric": spec.get("paper_metric", spec.get("metric", "AP"))})
    _check_against_paper(finding, where)
    return finding


def _terms(spec: Any, where: str) -> tuple[tuple[float, Mapping[str, Any]], ...]:
    """A contrast's terms: a list of {weight: number, cell: {column: value}} whose weights sum to 0."""
    shape = f"{where}.terms: must be a list of {{weight: number, cell: {{column: value}}}}"
    if not isinstance(spec, list) or len(spec) < 2:
        raise DeclarationError(shape + ", two or more")
    terms = []
    for term in spec:
        if (not isinstance(term, dict) or set(term) != {"weight", "cell"} or isinstance(term["weight"], bool)
                or not isinstance(term["weight"], (int, float)) or not isinstance(term["cell"], dict)):
            raise DeclarationError(shape)
        terms.append((float(term["weight"]), term["cell"]))
    if abs(sum(w for w, _ in terms)) > 1e-9:
        raise DeclarationError(f"{where}.terms: the weights must sum to 0 (a contrast), not {sum(w for w, _ in terms):g}")
    return tuple(terms)


def _check_against_paper(finding: Finding, where: str) -> None:
    columns = load_paper()[known(finding.table, sorted(load_paper()), f"{where}.table", "reference table")].columns
    for column in sorted(finding.row_columns() | finding.cell_columns()):
        if column not in columns:
            raise DeclarationError(f"{where}: {column!r} is not a column of {finding.table}; "
                                   f"columns: {', '.join(columns)}")
    known(finding.metric, FINAL_METRICS, f"{where}.metric", "metric")
    if finding.paper_metric not in columns:
        raise DeclarationError(f"{where}.paper_metric: {finding.paper_metric!r} is not a column of "
                               f"{finding.table}; columns: {', '.join(columns)}")


# -- the result ------------------------------------------------------------------------
def _result(finding: Finding, evaluated: Evaluated, level: float, sweep: SweepRecord, family: str) -> FindingResult:
    design = sweep.table.verdicts
    outcome = evaluated.evidence.at(level, design.power)
    unit = finding.unit
    interval = outcome.interval
    fmt = (lambda v: f"{v:+.1f}") if evaluated.signed else (lambda v: f"{v:.1f}")
    ours = "—" if outcome.estimate is None else fmt(outcome.estimate)
    if interval is not None:
        ours += f" [{fmt(interval.low)}, {fmt(interval.high)}]"
    paper = evaluated.paper_value
    decidable = "" if outcome.detectable is None else outcome.detects.format(f"{outcome.detectable:.1f} {unit}")
    if outcome.seeds_needed is not None:
        decidable += f"; the observed effect needs ~{outcome.seeds_needed} seeds per cell"
    count = _count(evaluated.groups, finding.metric)
    compared = f"{evaluated.compared}: {outcome.reason}" + (f"; {evaluated.note}" if evaluated.note else "")
    return FindingResult(
        id=finding.id, statement=finding.statement, verdict=outcome.verdict, ours=ours,
        paper="—" if paper is None else fmt(paper), estimate=outcome.estimate,
        low=None if interval is None else interval.low, high=None if interval is None else interval.high,
        paper_value=paper, n=count.finished, unit=unit, compared=compared,
        relative=_ratio(outcome.estimate, evaluated.reference),
        paper_relative=_ratio(paper, evaluated.paper_reference),
        level=level, confidence=None if interval is None else interval.confidence,
        p_value=evaluated.evidence.p_value, detectable=outcome.detectable, decidable=decidable,
        seeds_needed=outcome.seeds_needed,
        seeds=count.text(), failed=count.failed, variance=_variance_text(sweep, finding.metric, unit), family=family,
        signed=evaluated.signed)


def _pair(finding: Finding, sweep: SweepRecord, ra: Optional[KeyedRow], rb: Optional[KeyedRow],
          evidence: rules.Evidence, note: str = "") -> Evaluated:
    """beats / on_par: the paper's a - b beside ours; sizes relative to b (or the declared reference)."""
    pa, pb = (_paper_pick(sweep, operand, finding.paper_metric) for operand in (finding.a, finding.b))
    paper = None if pa is None or pb is None else pa[finding.paper_metric] - pb[finding.paper_metric]
    return Evaluated(evidence, paper, f"{_describe(ra, sweep)} vs {_describe(rb, sweep)}",
                     (_group(ra), _group(rb)), _reference(finding, sweep, rb),
                     _paper_reference(finding, sweep, pb), note=note)


def _count(groups: Sequence[Optional[Group]], metric: str) -> SeedCount:
    """The compared group with the fewest finished seeds; failures and cells never run, summed."""
    present = [g for g in groups if g is not None]
    missing = len(groups) - len(present)
    if not present:
        return SeedCount(0, 0, 0, missing)
    fewest = min(present, key=lambda g: len(g.values(metric)))
    failed = sum(len(g.trials) - len(g.finished) for g in present)
    return SeedCount(len(fewest.values(metric)), len(fewest.trials), failed, missing)


def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    return None if value is None or not reference else value / reference


# -- helpers ---------------------------------------------------------------------------
def _pool(sweep: SweepRecord, metric: str) -> Optional[stats.Pooled]:
    """stats.pool over every cell of the sweep, at the declared level (a few cells: no cache needed)."""
    return stats.pool([g.values(metric) for g in sweep.candidates()], sweep.table.verdicts.level)


def _pick(sweep: SweepRecord, operand: Optional[Mapping[str, Any]], metric: str) -> Optional[KeyedRow]:
    """Our row for an operand: the one matching, or the best (by our mean) of several."""
    found = [row for row in select(sweep.rows, sweep.table.key_columns, operand or {}) if row.group is not None]
    return _best(found, lambda row: row.group.mean(metric))


def _group_at(sweep: SweepRecord, where: Mapping[str, Any], metric: str) -> Optional[Group]:
    """Our cell (a group of seeds over every row column, best_of included) matching `where`;
    the best by our mean if several match."""
    columns = sweep.table.columns
    return _best([g for g in sweep.candidates() if matches(dict(zip(columns, g.key)), where)],
                 lambda group: group.mean(metric))


def _best(found: Sequence[Any], mean: Callable[[Any], Optional[float]]) -> Any:
    """The one with the highest mean (the first of equals); none with a mean: the first found, or None."""
    return max(found, key=lambda x: (mean(x) is not None, mean(x) or 0.0), default=None)


def _paper_pick(sweep: SweepRecord, operand: Optional[Mapping[str, Any]], metric: str) -> Optional[Mapping[str, Any]]:
    """The paper's row for an operand: the one matching, or the best of several by its number."""
    found = [row for row in sweep.paper.rows if matches(row, operand or {}) and row.get(metric) is not None]
    return max(found, key=lambda row: row[metric]) if found else None


def _reference(finding: Finding, sweep: SweepRecord, default: Optional[KeyedRow]) -> Optional[float]:
    """Our reference cell's mean metric: the declared `reference`, else the default row."""
    if finding.reference is not None:
        group = _group_at(sweep, finding.reference, finding.metric)
        return None if group is None else group.mean(finding.metric)
    return _mean(default, finding.metric)


def _paper_reference(finding: Finding, sweep: SweepRecord, default: Optional[Mapping[str, Any]]) -> Optional[float]:
    row = _paper_pick(sweep, finding.reference, finding.paper_metric) if finding.reference is not None else default
    return None if row is None else row.get(finding.paper_metric)


def _group(row: Optional[KeyedRow]) -> Optional[Group]:
    return None if row is None else row.group


def _mean(row: Optional[KeyedRow], metric: str) -> Optional[float]:
    return None if row is None or row.group is None else row.group.mean(metric)


def _average(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _seeds(row: Optional[KeyedRow], metric: str) -> list[float]:
    return _seeds_of(_group(row), metric)


def _seeds_of(group: Optional[Group], metric: str) -> list[float]:
    return [] if group is None else group.values(metric)


def _steps(rows: Sequence[Any], columns: Sequence[str], along: str) -> list[tuple[Any, Any]]:
    """Adjacent pairs along `along`, within each value of the other key columns (our KeyedRows
    and the paper's row dicts alike)."""
    at = lambda row: (row.values(columns) if isinstance(row, KeyedRow) else row).get(along)  # noqa: E731
    steps = []
    for members in lines([r for r in rows if at(r) is not None], columns, [c for c in columns if c != along]).values():
        members.sort(key=lambda row: sortable((at(row),)))
        steps += list(zip(members, members[1:]))
    return steps


def _describe(row: Optional[KeyedRow], sweep: SweepRecord) -> str:
    """e.g. "gamma=2 (alpha=0.25)" or "no run"."""
    if row is None:
        return "no run"
    text = ", ".join(f"{c}={value_text(v)}" for c, v in row.values(sweep.table.key_columns).items() if v is not None)
    choice = row.choice(sweep.table) if sweep.table.best_of else None
    return text + (f" ({sweep.table.best_of}={value_text(choice)})" if choice is not None else "")


def _cell_text(cell: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{c}={value_text(v)}" for c, v in cell.items()) + ")"


def _weight(weight: float) -> str:
    return "" if abs(weight) == 1 else f"{abs(weight):g}"


def _named(operand: Optional[Mapping[str, Any]]) -> set[str]:
    named: set[str] = set()
    for key, value in (operand or {}).items():
        named |= set(value) if key == "not" else {key}
    return named
