"""How a sweep's findings are decided, declared before running (`sweep.table.verdicts`).

    table:
      verdicts:
        level: 0.05            # family-wise error rate over the report's findings
        family: holm           # a rule of FAMILY_RULES: holm | bonferroni | none
        power: 0.8             # for each finding's minimum detectable effect
        pooled_variance: false # true: one residual variance across the sweep's cells (if compatible)

Every key is optional (the defaults above). A family-wise rule maps the
findings' p-values (analysis/rules.py `Evidence.p_value`) to the level
each finding's verdict uses; a finding is decided at its level exactly when
its p-value is at most that level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from analysis.errors import DeclarationError
from analysis.strict import known, strict

WHERE = "sweep.table.verdicts"


def holm(p_values: Sequence[float], level: float) -> list[float]:
    """Holm's step-down levels: the i-th smallest p (i = 0..m-1) is held to level / (m - i),
    until the first that fails; every later one keeps that failing level (step-down stops)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [0.0] * m
    stop: Optional[int] = None
    for rank, index in enumerate(order):
        held = level / (m - (rank if stop is None else stop))
        if stop is None and p_values[index] > held:
            stop = rank
        levels[index] = held
    return levels


def bonferroni(p_values: Sequence[float], level: float) -> list[float]:
    """Every finding at level / m."""
    return [level / len(p_values)] * len(p_values)


def uncorrected(p_values: Sequence[float], level: float) -> list[float]:
    """Every finding at the level itself (no family-wise correction)."""
    return [level] * len(p_values)


FAMILY_RULES: dict[str, Callable[[Sequence[float], float], list[float]]] = {
    "holm": holm, "bonferroni": bonferroni, "none": uncorrected}
FAMILY_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no correction"}


@dataclass(frozen=True)
class VerdictDesign:
    """The declared test of a sweep's findings (see the module doc)."""

    level: float = 0.05
    family: str = "holm"
    power: float = 0.8
    pooled_variance: bool = False

    def levels(self, p_values: Sequence[float]) -> list[float]:
        """Each finding's level under the family-wise rule."""
        return FAMILY_RULES[self.family](p_values, self.level) if p_values else []

    def describe(self, count: int) -> str:
        """e.g. "Holm over 3 findings, 5% family-wise"."""
        if self.family == "none" or count <= 1:
            return f"each finding at {self.level:.0%}"
        return f"{FAMILY_NAMES[self.family]} over {count} findings, {self.level:.0%} family-wise"


def parse_verdicts(raw: Any) -> VerdictDesign:
    """A `verdicts` mapping -> VerdictDesign; DeclarationError (one line) for a bad key or value."""
    if raw is None:
        return VerdictDesign()
    design = VerdictDesign(**strict(raw, WHERE, VerdictDesign))
    for name in ("level", "power"):
        value = getattr(design, name)
        if not 0 < value < 1:
            raise DeclarationError(f"{WHERE}.{name}: {value!r} must be a number in (0, 1)")
    known(design.family, FAMILY_RULES, f"{WHERE}.family", "rule")
    return design
