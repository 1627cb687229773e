"""Verdict rules: is a finding of the paper reproduced by our seeds?

A rule turns estimates over seeds (analysis/stats.py) into `Evidence`: its
p-value, the smallest level at which it would decide anything, and
`at(level, power)`, the `Outcome` at the level the report's family-wise rule
gives it (analysis/design.py, e.g. Holm). The verdicts:

- `reproduced`: the interval lies on the paper's side of the claim;
- `not reproduced`: it lies entirely on the other side;
- `inconclusive`: it straddles, or there is no interval (a cell without a
  finished seed, one seed and no pooled variance, zero variance everywhere).

The rules (what "beats", "on a par", ... mean), at a level a:

- `directional(estimate, bound, sign)`: the claim sign * (true - bound) > 0 with
  the two-sided (1 - a) interval: reproduced when it lies on the claim's side
  of `bound`, not reproduced when on the other. `beats` is (a - b, 0, +1),
  `at_most` (mean, bound, -1), `contrast` (sum c_i mean_i, 0, +1).
- `equivalence(estimate, margin)`: "on a par", |true| <= margin, by two
  one-sided tests (TOST): reproduced when the (1 - 2a) interval lies within
  [-margin, +margin]; not reproduced when the (1 - a) interval lies entirely
  outside it.
- `trend(steps, sign)`: every adjacent step (next - previous) moves with the
  claim. Reproduced when every step's (1 - a) interval is on the claim's side:
  all k must pass, so the chance that all pass by error is at most that of
  one and no correction is due (an intersection-union test). Not reproduced
  when any step's (1 - a/k) interval lies against it: one of k may fail by
  error, so each is held to a/k (Bonferroni), and a flat truth fires "not
  reproduced" with probability at most k * (a/k) / 2 = a/2 (2.5% at a = 5%).

Each Outcome also gives the smallest true effect the seeds decide with the
declared power (the minimum detectable effect, `detectable`): "decidable if
the true difference is >= X".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from analysis.stats import Estimate, Interval, NoEstimate, Result, t_quantile

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass(frozen=True)
class Outcome:
    """A verdict at a level, our estimate (None without data), its interval, and why.

    `detectable`: the minimum detectable effect at `level` and the power
    (for `equivalence`: the smallest margin it could confirm); `detects` says
    which, as a phrase with {} where the number goes."""

    verdict: str
    estimate: Optional[float]
    interval: Optional[Interval]
    level: float
    detectable: Optional[float]
    detects: str
    reason: str
    seeds_needed: Optional[int] = None  # undecided: seeds per cell that would decide the observed effect


class Evidence(Protocol):
    """What a rule found, before the family-wise level is known."""

    @property
    def p_value(self) -> float:
        """The smallest level at which the verdict is not inconclusive (1.0: never)."""

    def at(self, level: float, power: float) -> Outcome:
        """The verdict at `level` (two-sided tests at level; TOST at level on each side)."""


@dataclass(frozen=True)
class Directional:
    """sign * (true - bound) > 0, with the two-sided (1 - level) interval."""

    result: Result
    bound: float = 0.0
    sign: int = 1
    detects: str = "decidable if the true difference is ≥ {}"

    @property
    def p_value(self) -> float:
        return self.result.p_two_sided(self.bound) if isinstance(self.result, Estimate) else 1.0

    def at(self, level: float, power: float) -> Outcome:
        if isinstance(self.result, NoEstimate):
            return Outcome(INCONCLUSIVE, self.result.value, None, level, None, self.detects, self.result.reason)
        interval = self.result.interval(1 - level)
        with_claim = interval.above(self.bound) if self.sign > 0 else interval.below(self.bound)
        against = interval.below(self.bound) if self.sign > 0 else interval.above(self.bound)
        side = "above" if self.sign > 0 else "below"
        verdict, reason = ((REPRODUCED, f"interval {side} {self.bound:g}") if with_claim else
                           (NOT_REPRODUCED, f"interval {'below' if self.sign > 0 else 'above'} {self.bound:g}")
                           if against else (INCONCLUSIVE, f"interval straddles {self.bound:g}"))
        needed = self.result.seeds_for(self.result.value - self.bound, level, power) if verdict == INCONCLUSIVE else None
        return Outcome(verdict, self.result.value, interval, level, self.result.detectable(level, power),
                       self.detects, reason, needed)


@dataclass(frozen=True)
class Equivalence:
    """|true| <= margin by TOST; not on a par when the (1 - level) interval is outside +-margin."""

    result: Result
    margin: float
    detects: str = "on a par decidable if the margin is ≥ {}"

    @property
    def p_value(self) -> float:
        if not isinstance(self.result, Estimate):
            return 1.0
        e, m = self.result, self.margin
        on_par = max(e.p_above(-m), e.p_below(m))  # both one-sided tests reject at this level
        outside = 2 * min(e.p_above(m), e.p_below(-m))  # the two-sided interval clears a margin
        return min(1.0, on_par, outside)

    def at(self, level: float, power: float) -> Outcome:
        if isinstance(self.result, NoEstimate):
            return Outcome(INCONCLUSIVE, self.result.value, None, level, None, self.detects, self.result.reason)
        e, m = self.result, self.margin
        # TOST at `level` has power `power` at a true 0 when margin >= (t(1-level) + t(1-(1-power)/2)) * se
        needed = (t_quantile(1 - level, e.df) + t_quantile(1 - (1 - power) / 2, e.df)) * e.se
        wide = e.interval(1 - level)
        if wide.above(m) or wide.below(-m):
            return Outcome(NOT_REPRODUCED, e.value, wide, level, needed, self.detects, f"interval outside ±{m:.2g}")
        tost = e.interval(1 - 2 * level)
        verdict, why = ((REPRODUCED, "within") if -m < tost.low and tost.high < m else (INCONCLUSIVE, "straddles"))
        return Outcome(verdict, e.value, tost, level, needed, self.detects, f"TOST interval {why} ±{m:.2g}")


@dataclass(frozen=True)
class Trend:
    """Every step (next - previous) has sign `sign`; see the module doc for the two levels."""

    steps: tuple[Result, ...]
    sign: int = 1
    detects: str = "decidable if every true step is ≥ {}"

    @property
    def p_value(self) -> float:
        known = [s for s in self.steps if isinstance(s, Estimate)]
        with_claim = len(known) == len(self.steps) and all(self.sign * s.value > 0 for s in known)
        every = max(s.p_two_sided() for s in known) if with_claim and known else 1.0
        against = [s.p_two_sided() for s in known if self.sign * s.value < 0]
        return min(1.0, every, len(self.steps) * min(against, default=1.0))

    def at(self, level: float, power: float) -> Outcome:
        if not self.steps:
            return Outcome(INCONCLUSIVE, None, None, level, None, self.detects, "fewer than two points")
        known = [s for s in self.steps if isinstance(s, Estimate)]
        k = len(self.steps)
        # the least precise step decides when every step is decided
        detectable = max((s.detectable(level, power) for s in known), default=None)
        near = (lambda i: i.low) if self.sign > 0 else (lambda i: -i.high)  # > 0: on the claim's side
        strict = [s.interval(1 - level / k) for s in known]
        against = [i for i in strict if (i.below(0) if self.sign > 0 else i.above(0))]
        if against:
            worst = min(against, key=lambda i: self.sign * i.estimate)
            return Outcome(NOT_REPRODUCED, worst.estimate, worst, level, detectable, self.detects,
                           f"a step goes against it (each of {k} steps at {1 - level / k:.2%})")
        if len(known) < k:
            missing = next(s for s in self.steps if isinstance(s, NoEstimate))
            values = [s.value for s in self.steps if s.value is not None]
            weakest = min(values, key=lambda v: self.sign * v) if values else None
            return Outcome(INCONCLUSIVE, weakest, None, level, detectable, self.detects, f"a step: {missing.reason}")
        weakest = min((s.interval(1 - level) for s in known), key=near)
        verdict, reason = ((REPRODUCED, f"all {k} steps") if near(weakest) > 0 else
                           (INCONCLUSIVE, "a step's interval straddles 0"))
        return Outcome(verdict, weakest.estimate, weakest, level, detectable, self.detects, reason)


def beats(a: Result) -> Directional:
    """a - b > 0, given the estimate of the difference (stats.difference)."""
    return Directional(a)


def at_most(mean: Result, bound: float) -> Directional:
    """mean <= bound."""
    return Directional(mean, bound, -1, "decidable if the true mean is ≥ {} from the bound")


def trend(steps: Sequence[Result], rising: bool) -> Trend:
    """Every step rises (falls)."""
    return Trend(tuple(steps), 1 if rising else -1)
