"""analysis/stats.py: exact t quantiles, contrasts with Welch-Satterthwaite df, zero variance,
the minimum detectable effect, Bartlett's test and the pooled variance; each against a hand value."""

from __future__ import annotations

import math

import pytest

from analysis import stats
from analysis.stats import Estimate, NoEstimate


def _t_density(x: float, df: float) -> float:
    """Student's t density, written out: Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) (1 + x²/ν)^(-(ν+1)/2)."""
    scale = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return scale * (1 + x * x / df) ** (-(df + 1) / 2)


def _simpson(f, low: float, high: float, steps: int = 2000) -> float:
    h = (high - low) / steps
    inner = sum((4 if i % 2 else 2) * f(low + i * h) for i in range(1, steps))
    return (f(low) + inner + f(high)) * h / 3


def test_t_quantiles_in_closed_form():
    """df = 1 (Cauchy): t(p) = tan(π (p - 1/2)); t(0.975, 1) = tan(0.475 π) = 12.7062.
    df = 2: t(p) = (2p - 1) / √(2 p (1 - p)); t(0.975, 2) = 0.95 / √0.04875 = 4.30265,
    t(0.8, 2) = 0.6 / √0.32 = 1.06066."""
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert stats.t_quantile(0.975, 2) == pytest.approx(4.30265, abs=1e-5)
    assert stats.t_quantile(0.8, 2) == pytest.approx(1.06066, abs=1e-5)
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.95996, abs=1e-5)


def test_t_quantile_at_a_fractional_df_is_exact_not_the_table_row_below():
    """t(0.975, df = 2.44) = 3.638: the density integrated from 0 to 3.638 is 0.475 (Simpson,
    2,000 steps). The old table rounded df down to 2, giving 4.303: 18% wider."""
    quantile = stats.t_quantile(0.975, 2.44)
    assert round(quantile, 3) == 3.638
    assert _simpson(lambda x: _t_density(x, 2.44), 0.0, 3.638) == pytest.approx(0.475, abs=2e-5)
    with pytest.raises(ValueError):
        stats.t_quantile(0.975, 0)


def test_welch_difference_by_hand():
    """a = [1, 3], b = [5, 7]: means 2 and 6, variances 2 and 2, se² = 2/2 + 2/2 = 2,
    df = 2² / (1²/1 + 1²/1) = 2: -4 ± 4.30265 √2 = [-10.0849, 2.0849]."""
    estimate = stats.difference([1.0, 3.0], [5.0, 7.0])
    assert (estimate.value, estimate.se ** 2, estimate.df) == pytest.approx((-4.0, 2.0, 2.0))
    interval = estimate.interval(0.95)
    assert (interval.low, interval.high) == pytest.approx((-10.0849, 2.0849), abs=1e-4)


def test_welch_df_is_fractional():
    """a = [1, 2, 3] (var 1), b = [4, 6] (var 2): se² = 1/3 + 2/2 = 4/3,
    df = (16/9) / ((1/9)/2 + 1/1) = 32/19 = 1.684, not rounded."""
    estimate = stats.difference([1.0, 2.0, 3.0], [4.0, 6.0])
    assert estimate.df == pytest.approx(32 / 19)
    assert estimate.interval(0.95).high == pytest.approx(-3 + stats.t_quantile(0.975, 32 / 19) * math.sqrt(4 / 3))


def test_a_four_cell_contrast_with_welch_satterthwaite_df():
    """A = [10, 12] (mean 11, var 2), B = [5, 7] (6, 2), C = [3, 5] (4, 2), D = [6, 10] (8, 8):
    A - B - C + D = 11 - 6 - 4 + 8 = 9; the terms c² s²/n are 1, 1, 1, 4: se² = 7,
    df = 7² / (1/1 + 1/1 + 1/1 + 16/1) = 49/19 = 2.579; t(0.975, 2.579) = 3.4976:
    9 ± 3.4976 √7 = [-0.254, 18.254]."""
    cells = [(1.0, [10.0, 12.0]), (-1.0, [5.0, 7.0]), (-1.0, [3.0, 5.0]), (1.0, [6.0, 10.0])]
    estimate = stats.contrast(cells)
    assert (estimate.value, estimate.se ** 2, estimate.df) == pytest.approx((9.0, 7.0, 49 / 19))
    interval = estimate.interval(0.95)
    assert (interval.low, interval.high) == pytest.approx((-0.254, 18.254), abs=1e-3)


def test_zero_variance_everywhere_has_no_estimate_and_says_why():
    """Collapsed cells sit at 0.0 ± 0.0: no interval can come from them (the old rule gave a
    zero-width interval, and then a definite verdict)."""
    found = stats.difference([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])
    assert isinstance(found, NoEstimate) and found.value == 2.0 and "zero variance" in found.reason
    # one cell with noise is enough: its own df, (n - 1) = 2
    one_noisy = stats.difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert isinstance(one_noisy, Estimate) and one_noisy.df == pytest.approx(2.0)


def test_missing_and_single_seeds():
    assert isinstance(stats.difference([], [1.0, 2.0]), NoEstimate)
    single = stats.difference([3.0], [1.0, 2.0])
    assert isinstance(single, NoEstimate) and single.value == 1.5 and "one seed" in single.reason


def test_minimum_detectable_effect_by_hand():
    """a = [1, 3], b = [5, 7]: se = √2, df = 2; at level 5% and power 0.8:
    (t(0.975, 2) + t(0.8, 2)) se = (4.30265 + 1.06066) × 1.41421 = 7.5849."""
    estimate = stats.difference([1.0, 3.0], [5.0, 7.0])
    assert estimate.detectable(0.05, 0.8) == pytest.approx(7.5849, abs=1e-4)


def test_p_values_match_the_interval():
    """The two-sided p is the level at which the interval just touches the bound."""
    estimate = Estimate(2.0, 1.0, 1e9)  # ~ normal: p = 2 (1 - Φ(2)) = 0.0455
    assert estimate.p_two_sided() == pytest.approx(0.0455, abs=1e-4)
    assert estimate.interval(1 - estimate.p_two_sided()).low == pytest.approx(0.0, abs=1e-9)


def test_bartlett_by_hand():
    """[1, 2, 3] (var 1) and [2, 4, 6] (var 4): N - k = 4, s_p² = (2·1 + 2·4)/4 = 2.5;
    T = (4 ln 2.5 - 2 ln 1 - 2 ln 4) / C, C = 1 + (1/2 + 1/2 - 1/4)/3 = 1.25:
    T = 0.89257 / 1.25 = 0.71406; χ²(1): p = erfc(√(T/2)) = 0.3981."""
    statistic, p = stats.bartlett([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert statistic == pytest.approx(0.71406, abs=1e-5)
    assert p == pytest.approx(math.erfc(math.sqrt(statistic / 2))) == pytest.approx(0.3981, abs=1e-4)


def test_pooled_variance_and_its_use():
    """The pool of the previous test: s_p² = 2.5 with df 4, compatible (p 0.40 >= 0.05); a cell at
    a floor (all 0.0) and a single seed stay out of the pool. With it, a difference of a
    floored cell [0, 0] and [4, 4]: se² = 2.5 (1/2 + 1/2) = 2.5, df 4."""
    pooled = stats.pool([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0], [7.0]])
    assert (pooled.variance, pooled.df, pooled.cells, pooled.floored) == pytest.approx((2.5, 4, 2, 1))
    assert pooled.compatible and pooled.p == pytest.approx(0.3981, abs=1e-4)
    estimate = stats.difference([4.0, 4.0], [0.0, 0.0], pooled)
    assert (estimate.value, estimate.se ** 2, estimate.df) == pytest.approx((4.0, 2.5, 4))
    assert isinstance(stats.mean([7.0], pooled), Estimate)  # one seed is enough with a pool


def test_incompatible_variances_are_flagged():
    """[1, 2, 3] (var 1) against [0, 100, 200] (var 10,000): Bartlett's p is far below 5%."""
    pooled = stats.pool([[1.0, 2.0, 3.0], [0.0, 100.0, 200.0]])
    assert not pooled.compatible and pooled.p < 0.01
    assert stats.pool([[0.0, 0.0], [1.0]]) is None  # nothing with noise to pool


def test_seeds_that_would_decide_the_observed_effect():
    """a = [1, 3], b = [5, 7]: -4 with se √2, df 2 from 2 seeds a cell. With m seeds the se is
    √2 √(2/m) = 2/√m and the df 2 (m - 1); the MDE (t(0.975) + t(0.8)) 2/√m reaches 4 when
    t(0.975) + t(0.8) <= 2√m: m = 3 (df 4): 2.7764 + 0.9410 = 3.717 > 3.464; m = 4 (df 6):
    2.4469 + 0.9057 = 3.353 <= 4. So 4 seeds per cell."""
    estimate = stats.difference([1.0, 3.0], [5.0, 7.0])
    assert estimate.seeds == 2 and estimate.seeds_for(-4.0, 0.05, 0.8) == 4
    assert estimate.seeds_for(0.0, 0.05, 0.8) is None and estimate.seeds_for(1e-6, 0.05, 0.8, limit=50) is None
