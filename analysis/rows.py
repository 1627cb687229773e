"""A declared table's rows: our groups of seeds keyed like the paper's rows, beside the paper's.

The row key is the declaration's row columns (`best_of` excluded). Each
row holds our group of seeds (with `best_of`: the best of its candidates by
mean of the ranking metric), every candidate group, and the paper's row.
Rows are the union of ours and the paper's, matched by value with float
tolerance; tables, plots and findings all read these same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from analysis.aggregate import Group, Key, best_group, normalise
from analysis.declaration import OrderItem, TableDeclaration
from analysis.paper import PaperTable, same_value


@dataclass(frozen=True)
class KeyedRow:
    """One row of a declared table."""

    key: Key  # values of the declaration's key columns, in their order
    group: Optional[Group]  # our seeds (None: only the paper has the row)
    candidates: tuple[Group, ...]  # with best_of: every group of the row; else (group,)
    paper: Optional[Mapping[str, Any]]  # the paper's row (None: only we have it)

    def values(self, columns: Sequence[str]) -> dict[str, Any]:
        """The key as {column: value}."""
        return dict(zip(columns, self.key))

    def choice(self, declaration: TableDeclaration) -> Any:
        """With best_of: our chosen value (None when no candidate finished)."""
        if self.group is None or self.group.mean(declaration.rank_metric) is None:
            return None
        return self.group.key[declaration.columns.index(declaration.best_of)]


def keyed_rows(declaration: TableDeclaration, groups: Mapping[Key, Group],
               paper: Optional[PaperTable]) -> list[KeyedRow]:
    """Our rows and the paper's, in the declared order."""
    columns = declaration.key_columns
    candidates = _by_row_key(declaration, groups.values())
    keys = list(candidates)
    for row in paper.rows if paper else ():
        theirs = tuple(normalise(row.get(c)) for c in columns)
        if not any(_same_key(theirs, k) for k in keys):
            keys.append(theirs)
    rows = [KeyedRow(key, _chosen(candidates.get(key, []), declaration.rank_metric),
                     tuple(candidates.get(key, [])),
                     paper.find(dict(zip(columns, key))) if paper else None) for key in keys]
    return _ordered(rows, declaration, paper)


def select(rows: Iterable[KeyedRow], columns: Sequence[str], where: Mapping[str, Any]) -> list[KeyedRow]:
    """The rows whose key matches `where`: {column: value or [values], "not": {...}}.

    `not` excludes the rows matching all of its columns (e.g. every anchor
    configuration but 1 scale x 1 ratio)."""
    return [row for row in rows if matches(row.values(columns), where)]


def _by_row_key(declaration: TableDeclaration, groups: Iterable[Group]) -> dict[Key, list[Group]]:
    """Row key -> its groups (more than one only with best_of), in first-seen order."""
    skip = declaration.columns.index(declaration.best_of) if declaration.best_of else None
    members: dict[Key, list[Group]] = {}
    for group in groups:
        key = tuple(v for i, v in enumerate(group.key) if i != skip)
        members.setdefault(key, []).append(group)
    return members


def _chosen(candidates: list[Group], metric: str) -> Optional[Group]:
    """The best candidate; with none finished, the first, so its status still shows."""
    if not candidates:
        return None
    return best_group(candidates, metric) or candidates[0]


def _ordered(rows: list[KeyedRow], declaration: TableDeclaration, paper: Optional[PaperTable]) -> list[KeyedRow]:
    """numeric (the key columns ascending) | the paper's order (ours after) | declared sort keys."""
    columns = declaration.key_columns
    if declaration.order_by_paper and paper is not None:
        index = {id(row): i for i, row in enumerate(paper.rows)}
        place = lambda r: (0, index[id(r.paper)], ()) if r.paper is not None else (1, 0, sortable(r.key))
        return sorted(rows, key=place)
    items = list(declaration.order)
    named = {item.column for item in items}
    items += [OrderItem(c) for c in columns if c not in named]
    positions = [columns.index(item.column) for item in items]
    return sorted(rows, key=lambda r: tuple(_item_key(item, r.key[p]) for item, p in zip(items, positions)))


def _item_key(item: OrderItem, value: Any) -> tuple:
    """Numbers, then strings, then None; listed values in their order first."""
    if item.values is not None:
        place = next((i for i, v in enumerate(item.values) if same_value(v, value)), len(item.values))
        return (place,) + sortable((value,))[0]
    key = sortable((value,))[0]
    return (0, -key[1], key[2]) if item.descending and key[0] == 0 else key


def sortable(key: Sequence) -> tuple:
    """A sort key for tuples mixing numbers, strings and None (None last)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, str(v)) if v is not None else (2, 0, "") for v in key)


def matches(values: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Every column of `where` holds its value (or one of its list of values), and the
    values do not match `where["not"]` if given."""
    excluded = where.get("not")
    if excluded and matches(values, excluded):
        return False
    for column, wanted in where.items():
        if column == "not":
            continue
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(same_value(normalise(values.get(column)), normalise(o)) for o in options):
            return False
    return True


def _same_key(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))


def lines(rows: Iterable[Any], columns: Sequence[str], others: Sequence[str]) -> dict[tuple, list[Any]]:
    """Rows (our KeyedRows or the paper's row dicts alike) by their values of the `others` columns,
    those values in sort order: the lines of a plot, or where a trend's steps are taken."""
    found: dict[tuple, list[Any]] = {}
    for row in rows:
        values = row.values(columns) if isinstance(row, KeyedRow) else row
        found.setdefault(tuple(values.get(c) for c in others), []).append(row)
    return dict(sorted(found.items(), key=lambda item: sortable(item[0])))


def value_text(value: Any) -> str:
    """A row value as tables and findings name it: 2.0 -> "2", 0.25 -> "0.25", "OHEM" -> "OHEM"."""
    return f"{value:g}" if isinstance(value, float) else str(value)
