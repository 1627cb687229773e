"""Estimates over seeds: a linear contrast of cell means, its standard error and degrees of freedom.

Every finding is a linear contrast of cell means, sum_i c_i * mean_i: one
cell (c = 1), a difference (1, -1), or an interaction of four cells
(1, -1, -1, 1). Its standard error comes from the seeds in one of two ways:

- Welch (the default): each cell its own variance s_i^2,
  se^2 = sum_i c_i^2 s_i^2 / n_i, with the Welch-Satterthwaite degrees of freedom
  df = se^4 / sum_i (c_i^2 s_i^2 / n_i)^2 / (n_i - 1) (fractional);
- pooled: one residual variance s_p^2 across a sweep's cells, declared in the
  sweep file, se^2 = s_p^2 sum_i c_i^2 / n_i, df = the pool's sum of (n_i - 1).
  `pool` checks with Bartlett's test that the cells' variances are compatible.

Quantiles are exact (scipy's Student t, fractional df included). An estimate
whose se is 0 (every seed of every compared cell identical) has no interval:
the seeds did not measure the noise, so nothing can be decided from them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from scipy import stats as _scipy

Seeds = Sequence[float]


@dataclass(frozen=True)
class Interval:
    """An estimate and its interval [low, high] at `confidence` (e.g. 0.95)."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95

    def above(self, bound: float) -> bool:
        """The whole interval lies above `bound`."""
        return self.low > bound

    def below(self, bound: float) -> bool:
        """The whole interval lies below `bound`."""
        return self.high < bound


@dataclass(frozen=True)
class Estimate:
    """A contrast of cell means with its standard error (> 0) and degrees of freedom."""

    value: float
    se: float
    df: float
    seeds: int = 0  # the fewest seeds of a compared cell (0: unknown)

    def interval(self, confidence: float) -> Interval:
        """The two-sided interval value +- t(1 - (1 - confidence)/2, df) * se."""
        half = t_quantile(1 - (1 - confidence) / 2, self.df) * self.se
        return Interval(self.value, self.value - half, self.value + half, confidence)

    def p_above(self, bound: float) -> float:
        """One-sided p of H0: true <= bound (small when the value lies well above bound)."""
        return float(_scipy.t.sf((self.value - bound) / self.se, self.df))

    def p_below(self, bound: float) -> float:
        """One-sided p of H0: true >= bound."""
        return float(_scipy.t.cdf((self.value - bound) / self.se, self.df))

    def p_two_sided(self, bound: float = 0.0) -> float:
        """Two-sided p of H0: true == bound: the (1 - p) interval just touches bound."""
        return min(1.0, 2 * min(self.p_above(bound), self.p_below(bound)))

    def detectable(self, level: float, power: float) -> float:
        """The smallest true |difference| a two-sided test at `level` finds with `power`:
        (t(1 - level/2, df) + t(power, df)) * se (the minimum detectable effect)."""
        return (t_quantile(1 - level / 2, self.df) + t_quantile(power, self.df)) * self.se

    def seeds_for(self, effect: float, level: float, power: float, limit: int = 1000) -> Optional[int]:
        """Seeds per compared cell that would detect a true |effect| with `power` at `level`:
        the least m > seeds with detectable(m) <= |effect|, where se shrinks as √(seeds/m) and
        df grows as (m - 1)/(seeds - 1), the variances staying as measured. None: beyond `limit`
        (or no seed count known)."""
        if self.seeds < 2 or effect == 0:
            return None
        for m in range(self.seeds + 1, limit + 1):
            grown = Estimate(self.value, self.se * math.sqrt(self.seeds / m), self.df * (m - 1) / (self.seeds - 1))
            if grown.detectable(level, power) <= abs(effect):
                return m
        return None


@dataclass(frozen=True)
class NoEstimate:
    """Why a contrast has no standard error (its mean, when the cells have seeds)."""

    reason: str
    value: Optional[float] = None


@dataclass(frozen=True)
class Pooled:
    """One residual variance across a sweep's cells, and whether the cells agree on it.

    `statistic`, `p`: Bartlett's test of equal variances over the `cells` pooled
    (those with >= 2 seeds and a variance > 0; a cell at a floor, every seed
    0.0 AP, has no noise to pool and is left out: its count is `floored`).
    `compatible`: p >= the level the sweep declared (so the pool may be used)."""

    variance: float
    df: int
    cells: int
    floored: int
    statistic: float
    p: float
    compatible: bool


Result = Union[Estimate, NoEstimate]
Term = tuple[float, Seeds]  # (weight c_i, the seeds of cell i)


def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t with df (> 0, fractional allowed; inf: the normal)."""
    if not df > 0:
        raise ValueError(f"degrees of freedom {df} must be > 0")
    return float(_scipy.norm.ppf(p) if math.isinf(df) else _scipy.t.ppf(p, df))


def contrast(terms: Sequence[Term], pooled: Optional[Pooled] = None) -> Result:
    """sum_i c_i mean(seeds_i) with its se and df (Welch, or the pooled variance); see the module doc."""
    if any(len(seeds) == 0 for _, seeds in terms):
        return NoEstimate("a compared cell has no finished seed")
    value = sum(c * statistics.fmean(seeds) for c, seeds in terms)
    if pooled is not None:
        se2 = pooled.variance * sum(c * c / len(seeds) for c, seeds in terms)
        if se2 == 0:
            return NoEstimate("the pooled variance is 0", value)
        return Estimate(value, math.sqrt(se2), pooled.df, min(len(seeds) for _, seeds in terms))
    if any(len(seeds) < 2 for _, seeds in terms):
        return NoEstimate("a compared cell has one seed: no variance of its own", value)
    parts = [(c * c * statistics.variance(seeds) / len(seeds), len(seeds) - 1) for c, seeds in terms]
    se2 = sum(v for v, _ in parts)
    if se2 == 0:  # every seed identical in every cell: collapsed cells (0.0 +- 0.0) do this
        return NoEstimate("zero variance in every compared cell: the seeds did not measure the noise "
                          "(a declared pooled variance would)", value)
    df = se2 ** 2 / sum(v * v / k for v, k in parts if v > 0)
    return Estimate(value, math.sqrt(se2), df, min(len(seeds) for _, seeds in terms))


def difference(a: Seeds, b: Seeds, pooled: Optional[Pooled] = None) -> Result:
    """mean(a) - mean(b) (Welch's t, or the pooled variance)."""
    return contrast([(1.0, a), (-1.0, b)], pooled)


def mean(a: Seeds, pooled: Optional[Pooled] = None) -> Result:
    """mean(a) (Student's t, or the pooled variance)."""
    return contrast([(1.0, a)], pooled)


def bartlett(groups: Sequence[Seeds]) -> tuple[float, float]:
    """Bartlett's test of equal variances: (statistic, p) over groups of >= 2 values, variance > 0.

    T = [(N - k) ln s_p^2 - sum (n_i - 1) ln s_i^2] / C,
    C = 1 + (sum 1/(n_i - 1) - 1/(N - k)) / (3 (k - 1)); T ~ chi^2(k - 1).
    """
    k = len(groups)
    if k < 2:
        return 0.0, 1.0
    sizes = [len(g) - 1 for g in groups]
    variances = [statistics.variance(g) for g in groups]
    total = sum(sizes)
    pooled = sum(d * v for d, v in zip(sizes, variances)) / total
    numerator = total * math.log(pooled) - sum(d * math.log(v) for d, v in zip(sizes, variances))
    correction = 1 + (sum(1 / d for d in sizes) - 1 / total) / (3 * (k - 1))
    statistic = numerator / correction
    return statistic, float(_scipy.chi2.sf(statistic, k - 1))


def pool(groups: Sequence[Seeds], level: float = 0.05) -> Optional[Pooled]:
    """The pooled residual variance of the cells with >= 2 seeds (None: no such cell with noise)."""
    usable = [g for g in groups if len(g) >= 2]
    noisy = [g for g in usable if statistics.variance(g) > 0]
    if not noisy:
        return None
    df = sum(len(g) - 1 for g in noisy)
    variance = sum((len(g) - 1) * statistics.variance(g) for g in noisy) / df
    statistic, p = bartlett(noisy)
    return Pooled(variance, df, len(noisy), len(usable) - len(noisy), statistic, p, p >= level)
