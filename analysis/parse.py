"""A sweep's table declaration (`sweep.table`): what analysis/ builds from its runs.

Each sweep file (conf/sweep/*.yaml, or a user's own) declares its table;
sweeps/ checks it with `parse_table` before any cluster starts and logs it
to the parent run (tag `sweep.table`), and analysis/ reads it back from
there. So a renamed copy of a sweep, or a user's own sweep, gets its table,
and a new table is YAML plus reference numbers, with no code. Schema
(every key optional; `{}` or none at all is a table of the trials):

    table:
      name: table1b                  # file stem of the table (default: the paper table's name, or "trials")
      title: "Table 1b: ..."         # the heading ("Table 1b" before the colon also names the paper in plots)
      paper: table1b_gamma_alpha     # a table of analysis/reference/focal_loss_paper.yaml, or null
      rows:                          # paper column -> our value (absent: one row per trial, sorted by AP);
                                     # columns in the paper's order (no paper: alphabetical, or a list
                                     # of one-key mappings in the order wanted)
        gamma: loss.gamma            # a dotted config path, short for {path: loss.gamma}
        num_aspects: {count: model.anchors.aspect_ratios}    # a derivation (analysis/derive.py)
        batch_size: {path: loss.ohem.batch_per_image, only_if: {method: [OHEM, "OHEM 1:3"]}}
      best_of: alpha                 # one row per other key: the alpha with the best mean metric
      grid: true                     # with best_of: also the full grid, or {title: "..."}
      headers: {gamma: γ}            # column -> header shown (default: the column's name)
      metrics: [AP, AP50, AP75]      # ours (default; a trials table adds ms_per_image); the first ranks rows
      paper_metrics: [AP, AP50, AP75]   # the paper's, shown beside ours (default: the same as metrics)
      order: numeric                 # numeric (default) | paper | [column, -column, {column: [values]}]
      plot: {kind: curve, x: gamma}  # a plot kind of analysis/plots.py and its options, or null
      findings: [gamma5_below_gamma2]   # ids of analysis/reference/findings.yaml this sweep tests
      verdicts: {family: holm}       # how they are decided: level, family, power, pooled_variance
                                     # (analysis/design.py)

`only_if` blanks a value unless other row columns (their values before any
blanking) are among the listed values: the paper's rows leave OHEM's batch
empty for FL. `parse_table` raises `DeclarationError` with one line naming
the bad key and what is allowed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Optional

from analysis import layout
from analysis.declaration import AP3, TRIALS_METRICS, OrderItem, PlotDeclaration, RowSource, TableDeclaration
from analysis.derive import DERIVATIONS
from analysis.design import parse_verdicts
from analysis.errors import DeclarationError
from analysis.findings import Finding, load_findings
from analysis.paper import PaperTable, load_paper
from analysis.plots import PLOT_KINDS
from analysis.strict import known, strict

WHERE = "sweep.table"
STEM = re.compile(r"^[A-Za-z0-9_.\-]+$")  # a table name becomes a file name


@dataclass(frozen=True)
class TableKeys:
    """The keys of `sweep.table` and their types (analysis/strict.py); how they fit together is
    checked below. Alphabetical: the order an unknown key's error lists them in."""

    best_of: Optional[str] = None
    findings: Any = None  # a finding id or a list of them
    grid: Any = None  # true, false or {title: ...}
    headers: Optional[Mapping[str, str]] = None
    metrics: Any = None  # a metric or a list of them
    name: Optional[str] = None
    order: Any = None  # numeric, paper or a list of sort keys
    paper: Optional[str] = None
    paper_metrics: Any = None
    plot: Optional[Mapping[str, Any]] = None
    rows: Any = None  # {column: source} or a list of one-key mappings
    title: Optional[str] = None
    verdicts: Any = None  # analysis/design.py's VerdictDesign


@dataclass(frozen=True)
class GridKeys:
    """`sweep.table.grid` as a mapping."""

    title: Optional[str] = None


def parse_table(raw: Optional[Mapping[str, Any]]) -> TableDeclaration:
    """Validate a `sweep.table` mapping (a dict or an OmegaConf node) into a declaration.

    None or {} is the default: a table of the trials. Raises DeclarationError.
    """
    spec = strict(plain(raw or {}), WHERE, TableKeys)
    paper = _paper(spec.get("paper"))
    rows = _rows(spec.get("rows"), paper)
    columns = tuple(r.column for r in rows)
    best_of = _best_of(spec.get("best_of"), columns)
    metrics = _metrics(spec.get("metrics"), AP3 if rows else TRIALS_METRICS)
    grid, grid_title = _grid(spec.get("grid"), best_of)
    order_by_paper, order = _order(spec.get("order"), columns, best_of, paper)
    if not rows:
        _trials_only(spec, paper)
    declaration = TableDeclaration(
        name=_name(spec.get("name"), paper, rows),
        title=spec.get("title"),
        paper=paper.name if paper else None,
        rows=rows,
        best_of=best_of,
        grid=grid,
        grid_title=grid_title,
        headers=MappingProxyType(_headers(spec.get("headers"))),
        metrics=metrics,
        paper_metrics=_paper_metrics(spec.get("paper_metrics"), metrics, paper),
        order_by_paper=order_by_paper,
        order=order,
        plot=None,
        findings=(),
        verdicts=parse_verdicts(spec.get("verdicts")),
        raw=copy.deepcopy(spec),
    )
    return _with_plot_and_findings(declaration, spec)


def plain(value: Any) -> Any:
    """Mappings and lists (OmegaConf's nodes included) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


# -- the parts ---------------------------------------------------------------------
def _paper(name: Any) -> Optional[PaperTable]:
    if name is None:
        return None
    return load_paper()[known(name, sorted(load_paper()), f"{WHERE}.paper", "reference table")]


def _rows(spec: Any, paper: Optional[PaperTable]) -> tuple[RowSource, ...]:
    """Row sources in column order: the paper's column order, else as listed (a list of
    one-key mappings), else alphabetical. A mapping's own order is never used: the
    parent run's tag is JSON with sorted keys, and both ends must read the same table."""
    if spec is None:
        return ()
    if isinstance(spec, list):
        if not all(isinstance(item, dict) and len(item) == 1 for item in spec):
            raise DeclarationError(f"{WHERE}.rows: a list must hold one-key mappings {{column: source}}")
        items = [next(iter(item.items())) for item in spec]
        if len({c for c, _ in items}) < len(items):
            raise DeclarationError(f"{WHERE}.rows: a column is listed twice")
    elif isinstance(spec, dict):
        items = sorted(spec.items())
    else:
        raise DeclarationError(f"{WHERE}.rows: must be a mapping of column -> config path or derivation")
    sources = [_row(column, value, paper) for column, value in items]
    if paper is not None:
        sources.sort(key=lambda source: paper.columns.index(source.column))
    columns = [s.column for s in sources]
    for source in sources:
        for other, _ in source.only_if:
            if other not in columns or other == source.column:
                raise DeclarationError(f"{WHERE}.rows.{source.column}.only_if: {other!r} is not another row; "
                                       f"allowed: {', '.join(c for c in columns if c != source.column)}")
    return tuple(sources)


def _row(column: str, spec: Any, paper: Optional[PaperTable]) -> RowSource:
    where = f"{WHERE}.rows.{column}"
    if paper is not None and column not in paper.columns:
        raise DeclarationError(f"{where}: not a column of {paper.name}; columns: {', '.join(paper.columns)}")
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict):
        raise DeclarationError(f"{where}: must be a config path or {{derivation: argument}}; "
                               f"derivations: {', '.join(sorted(DERIVATIONS))}")
    names = [k for k in spec if k != "only_if"]
    for name in names:
        known(name, sorted(DERIVATIONS), where, "derivation")
    if len(names) != 1:
        raise DeclarationError(f"{where}: give exactly one derivation ({', '.join(sorted(DERIVATIONS))}), "
                               f"not {len(names)}")
    argument = spec[names[0]]
    if not isinstance(argument, str) or not argument:
        raise DeclarationError(f"{where}.{names[0]}: must be a dotted config path, e.g. loss.gamma")
    return RowSource(column, names[0], argument, _only_if(spec.get("only_if"), where))


def _only_if(spec: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not spec:
        raise DeclarationError(f"{where}.only_if: must be a mapping of row column -> value or list of values")
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in spec.items())


def _best_of(name: Any, columns: tuple[str, ...]) -> Optional[str]:
    if name is None:
        return None
    if name not in columns or len(columns) < 2:
        raise DeclarationError(f"{WHERE}.best_of: {name!r} must be one of two or more rows; "
                               f"rows: {', '.join(columns) or 'none'}")
    return name


def _grid(spec: Any, best_of: Optional[str]) -> tuple[bool, Optional[str]]:
    if spec in (None, False):
        return False, None
    if best_of is None:
        raise DeclarationError(f"{WHERE}.grid: needs best_of (the grid is the rows x best_of)")
    if spec is True:
        return True, None
    if isinstance(spec, dict):
        return True, strict(spec, f"{WHERE}.grid", GridKeys).get("title")
    raise DeclarationError(f"{WHERE}.grid: must be true, false or {{title: ...}}")


def _metrics(spec: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    metrics = _names(spec, f"{WHERE}.metrics") or default
    for metric in metrics:
        known(metric, layout.FINAL_METRICS, f"{WHERE}.metrics", "metric")
    return metrics


def _paper_metrics(spec: Any, metrics: tuple[str, ...], paper: Optional[PaperTable]) -> tuple[str, ...]:
    if paper is None:
        if spec:
            raise DeclarationError(f"{WHERE}.paper_metrics: needs a paper table")
        return ()
    chosen = _names(spec, f"{WHERE}.paper_metrics") or metrics
    for metric in chosen:
        if metric not in paper.columns:
            given = "" if spec else " (default: the metrics)"
            raise DeclarationError(f"{WHERE}.paper_metrics{given}: {metric!r} is not a column of {paper.name}; "
                                   f"columns: {', '.join(paper.columns)}")
    return chosen


def _headers(spec: Any) -> dict[str, str]:
    if spec is None:
        return {}
    if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
        raise DeclarationError(f"{WHERE}.headers: must be a mapping of column -> header text")
    return dict(spec)


def _order(spec: Any, columns: tuple[str, ...], best_of: Optional[str],
           paper: Optional[PaperTable]) -> tuple[bool, tuple[OrderItem, ...]]:
    if spec in (None, "numeric"):
        return False, ()
    if spec == "paper":
        if paper is None:
            raise DeclarationError(f"{WHERE}.order: 'paper' needs a paper table")
        return True, ()
    if not isinstance(spec, list):
        raise DeclarationError(f"{WHERE}.order: must be numeric, paper, or a list of column, -column, "
                               f"{{column: [values]}}")
    keys = [c for c in columns if c != best_of]
    return False, tuple(_order_item(item, keys, i) for i, item in enumerate(spec))


def _order_item(item: Any, keys: list[str], index: int) -> OrderItem:
    where = f"{WHERE}.order[{index}]"
    if isinstance(item, dict) and len(item) == 1:
        column, values = next(iter(item.items()))
        if not isinstance(values, list):
            raise DeclarationError(f"{where}.{column}: must be the list of values in their order")
        found = OrderItem(column, values=tuple(values))
    elif isinstance(item, str):
        found = OrderItem(item.lstrip("-"), descending=item.startswith("-"))
    else:
        raise DeclarationError(f"{where}: must be column, -column or {{column: [values]}}")
    if found.column not in keys:
        raise DeclarationError(f"{where}: {found.column!r} is not a row; allowed: {', '.join(keys)}")
    return found


def _trials_only(spec: dict[str, Any], paper: Optional[PaperTable]) -> None:
    """A trials table has no row keys: the keys that need them are errors."""
    if paper is not None:
        raise DeclarationError(f"{WHERE}.rows: required with paper {paper.name} (which of its columns "
                               f"are our row keys)")
    for key in ("best_of", "grid", "order", "findings"):
        if spec.get(key):
            raise DeclarationError(f"{WHERE}.{key}: needs rows")


def _name(spec: Any, paper: Optional[PaperTable], rows: tuple[RowSource, ...]) -> str:
    name = spec if spec is not None else (paper.name if paper else "table" if rows else "trials")
    if not isinstance(name, str) or not STEM.match(name):
        raise DeclarationError(f"{WHERE}.name: {name!r} must be a file stem (letters, digits, _ . -)")
    return name


def _with_plot_and_findings(declaration: TableDeclaration, spec: dict[str, Any]) -> TableDeclaration:
    """Plot and findings are checked against the rest of the declaration (its row columns, its paper)."""
    return replace(declaration, plot=_plot(spec.get("plot"), declaration),
                   findings=_findings(spec.get("findings"), declaration))


def _plot(spec: Any, declaration: TableDeclaration) -> Optional[PlotDeclaration]:
    where = f"{WHERE}.plot"
    if spec is None:
        return None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise DeclarationError(f"{where}: must be {{kind: ..., options}}; kinds: {', '.join(sorted(PLOT_KINDS))}")
    kind = PLOT_KINDS[known(spec["kind"], sorted(PLOT_KINDS), f"{where}.kind", "plot kind")]
    options = {k: v for k, v in spec.items() if k != "kind"}
    strict(options, f"{where} ({spec['kind']})", sorted(kind.required + kind.optional))
    for name in kind.required:
        if name not in options:
            raise DeclarationError(f"{where}.{name}: required by plot kind {spec['kind']}")
    for name in kind.columns:
        if name in options and options[name] not in declaration.key_columns:
            raise DeclarationError(f"{where}.{name}: {options[name]!r} is not a row; allowed: "
                                   f"{', '.join(declaration.key_columns) or 'none'}")
    for name in kind.tables:
        if name in options:
            _paper(options[name])
    for name in kind.cells:
        if name in options:
            _cell(options[name], declaration, f"{where}.{name}")
    if declaration.paper is None and kind.needs_paper:
        raise DeclarationError(f"{where}.kind: {spec['kind']} draws the paper's numbers: needs a paper table")
    return PlotDeclaration(spec["kind"], MappingProxyType(options))


def _findings(spec: Any, declaration: TableDeclaration) -> tuple[str, ...]:
    ids, findings = _names(spec, f"{WHERE}.findings"), load_findings()
    for finding_id in ids:
        problem = _unfit(findings[known(finding_id, sorted(findings), f"{WHERE}.findings", "finding")], declaration)
        if problem:
            raise DeclarationError(f"{WHERE}.findings: {finding_id}: {problem}")
    return ids


def _unfit(finding: Finding, declaration: TableDeclaration) -> Optional[str]:
    """Why a finding cannot be tested on a declared table (None: it can)."""
    if finding.table != declaration.paper:
        return f"tests {finding.table}, not this table's paper {declaration.paper}"
    for column in sorted(finding.row_columns()):
        if column not in declaration.key_columns:
            return f"names {column!r}, not a row key of this table; row keys: {', '.join(declaration.key_columns)}"
    for column in sorted(finding.cell_columns()):
        if column not in declaration.columns:
            return f"names {column!r}, not a column of this table's cells; columns: {', '.join(declaration.columns)}"
    return None


# -- helpers -----------------------------------------------------------------------
def _cell(spec: Any, declaration: TableDeclaration, where: str) -> None:
    """A cell of the table: {row column: value}, e.g. {gamma: 0}."""
    if not isinstance(spec, dict) or not spec:
        raise DeclarationError(f"{where}: must be a cell, {{row column: value}}, e.g. "
                               f"{{{declaration.key_columns[0] if declaration.key_columns else 'gamma'}: 0}}")
    for column in spec:
        if column not in declaration.key_columns:
            raise DeclarationError(f"{where}.{column}: not a row; allowed: "
                                   f"{', '.join(declaration.key_columns) or 'none'}")


def _names(spec: Any, where: str) -> tuple[str, ...]:
    if spec is None:
        return ()
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list) or not all(isinstance(v, str) for v in spec):
        raise DeclarationError(f"{where}: must be a list of names")
    return tuple(spec)
