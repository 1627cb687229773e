"""The table data structure shared by the builders (tables.py) and renderers (render.py).

A `Table` is columns + rows of `Cell`s. A cell keeps its text (what Markdown
and LaTeX show: "34.0", "34.0 ± 0.3", "failed", "—") and the number behind
it, rounded as shown, so CSV and LaTeX hold the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.aggregate import Group, Stat

MISSING = "—"  # a cell with no run (or a value the paper does not give)


@dataclass(frozen=True)
class Column:
    """key: the CSV header (unique); header: what tables show; source: key | ours | paper."""

    key: str
    header: str
    source: str


@dataclass
class Cell:
    """One table cell. `value`/`std` are rounded to `decimals` (None: as `:g` shows them)."""

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

    cells: list[Cell]
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

    def column_cells(self, key: str) -> list[Cell]:
        """The cells of the column with this CSV key, top to bottom."""
        index = [c.key for c in self.columns].index(key)
        return [row.cells[index] for row in self.rows]


def key_cell(value: Any, digits: int | None = None) -> Cell:
    """A key cell: 0.25 -> "0.25", [0.5, 1.0] -> "0.5,1", None -> "—".

    `digits` (significant) shortens sampled floats of an open search.
    """
    if value is None:
        return Cell(MISSING)
    if isinstance(value, (list, tuple)):
        return Cell(",".join(f"{v:g}" for v in value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Cell(str(value))
    text = f"{value:.{digits}g}" if digits else f"{value:g}"
    return Cell(text, value=float(text))


def stat_cell(stat: Stat | None, status: str, decimals: int = 1, show_n: bool = False) -> Cell:
    """An "ours" cell: "34.0", "34.0 ± 0.3" (n > 1), or the status of a cell without numbers."""
    if stat is None:
        return Cell(status if status in ("failed", "running", "killed") else MISSING)
    value = round(stat.mean, decimals)
    std = None if stat.std is None else round(stat.std, decimals)
    text = _fmt(value, decimals)
    if std is not None:
        text += f" ± {_fmt(std, decimals)}"
    if show_n and stat.n > 1:
        text += f" (n={stat.n})"
    return Cell(text, value=value, std=std, n=stat.n, decimals=decimals)


def group_cell(group: Group | None, metric: str, decimals: int = 1, show_n: bool = False) -> Cell:
    """The "ours" cell of `metric` for a group of seeds (None: no run -> "—")."""
    if group is None:
        return Cell(MISSING)
    return stat_cell(group.stat(metric), group.status, decimals, show_n)


def paper_cell(value: Any, decimals: int | None = 1) -> Cell:
    """A paper number: AP with one decimal, times as printed; None -> "—"."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return key_cell(value)
    return Cell(_fmt(value, decimals), value=float(value), decimals=decimals)


def _fmt(value: float, decimals: int | None) -> str:
    return f"{value:g}" if decimals is None else f"{value:.{decimals}f}"
