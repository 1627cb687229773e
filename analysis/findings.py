"""Verdict rules: is a finding of the paper reproduced by our seeds?

Pure functions on the seed values of table cells (AP in percent, ms...),
so they are tested without MLflow. Every rule returns an `Outcome`: a
verdict, our estimate with its 95% interval over seeds (analysis/stats.py),
and a short reason. The verdicts:

- `reproduced`: the interval lies on the paper's side of the claim;
- `not reproduced`: the interval lies entirely on the other side;
- `inconclusive`: the interval straddles, or a compared cell has fewer
  than 2 finished seeds (no interval), or a cell has no finished run.

The rules (what "beats", "on a par", ... mean):

- `beats(a, b)`: mean(a) - mean(b), Welch interval: reproduced when > 0,
  not reproduced when < 0.
- `on_par(a, b, margin)`: the same interval: reproduced when it lies within
  [-margin, +margin], not reproduced when it lies entirely outside.
- `at_most(a, margin)`: mean(a), Student interval: reproduced when its high
  end is <= margin, not reproduced when its low end is > margin.
- `trend(steps, rising)`: a metric rises (falls) along an axis when *every
  adjacent step* does: each step's difference (next - previous) has a Welch
  interval > 0 (< 0 for falling). Not reproduced when any step's interval is
  entirely against the direction; the estimate shown is the weakest step.
- `choice_trend(points, rising)`: a chosen key (e.g. the best alpha of each
  gamma) rises (falls) along an axis. A point's choice is *decided* when
  its best cell beats the runner-up (Welch interval > 0). Reproduced when
  every choice is decided, no adjacent step goes against the direction and
  the last differs from the first; not reproduced when a step between two
  decided choices goes against it, or every choice is decided and the last
  equals the first; else inconclusive. No interval: the estimate is last - first.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from analysis.stats import Interval, mean_interval, welch_interval

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

Seeds = Sequence[float]


@dataclass(frozen=True)
class Outcome:
    """A verdict, our estimate (None without data), its 95% interval, and why."""

    verdict: str
    estimate: float | None
    interval: Interval | None
    n: int  # the fewest finished seeds behind any compared cell
    reason: str


@dataclass(frozen=True)
class Choice:
    """One point of a choice trend: the chosen value, its seeds, the runner-up's seeds."""

    value: float
    best: Seeds
    runner_up: Optional[Seeds]  # None when there was nothing to choose from


def beats(a: Seeds, b: Seeds) -> Outcome:
    """a > b: reproduced when the Welch interval of mean(a) - mean(b) is above 0."""
    return _difference(a, b, lambda i: i.above(0), lambda i: i.below(0), ("above 0", "below 0", "0"))


def on_par(a: Seeds, b: Seeds, margin: float) -> Outcome:
    """|a - b| <= margin: reproduced when the interval lies within +-margin."""
    return _difference(a, b, lambda i: -margin <= i.low and i.high <= margin,
                       lambda i: i.above(margin) or i.below(-margin),
                       (f"within ±{margin:g}", f"outside ±{margin:g}", f"±{margin:g}"))


def at_most(a: Seeds, margin: float) -> Outcome:
    """mean(a) <= margin: reproduced when the Student interval's high end is <= margin."""
    if not a:
        return Outcome(INCONCLUSIVE, None, None, 0, "no finished seeds")
    interval = mean_interval(a)
    estimate = statistics.fmean(a)
    if interval is None:
        return Outcome(INCONCLUSIVE, estimate, None, len(a), "one seed: no interval")
    if interval.high <= margin:
        return Outcome(REPRODUCED, estimate, interval, len(a), f"interval at most {margin:g}")
    if interval.above(margin):
        return Outcome(NOT_REPRODUCED, estimate, interval, len(a), f"interval above {margin:g}")
    return Outcome(INCONCLUSIVE, estimate, interval, len(a), f"interval straddles {margin:g}")


def trend(steps: Sequence[tuple[Seeds, Seeds]], rising: bool) -> Outcome:
    """Every adjacent step (previous, next) moves in the direction; see the module doc."""
    if not steps:
        return Outcome(INCONCLUSIVE, None, None, 0, "fewer than two points")
    n = min(min(len(p), len(q)) for p, q in steps)
    intervals = [welch_interval(q, p) for p, q in steps]  # next - previous
    known = [i for i in intervals if i is not None]
    # direction-adjusted ends: `near` > 0 means the step is on the paper's side, `far` < 0 against it
    near = (lambda i: i.low) if rising else (lambda i: -i.high)
    far = (lambda i: i.high) if rising else (lambda i: -i.low)
    against = [i for i in known if far(i) < 0]
    if against:
        worst = min(against, key=far)
        return Outcome(NOT_REPRODUCED, worst.estimate, worst, n, "a step goes against the direction")
    if len(known) < len(intervals):
        means = [m for m in (_mean_difference(q, p) for p, q in steps) if m is not None]
        estimate = min(means, key=lambda m: m if rising else -m) if means else None
        why = "a point has no finished seed" if n == 0 else "a point has one seed: no interval"
        return Outcome(INCONCLUSIVE, estimate, None, n, why)
    weakest = min(known, key=near)
    if near(weakest) > 0:
        return Outcome(REPRODUCED, weakest.estimate, weakest, n, f"all {len(steps)} steps")
    return Outcome(INCONCLUSIVE, weakest.estimate, weakest, n, "a step's interval straddles 0")


def choice_trend(points: Sequence[Choice], rising: bool) -> Outcome:
    """The chosen value moves in the direction along the axis; see the module doc."""
    if len(points) < 2:
        return Outcome(INCONCLUSIVE, None, None, 0, "fewer than two points")
    sign = 1.0 if rising else -1.0
    decided = [_decided(p) for p in points]
    n = min(len(p.best) for p in points)
    change = points[-1].value - points[0].value
    against = [i for i in range(len(points) - 1) if sign * (points[i + 1].value - points[i].value) < 0]
    if any(decided[i] and decided[i + 1] for i in against):
        return Outcome(NOT_REPRODUCED, change, None, n, "a step between decided choices goes against it")
    if all(decided):
        if against or sign * change <= 0:
            return Outcome(NOT_REPRODUCED, change, None, n, "the last choice is not past the first")
        return Outcome(REPRODUCED, change, None, n, "every choice decided")
    return Outcome(INCONCLUSIVE, change, None, n, "a choice is not decided (its interval vs the runner-up straddles 0)")


def _decided(point: Choice) -> bool:
    """The chosen cell beats the runner-up by a Welch interval above 0."""
    if point.runner_up is None:
        return False
    interval = welch_interval(point.best, point.runner_up)
    return interval is not None and interval.above(0)


def _difference(a: Seeds, b: Seeds, yes: Callable[[Interval], bool], no: Callable[[Interval], bool],
                words: tuple[str, str, str]) -> Outcome:
    """The shared shape of `beats` and `on_par`: the Welch interval, then the two tests.

    words: how the interval lies when reproduced, when not, and what it straddles otherwise."""
    n = min(len(a), len(b))
    if n == 0:
        return Outcome(INCONCLUSIVE, _mean_difference(a, b), None, 0, "a compared cell has no finished seed")
    interval = welch_interval(a, b)
    if interval is None:
        return Outcome(INCONCLUSIVE, _mean_difference(a, b), None, n, "one seed: no interval")
    if yes(interval):
        return Outcome(REPRODUCED, interval.estimate, interval, n, f"interval {words[0]}")
    if no(interval):
        return Outcome(NOT_REPRODUCED, interval.estimate, interval, n, f"interval {words[1]}")
    return Outcome(INCONCLUSIVE, interval.estimate, interval, n, f"interval straddles {words[2]}")


def _mean_difference(a: Seeds, b: Seeds) -> float | None:
    return statistics.fmean(a) - statistics.fmean(b) if a and b else None
