"""The paper's reference numbers (the project's own copy, shipped as package data).

The file is found relative to this module (analysis/reference/), never in
../shared, so an installed package carries its own numbers.

`focal_loss_paper.yaml` holds each table of the paper as `columns` + `rows`;
numbers are COCO AP in percent and times in ms per image on an M40 GPU.
They are shown beside our results, never treated as results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml

REFERENCE_FILE = Path(__file__).with_name("reference") / "focal_loss_paper.yaml"


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: `rows[i][column]` -> value (None where blank)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    def find(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The first row whose values equal `key` (floats within tolerance)."""
        for row in self.rows:
            if all(same_value(row.get(name), value) for name, value in key.items()):
                return row
        return None


def same_value(a: Any, b: Any) -> bool:
    """Equality with float tolerance: 0.1 == 0.10000000001, 2 == 2.0, None == None."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


@lru_cache(maxsize=1)
def load_paper() -> dict[str, PaperTable]:
    """All tables of the reference file by name (e.g. "table1b_gamma_alpha")."""
    raw = yaml.safe_load(REFERENCE_FILE.read_text(encoding="utf-8"))
    return {name: _table(name, spec) for name, spec in raw.items()}


def _table(name: str, spec: dict[str, Sequence]) -> PaperTable:
    columns = tuple(spec["columns"])
    rows = tuple(dict(zip(columns, row)) for row in spec["rows"])
    return PaperTable(name=name, columns=columns, rows=rows)
