"""analysis/stats.py, findings.py, paper_findings.py: intervals, verdict rules, the paper's findings."""

from __future__ import annotations

import math

import pytest
from tests.analysis_fixtures import (  # noqa: F401  (analysis_store is a fixture)
    FakeTrial,
    analysis_store,
    fake_metrics,
    log_fake_sweep,
    table_block,
)

from analysis import findings as rules
from analysis.findings import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from analysis.paper_findings import COMPARISONS, load_findings, sweep_findings
from analysis.runs import load_sweep, open_client
from analysis.stats import NORMAL_975, mean_interval, t_quantile, welch_interval

# --- stats.py ---------------------------------------------------------------------------


def test_welch_interval_by_hand():
    # a = [1, 3], b = [5, 7]: means 2 and 6, variances 2 and 2, se^2 = 2/2 + 2/2 = 2,
    # df = 2^2 / (1^2/1 + 1^2/1) = 2, t(0.975, 2) = 4.303: -4 +- 4.303 * sqrt(2) = -4 +- 6.0854
    interval = welch_interval([1.0, 3.0], [5.0, 7.0])
    assert interval.estimate == -4.0
    assert interval.low == pytest.approx(-4 - 4.303 * math.sqrt(2)) == pytest.approx(-10.0854, abs=1e-4)
    assert interval.high == pytest.approx(2.0854, abs=1e-4)


def test_welch_with_unequal_variances_rounds_df_down():
    # a = [1, 2, 3] (var 1), b = [4, 6] (var 2): se^2 = 1/3 + 1 = 4/3,
    # df = (16/9) / ((1/9)/2 + 1/1) = 32/19 = 1.68 -> the df = 1 quantile, 12.706
    interval = welch_interval([1.0, 2.0, 3.0], [4.0, 6.0])
    assert interval.estimate == -3.0
    assert interval.high == pytest.approx(-3 + 12.706 * math.sqrt(4 / 3))


def test_identical_seeds_give_a_zero_width_interval_and_one_seed_none():
    assert welch_interval([2.0, 2.0], [1.0, 1.0]).low == 1.0
    assert welch_interval([2.0], [1.0, 1.5]) is None and mean_interval([3.0]) is None


def test_t_quantile_table():
    assert t_quantile(1) == 12.706 and t_quantile(30) == 2.042
    assert t_quantile(35.5) == 2.042  # between entries: the one below (wider)
    assert t_quantile(500) == NORMAL_975
    interval = mean_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(2) = 4.303
    assert (interval.low, interval.high) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))


# --- findings.py (pure rules) ---------------------------------------------------------------


@pytest.mark.parametrize("a, b, verdict", [
    ([34.0, 35.0, 36.0], [30.0, 31.0, 32.0], REPRODUCED),
    ([30.0, 31.0, 32.0], [34.0, 35.0, 36.0], NOT_REPRODUCED),
    ([34.0], [30.0, 31.0], INCONCLUSIVE),  # one seed: no interval
    ([30.0, 34.0], [31.0, 33.0], INCONCLUSIVE),  # the interval straddles 0
    ([], [30.0, 31.0], INCONCLUSIVE),  # no finished seed
])
def test_beats(a, b, verdict):
    assert rules.beats(a, b).verdict == verdict


def test_on_par_within_outside_and_straddling_the_margin():
    assert rules.on_par([33.0, 33.2], [33.1, 33.3], margin=1.0).verdict == REPRODUCED
    assert rules.on_par([30.0, 30.2], [34.0, 34.2], margin=1.0).verdict == NOT_REPRODUCED
    assert rules.on_par([30.0, 34.0], [32.0, 32.5], margin=1.0).verdict == INCONCLUSIVE


def test_at_most():
    assert rules.at_most([0.0, 0.0, 0.1], margin=1.0).verdict == REPRODUCED
    assert rules.at_most([10.0, 11.0], margin=1.0).verdict == NOT_REPRODUCED
    assert rules.at_most([0.2], margin=1.0).verdict == INCONCLUSIVE


def test_trend_needs_every_step():
    up = [([1.0, 1.1], [2.0, 2.1]), ([2.0, 2.1], [3.0, 3.1])]
    outcome = rules.trend(up, rising=True)
    assert outcome.verdict == REPRODUCED and outcome.estimate == pytest.approx(1.0)
    assert rules.trend(up, rising=False).verdict == NOT_REPRODUCED
    flat = up + [([3.0, 3.1], [2.5, 3.6])]  # the last step straddles 0
    assert rules.trend(flat, rising=True).verdict == INCONCLUSIVE
    assert rules.trend([([1.0], [2.0])], rising=True).verdict == INCONCLUSIVE


def test_choice_trend():
    decided = ([30.0, 30.2], [20.0, 20.2])  # best, runner-up: a clear choice
    falls = [rules.Choice(0.75, *decided), rules.Choice(0.25, *decided)]
    outcome = rules.choice_trend(falls, rising=False)
    assert outcome.verdict == REPRODUCED and outcome.estimate == -0.5
    assert rules.choice_trend(falls[::-1], rising=False).verdict == NOT_REPRODUCED
    undecided = [rules.Choice(0.75, [30.0, 31.0], [30.5, 30.6]), rules.Choice(0.25, *decided)]
    assert rules.choice_trend(undecided, rising=False).verdict == INCONCLUSIVE


# --- findings.yaml and evaluation on logged runs ------------------------------------------


def test_every_finding_loads_and_names_a_registered_comparison():
    findings = load_findings()
    assert {f.compare for f in findings.values()} <= set(COMPARISONS)
    for table in ("table1a_alpha_ce", "table1b_gamma_alpha", "table1c_anchors", "table1d_ohem",
                  "table1e_speed_accuracy", "appendix_table3_fl_star"):
        assert any(f.table == table for f in findings.values())


def _ohem_trials(fl: list[float], ohem: list[float]) -> list[FakeTrial]:
    """FL and the best OHEM cell with these AP percents per seed; a worse OHEM cell beside."""
    cells = {"fl": {"loss.name": "focal", "loss.gamma": 2.0, "loss.alpha": 0.25},
             "ohem": {"loss.name": "ohem", "loss.ohem.batch_per_image": 128, "loss.ohem.nms_thresh": 0.7},
             "worse": {"loss.name": "ohem", "loss.ohem.batch_per_image": 256, "loss.ohem.nms_thresh": 0.7}}
    aps = {"fl": fl, "ohem": ohem, "worse": [a - 5 for a in ohem]}
    return [FakeTrial(cells[c], seed, fake_metrics(ap / 100)) for c in cells for seed, ap in enumerate(aps[c])]


@pytest.mark.parametrize("name, fl, ohem, verdict", [
    ("ohem_reproduced", [34.0, 35.0, 36.0], [30.0, 31.0, 32.0], REPRODUCED),
    ("ohem_not_reproduced", [28.0, 29.0, 30.0], [33.0, 34.0, 35.0], NOT_REPRODUCED),
    ("ohem_one_seed", [36.0], [30.0, 31.0], INCONCLUSIVE),
    ("ohem_straddles", [30.0, 34.0], [31.0, 33.0], INCONCLUSIVE),
])
def test_fl_beats_best_ohem_verdicts_on_logged_runs(analysis_store, name, fl, ohem, verdict):
    log_fake_sweep(analysis_store.uri, name, _ohem_trials(fl, ohem), table=table_block("ohem"))
    (result,) = sweep_findings(load_sweep(open_client(analysis_store.uri), name))
    assert result.id == "fl_beats_best_ohem" and result.verdict == verdict
    assert result.paper_value == pytest.approx(36.0 - 32.8)  # FL against the paper's best OHEM
    assert result.estimate == pytest.approx(sum(fl) / len(fl) - sum(ohem) / len(ohem))
    assert "nms_threshold=0.7" in result.compared and "batch_size=128" in result.compared  # the best OHEM
    if verdict == REPRODUCED or verdict == NOT_REPRODUCED:
        assert result.low is not None and (result.low > 0) == (verdict == REPRODUCED)


def test_paper_values_of_trends_choices_and_selections(analysis_store):
    by_id = {r.id: r for name in ("speed_accuracy", "gamma_alpha", "alpha_ce")
             for r in sweep_findings(load_sweep(open_client(analysis_store.uri), name))}
    assert by_id["ap_rises_with_scale"].paper_value == pytest.approx(0.6)  # 50: 700 -> 800, the weakest step
    assert by_id["ms_rise_with_depth"].paper_value == pytest.approx(17)  # 400 px: 64 -> 81 ms
    assert by_id["best_alpha_falls_with_gamma"].paper == "0.75 → 0.5 → 0.25"
    assert by_id["ce_best_alpha_near_075"].paper_value == pytest.approx(31.1 - 28.7)  # vs alpha .99
    assert by_id["ce_collapses_at_alpha_01"].paper_value == 0.0
    assert by_id["ce_collapses_at_alpha_01"].verdict == INCONCLUSIVE  # its run failed: no seeds
