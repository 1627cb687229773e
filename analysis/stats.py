"""95% intervals over seeds: Student's t for one cell, Welch's t for a difference of two.

scipy is not a dependency, so the t quantile comes from a table: the exact
two-sided 95% quantiles t(0.975, df) for df = 1..30, 40, 60, 120 (as printed
in every statistics textbook, to 3 decimals), and the normal 1.960 beyond.
A df between two entries uses the entry *below* it (Welch's df is rarely an
integer): a slightly larger quantile, so the interval errs on the wide side.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

LEVEL = 0.95  # the only level the table supports
# df -> t(0.975, df)
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}
NORMAL_975 = 1.960


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% interval [low, high]."""

    estimate: float
    low: float
    high: float

    def above(self, bound: float) -> bool:
        """The whole interval lies above `bound`."""
        return self.low > bound

    def below(self, bound: float) -> bool:
        """The whole interval lies below `bound`."""
        return self.high < bound


def t_quantile(df: float) -> float:
    """t(0.975, df) from the table (df >= 1; fractional df rounds down, to the wider side)."""
    if df < 1:
        raise ValueError(f"degrees of freedom {df} < 1")
    if df > max(T_975):
        return NORMAL_975
    return T_975[max(k for k in T_975 if k <= df)]


def mean_interval(values: Sequence[float]) -> Interval | None:
    """Mean of the seeds with a Student t 95% interval; None for fewer than 2 seeds."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def welch_interval(a: Sequence[float], b: Sequence[float]) -> Interval | None:
    """mean(a) - mean(b) with Welch's 95% interval (unequal variances); None if n < 2 on a side.

    se^2 = s_a^2/n_a + s_b^2/n_b; df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))
    (Welch-Satterthwaite). Seeds with identical values (se = 0) give a zero-width interval.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se2 = va + vb
    if se2 == 0:
        return Interval(diff, diff, diff)
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(df) * math.sqrt(se2)
    return Interval(diff, diff - half, diff + half)
