"""analysis/rules.py and analysis/design.py: the verdict rules and the family-wise levels,
each on a hand-computed case (the numbers in the docstrings)."""

from __future__ import annotations

import random

import pytest

from analysis import rules
from analysis import stats
from analysis.parse import DeclarationError, parse_table
from analysis.design import VerdictDesign, holm, parse_verdicts
from analysis.rules import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from analysis.stats import Estimate, NoEstimate

NORMAL = 1e9  # df: Student's t is the normal here, so the hand values are z quantiles


# --- beats / at_most (directional) ---------------------------------------------------------


@pytest.mark.parametrize("a, b, verdict", [
    ([34.0, 35.0, 36.0], [30.0, 31.0, 32.0], REPRODUCED),
    ([30.0, 31.0, 32.0], [34.0, 35.0, 36.0], NOT_REPRODUCED),
    ([34.0], [30.0, 31.0], INCONCLUSIVE),  # one seed: no interval
    ([30.0, 34.0], [31.0, 33.0], INCONCLUSIVE),  # the interval straddles 0
    ([], [30.0, 31.0], INCONCLUSIVE),  # no finished seed
    ([2.0, 2.0, 2.0], [0.0, 0.0, 0.0], INCONCLUSIVE),  # zero variance in both cells
])
def test_beats(a, b, verdict):
    assert rules.beats(stats.difference(a, b)).at(0.05, 0.8).verdict == verdict


def test_zero_variance_is_inconclusive_and_says_why_unless_a_pooled_variance_is_declared():
    """Both cells at 0.0 ± 0.0 and 2.0 ± 0.0: no interval, inconclusive. With a pooled variance
    s_p² = 1 (df 4): se² = 1 (1/3 + 1/3), t = 2 / 0.8165 = 2.449 on 4 df, p = 0.0705:
    inconclusive at 5%, reproduced at 10%."""
    outcome = rules.beats(stats.difference([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])).at(0.05, 0.8)
    assert outcome.verdict == INCONCLUSIVE and outcome.interval is None and "zero variance" in outcome.reason
    assert outcome.estimate == 2.0
    pooled = stats.Pooled(1.0, 4, 2, 0, 0.0, 1.0, True)
    evidence = rules.beats(stats.difference([2.0, 2.0, 2.0], [0.0, 0.0, 0.0], pooled))
    assert evidence.p_value == pytest.approx(0.0705, abs=1e-4)
    assert evidence.at(0.05, 0.8).verdict == INCONCLUSIVE and evidence.at(0.10, 0.8).verdict == REPRODUCED


def test_at_most_and_its_detectable_distance():
    """mean [0, 0.3, 0.6] = 0.3, s = 0.3, se = 0.3/√3 = 0.17321, df 2: the 95% interval
    0.3 ± 4.30265 × 0.17321 = [-0.445, 1.045] straddles 1 (inconclusive); at 10%,
    0.3 ± 2.91999 × 0.17321 = [-0.206, 0.806] lies below 1 (reproduced)."""
    evidence = rules.at_most(stats.mean([0.0, 0.3, 0.6]), 1.0)
    assert evidence.at(0.05, 0.8).verdict == INCONCLUSIVE
    outcome = evidence.at(0.10, 0.8)
    assert outcome.verdict == REPRODUCED and outcome.interval.high == pytest.approx(0.806, abs=1e-3)
    assert rules.at_most(stats.mean([10.0, 11.0]), 1.0).at(0.05, 0.8).verdict == NOT_REPRODUCED


def test_the_interval_and_detectable_effect_use_the_level_given():
    """a - b with se = 1 on ~normal df, level 1.67% (Holm's first of 3): the interval is the
    98.33% one, ±2.394; the MDE at power 0.8 is (2.394 + 0.8416) × 1 = 3.236."""
    outcome = rules.beats(Estimate(3.0, 1.0, NORMAL)).at(0.05 / 3, 0.8)
    assert outcome.interval.confidence == pytest.approx(1 - 0.05 / 3)
    assert outcome.interval.low == pytest.approx(3.0 - 2.394, abs=1e-3)
    assert outcome.detectable == pytest.approx(3.236, abs=1e-3) and outcome.level == pytest.approx(0.05 / 3)


# --- on a par (TOST) ---------------------------------------------------------------------------


def test_tost_by_hand():
    """Estimate 0.2, se 0.5, df 10, margin ±1.5.
    At 5%: the 90% interval 0.2 ± 1.8125 × 0.5 = [-0.706, 1.106] lies within ±1.5: on a par.
    p = max(P(t > (0.2 + 1.5)/0.5 = 3.4), P(t > (1.5 - 0.2)/0.5 = 2.6)) = 0.01325 on 10 df,
    so at 1% (98% interval 0.2 ± 2.7638 × 0.5 = [-1.182, 1.582]) it is inconclusive.
    The margin it could confirm with power 0.8: (t(0.95) + t(0.9)) se = (1.8125 + 1.3722) × 0.5 = 1.592."""
    evidence = rules.Equivalence(Estimate(0.2, 0.5, 10), 1.5)
    outcome = evidence.at(0.05, 0.8)
    assert outcome.verdict == REPRODUCED and outcome.interval.confidence == pytest.approx(0.90)
    assert (outcome.interval.low, outcome.interval.high) == pytest.approx((-0.706, 1.106), abs=1e-3)
    assert evidence.p_value == pytest.approx(0.01325, abs=1e-5)
    assert evidence.at(0.01, 0.8).verdict == INCONCLUSIVE
    assert outcome.detectable == pytest.approx(1.592, abs=1e-3)


def test_tost_not_on_par_and_no_estimate():
    """Estimate 3, se 0.5, df 10, margin ±1: the 95% interval 3 ± 2.2281 × 0.5 = [1.886, 4.114]
    lies outside the margin: not on a par."""
    outcome = rules.Equivalence(Estimate(3.0, 0.5, 10), 1.0).at(0.05, 0.8)
    assert outcome.verdict == NOT_REPRODUCED and outcome.interval.low == pytest.approx(1.886, abs=1e-3)
    assert rules.Equivalence(NoEstimate("one seed", 0.1), 1.0).at(0.05, 0.8).verdict == INCONCLUSIVE


# --- trends --------------------------------------------------------------------------------------


def test_trend_needs_every_step_and_corrects_against_for_the_number_of_steps():
    """Step 1: -2 (se 1), step 2: +5 (se 1), ~normal. Alone, step 1 goes against a rise at 5%:
    its p is 2 (1 - Φ(2)) = 0.0455 < 0.05. With 2 steps each is held to 2.5%: the 97.5% interval
    -2 ± 2.2414 = [-4.24, 0.24] straddles 0, so the trend is inconclusive, not "not reproduced"."""
    against = Estimate(-2.0, 1.0, NORMAL)
    assert rules.trend([against], rising=True).at(0.05, 0.8).verdict == NOT_REPRODUCED
    two = rules.trend([against, Estimate(5.0, 1.0, NORMAL)], rising=True)
    assert two.at(0.05, 0.8).verdict == INCONCLUSIVE
    assert two.p_value == pytest.approx(2 * 0.0455, abs=1e-3)  # k × the against step's p
    up = rules.trend([Estimate(3.0, 1.0, NORMAL), Estimate(4.0, 1.0, NORMAL)], rising=True)
    outcome = up.at(0.05, 0.8)
    assert outcome.verdict == REPRODUCED and outcome.estimate == 3.0  # the weakest step
    assert rules.trend([Estimate(3.0, 1.0, NORMAL)], rising=False).at(0.05, 0.8).verdict == NOT_REPRODUCED
    assert rules.trend([NoEstimate("one seed", 1.0)], rising=True).at(0.05, 0.8).verdict == INCONCLUSIVE


def test_a_flat_truth_fires_not_reproduced_at_most_half_the_level():
    """4 points along an axis, all with the same true AP, 3 seeds of sd 1 each, 2,000 draws:
    with each of the 3 steps at 5%/3, "not reproduced" (a rise claimed) fires in at most
    3 × (5%/3) / 2 = 2.5% of draws. Uncorrected (each step at 5%) it would fire ~6%."""
    rng = random.Random(0)
    fired = uncorrected = 0
    draws = 2000
    for _ in range(draws):
        cells = [[rng.gauss(0.0, 1.0) for _ in range(3)] for _ in range(4)]
        steps = [stats.difference(q, p) for p, q in zip(cells, cells[1:])]
        fired += rules.trend(steps, rising=True).at(0.05, 0.8).verdict == NOT_REPRODUCED
        uncorrected += any(s.interval(0.95).below(0) for s in steps)
    assert fired / draws <= 0.025
    assert uncorrected / draws > 0.04  # what the correction removes


@pytest.mark.parametrize("evidence", [
    rules.beats(Estimate(2.5, 1.0, 4.0)),
    rules.at_most(Estimate(0.4, 0.2, 3.0), 1.0),
    rules.Equivalence(Estimate(0.3, 0.4, 6.0), 1.5),
    rules.Equivalence(Estimate(3.0, 0.6, 6.0), 1.0),
    rules.trend([Estimate(2.0, 0.7, 5.0), Estimate(3.0, 1.0, 5.0)], rising=True),
    rules.trend([Estimate(-3.0, 0.7, 5.0), Estimate(3.0, 1.0, 5.0)], rising=True),
])
def test_each_rule_decides_exactly_at_levels_above_its_p_value(evidence):
    """What the family-wise rule relies on: decided at level a exactly when p <= a."""
    p = evidence.p_value
    assert 0 < p < 0.5
    assert evidence.at(p * 1.01, 0.8).verdict != INCONCLUSIVE
    assert evidence.at(p * 0.99, 0.8).verdict == INCONCLUSIVE


# --- the family-wise rule (design.py) ------------------------------------------------------------


def test_holm_by_hand():
    """p = (0.01, 0.04, 0.03), 5%: sorted 0.01 <= 5%/3 (decided), then 0.03 > 5%/2 = 2.5% stops
    the step-down: 0.03 and 0.04 are both held to 2.5%. p = (0.01, 0.02, 0.03): every one passes,
    at 5%/3, 5%/2 and 5%."""
    assert holm([0.01, 0.04, 0.03], 0.05) == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert holm([0.01, 0.02, 0.03], 0.05) == pytest.approx([0.05 / 3, 0.025, 0.05])
    assert holm([0.2], 0.05) == [0.05]


def test_design_levels_and_description():
    assert VerdictDesign(family="bonferroni").levels([0.01, 0.5]) == [0.025, 0.025]
    assert VerdictDesign(family="none").levels([0.01, 0.5]) == [0.05, 0.05]
    assert VerdictDesign().describe(3) == "Holm over 3 findings, 5% family-wise"
    assert VerdictDesign().describe(1) == "each finding at 5%"


@pytest.mark.parametrize("raw, message", [
    ({"familly": "holm"}, "sweep.table.verdicts: unknown key 'familly'; allowed: level, family, power, pooled_variance"),
    ({"family": "sidak"}, "sweep.table.verdicts.family: unknown rule 'sidak'; allowed: holm, bonferroni, none"),
    ({"level": 5}, "sweep.table.verdicts.level: 5 must be a number in (0, 1)"),
    ({"pooled_variance": "yes"}, "sweep.table.verdicts.pooled_variance: must be true or false"),
    ([1], "sweep.table.verdicts: must be a mapping"),
])
def test_bad_verdict_declarations_are_one_line_errors(raw, message):
    with pytest.raises(DeclarationError) as error:
        parse_table({"paper": "table1b_gamma_alpha", "rows": {"gamma": "loss.gamma"}, "verdicts": raw})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_declared_design_survives_the_table_declaration():
    raw = {"paper": "table1b_gamma_alpha", "rows": {"gamma": "loss.gamma"},
           "verdicts": {"family": "bonferroni", "pooled_variance": True, "power": 0.9}}
    assert parse_table(raw).verdicts == VerdictDesign(family="bonferroni", pooled_variance=True, power=0.9)
    assert parse_verdicts(None) == VerdictDesign()
