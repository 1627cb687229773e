"""analysis/findings.py and render_findings.py: the paper's findings on logged runs.

Each sweep below is logged to MLflow with hand-picked AP values per seed, so the
expected estimate, interval, level and sizes follow from the docstrings' arithmetic.
"""

from __future__ import annotations

import csv
import io
import math

import pytest
from rich.console import Console
from tests.analysis_fixtures import (  # noqa: F401  (analysis_store is a fixture)
    FakeTrial,
    analysis_store,
    fake_metrics,
    log_fake_sweep,
    table_block,
)

from analysis import layout, stats
from analysis.errors import DeclarationError
from analysis.rules import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from analysis.findings import COMPARISONS, _finding, load_findings, sweep_findings
from analysis.render_findings import findings_blocks, print_findings, summary_lines
from analysis.runs import load_sweep, open_client


def _findings(store, name: str, trials: list[FakeTrial], table: dict) -> dict:
    log_fake_sweep(store.uri, name, trials, table=table)
    return {r.id: r for r in sweep_findings(load_sweep(open_client(store.uri), name))}


def _cells(overrides: dict, aps: list) -> list[FakeTrial]:
    """One trial per seed; an AP of None is a FAILED seed."""
    return [FakeTrial(overrides, seed, status=layout.FAILED, error="boom") if ap is None
            else FakeTrial(overrides, seed, fake_metrics(ap / 100)) for seed, ap in enumerate(aps)]


# --- findings.yaml -------------------------------------------------------------------------------


def test_every_finding_loads_and_names_a_registered_comparison():
    findings = load_findings()
    assert {f.compare for f in findings.values()} <= set(COMPARISONS)
    for table in ("table1a_alpha_ce", "table1b_gamma_alpha", "table1c_anchors", "table1d_ohem",
                  "table1e_speed_accuracy", "appendix_table3_fl_star"):
        assert any(f.table == table for f in findings.values())
    assert findings["fl_star_on_par_with_fl"].margin_relative == 0.05
    assert findings["best_alpha_falls_with_gamma"].terms[1] == (-1.0, {"gamma": 2.0, "alpha": 0.9})


BASE = {"statement": "s", "table": "table1c_anchors"}


@pytest.mark.parametrize("spec, message", [
    ({**BASE, "compare": "beats", "a": {"num_scales": 3}, "b": {"num_scales": 1}, "marginn": 1},
     "findings.yaml: x: unknown key 'marginn'; allowed: statement, table, compare, a, b"),
    ({**BASE, "compare": "beatz"}, "findings.yaml: x.compare: unknown comparison 'beatz'; allowed: beats, on_par"),
    ({**BASE, "compare": "beats", "a": {"num_scales": 3}}, "findings.yaml: x.b: required by beats"),
    ({**BASE, "compare": "beats", "a": {"num_scales": 3}, "b": {"num_scales": 1}, "margin": 1},
     "findings.yaml: x.margin: not used by beats"),
    ({**BASE, "compare": "on_par", "a": {"num_scales": 3}, "b": {"num_scales": 1}},
     "findings.yaml: x: on_par needs one of margin (metric units) or margin_relative"),
    ({**BASE, "compare": "on_par", "a": {"num_scales": 3}, "b": {"num_scales": 1}, "margin_relative": -1},
     "findings.yaml: x.margin_relative: must be a number >= 0"),
    ({**BASE, "compare": "contrast", "terms": [{"weight": 1, "cell": {"num_scales": 3}},
                                              {"weight": 1, "cell": {"num_scales": 1}}]},
     "findings.yaml: x.terms: the weights must sum to 0 (a contrast), not 2"),
    ({**BASE, "compare": "contrast", "terms": [{"weight": 1, "cel": {"num_scales": 3}}, {}]},
     "findings.yaml: x.terms: must be a list of {weight: number, cell: {column: value}}"),
    ({**BASE, "compare": "contrast", "terms": [{"weight": 1, "cell": {"depth": 3}},
                                              {"weight": -1, "cell": {"depth": 1}}]},
     "findings.yaml: x: 'depth' is not a column of table1c_anchors"),
])
def test_findings_yaml_is_checked_strictly(spec, message):
    with pytest.raises(DeclarationError) as error:
        _finding("x", spec)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


# --- beats, failed seeds, sizes ------------------------------------------------------------------


def _ohem_trials(fl: list, ohem: list) -> list[FakeTrial]:
    """FL and the best OHEM cell with these AP percents per seed; a worse OHEM cell beside."""
    fl_cell = {"loss.name": "focal", "loss.gamma": 2.0, "loss.alpha": 0.25}
    best = {"loss.name": "ohem", "loss.ohem.batch_per_image": 128, "loss.ohem.nms_thresh": 0.7}
    worse = {"loss.name": "ohem", "loss.ohem.batch_per_image": 256, "loss.ohem.nms_thresh": 0.7}
    return _cells(fl_cell, fl) + _cells(best, ohem) + _cells(worse, [a - 5 for a in ohem if a is not None])


@pytest.mark.parametrize("name, fl, ohem, verdict", [
    ("ohem_reproduced", [34.0, 35.0, 36.0], [30.0, 31.0, 32.0], REPRODUCED),
    ("ohem_not_reproduced", [28.0, 29.0, 30.0], [33.0, 34.0, 35.0], NOT_REPRODUCED),
    ("ohem_one_seed", [36.0], [30.0, 31.0], INCONCLUSIVE),
    ("ohem_straddles", [30.0, 34.0], [31.0, 33.0], INCONCLUSIVE),
])
def test_fl_beats_best_ohem_verdicts_on_logged_runs(analysis_store, name, fl, ohem, verdict):
    (result,) = _findings(analysis_store, name, _ohem_trials(fl, ohem), table_block("ohem")).values()
    assert result.id == "fl_beats_best_ohem" and result.verdict == verdict
    assert result.paper_value == pytest.approx(36.0 - 32.8)  # FL against the paper's best OHEM
    assert result.estimate == pytest.approx(sum(fl) / len(fl) - sum(ohem) / len(ohem))
    assert "nms_threshold=0.7" in result.compared and "batch_size=128" in result.compared  # the best OHEM
    assert result.level == 0.05  # one finding: its own level
    if verdict in (REPRODUCED, NOT_REPRODUCED):
        assert result.low is not None and (result.low > 0) == (verdict == REPRODUCED)


def test_a_failed_seed_is_counted_and_shown_and_sizes_are_relative(analysis_store):
    """FL [34, 35, failed] against OHEM [30, 31, 32]: n 2 of 3, 1 failed. Welch: 34.5 - 31 = 3.5,
    se² = 0.5/2 + 1/3 = 0.58333, df = 0.34028 / (0.0625/1 + 0.11111/2) = 2.8824. Size relative
    to OHEM's AP: 3.5 / 31 = +11.3%; the paper's (36.0 - 32.8) / 32.8 = +9.8%. The MDE at 5%,
    power 0.8: (t(0.975, 2.8824) + t(0.8, 2.8824)) √0.58333."""
    (result,) = _findings(analysis_store, "ohem_failed_seed", _ohem_trials([34.0, 35.0, None], [30.0, 31.0, 32.0]),
                          table_block("ohem")).values()
    assert result.n == 2 and result.seeds == "2 of 3, 1 failed" and result.failed == 1
    assert result.estimate == pytest.approx(3.5)
    df = (0.5 / 2 + 1 / 3) ** 2 / ((0.5 / 2) ** 2 / 1 + (1 / 3) ** 2 / 2)
    assert df == pytest.approx(2.8824, abs=1e-4)
    mde = (stats.t_quantile(0.975, df) + stats.t_quantile(0.8, df)) * math.sqrt(0.5 / 2 + 1 / 3)
    assert result.detectable == pytest.approx(mde)
    assert result.decidable == f"decidable if the true difference is ≥ {mde:.1f} AP"
    assert result.relative == pytest.approx(3.5 / 31) and result.paper_relative == pytest.approx(3.2 / 32.8)


# --- the interaction contrast and Holm ------------------------------------------------------------


def test_the_best_alpha_falls_as_an_interaction_contrast_with_holm_levels(analysis_store):
    """Cells (γ, α): (2, .25) = [10, 12], (2, .9) = [5, 7], (0, .25) = [3, 5], (0, .9) = [6, 10].
    Contrast (11 - 6) - (4 - 8) = 9, se² = 1 + 1 + 1 + 4 = 7, df = 49/19 (tests/test_stats.py).
    The headline: γ 2 at its best α (.25, 11) against γ 0 at its best (.9, 8): 3; γ 5 has no run.
    Holm over 3: the smallest p (the contrast's, 2 P(t > 9/√7 on 2.58 df) = 0.05) fails 5%/3,
    so every finding is held to 5%/3, and the contrast's interval is the 98.33% one."""
    trials = (_cells({"loss.gamma": 2.0, "loss.alpha": 0.25}, [10.0, 12.0])
              + _cells({"loss.gamma": 2.0, "loss.alpha": 0.9}, [5.0, 7.0])
              + _cells({"loss.gamma": 0.0, "loss.alpha": 0.25}, [3.0, 5.0])
              + _cells({"loss.gamma": 0.0, "loss.alpha": 0.9}, [6.0, 10.0]))
    # Welch's se, as computed above (the shipped sweep file declares a pooled variance instead)
    block = {**table_block("gamma_alpha"), "verdicts": {"pooled_variance": False}}
    results = _findings(analysis_store, "gamma_contrast", trials, block)
    contrast = results["best_alpha_falls_with_gamma"]
    assert contrast.estimate == pytest.approx(9.0)
    assert [r.level for r in results.values()] == pytest.approx([0.05 / 3] * 3)
    half = stats.t_quantile(1 - 0.05 / 6, 49 / 19) * math.sqrt(7)
    assert (contrast.low, contrast.high) == pytest.approx((9 - half, 9 + half))
    assert contrast.verdict == INCONCLUSIVE and contrast.paper == "—"  # the paper lists only each γ's best α
    assert contrast.relative == pytest.approx(9 / 11)  # relative to AP(γ 2, α .25)
    assert contrast.seeds == "2 of 2"
    assert contrast.seeds_needed > 2 and contrast.decidable.endswith(
        f"; the observed effect needs ~{contrast.seeds_needed} seeds per cell")
    assert results["fl_gamma2_beats_best_ce"].estimate == pytest.approx(3.0)
    assert results["gamma5_below_gamma2"].seeds == "2 of 2, 1 cell not run"
    assert all(r.family == "Holm over 3 findings, 5% family-wise" for r in results.values())


# --- a declared pooled variance -------------------------------------------------------------------


def _alpha_trials(spread: float) -> list[FakeTrial]:
    """α .1 collapsed (0.0 in every seed), .25 / .5 / .75 with the given spread around their mean."""
    means = {0.25: 10.5, 0.5: 28.5, 0.75: 33.5}
    trials = _cells({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": 0.1}, [0.0, 0.0, 0.0])
    for alpha, mean in means.items():
        gap = spread * (2 if alpha == 0.75 else 1)
        trials += _cells({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": alpha}, [mean - gap, mean, mean + gap])
    return trials


def test_a_declared_pooled_variance_decides_a_collapsed_cell(analysis_store):
    """Cells .25, .5, .75 at ±0.5, ±0.5, ±1.0: variances 0.25, 0.25, 1.0; pooled s² = 0.5 on 6 df;
    Bartlett: T = (6 ln 0.5 - 2 ln 0.25 - 2 ln 0.25 - 2 ln 1) / (1 + (3/2 - 1/6)/6)
    = 1.38629 / 1.22222 = 1.1342, χ²(2): p = exp(-T/2) = 0.567: compatible. α .1 (all 0.0) is at a floor:
    left out of the pool, but compared with it: mean 0, se = √(0.5/3) = 0.40825 on 6 df.
    .75 beats .5: 5 / √(0.5·2/3) = 8.66 on 6 df, p = 0.00013, Holm's first: 2.5%.
    CE collapses: p = 2 P(t > 1/0.40825 = 2.449) = 0.0498 <= 5% (Holm's second): the 95% interval
    0 ± 2.4469 × 0.40825 = [-0.999, 0.999] lies below 1: reproduced.
    Without the declaration, the collapsed cell's zero variance leaves it inconclusive."""
    table = {**table_block("alpha_ce"), "verdicts": {"pooled_variance": True}}
    results = _findings(analysis_store, "alpha_pooled", _alpha_trials(0.5), table)
    collapse, beats = results["ce_collapses_at_alpha_01"], results["ce_alpha_075_beats_05"]
    assert beats.verdict == REPRODUCED and beats.level == pytest.approx(0.025)
    assert collapse.verdict == REPRODUCED and collapse.level == pytest.approx(0.05)
    assert collapse.high == pytest.approx(stats.t_quantile(0.975, 6) * math.sqrt(0.5 / 3))
    assert collapse.variance.startswith("pooled: s 0.71 AP, df 6 (3 cells, Bartlett p 0.57: compatible, "
                                        "1 at a floor left out)")
    assert collapse.relative == pytest.approx(0.0) and collapse.ours == "0.0 [-1.0, 1.0]"
    plain = _findings(analysis_store, "alpha_welch", _alpha_trials(0.5), table_block("alpha_ce"))
    assert plain["ce_collapses_at_alpha_01"].verdict == INCONCLUSIVE
    assert "zero variance" in plain["ce_collapses_at_alpha_01"].compared and plain["ce_alpha_075_beats_05"].variance == "Welch"


def test_incompatible_variances_are_not_pooled_and_the_report_says_so(analysis_store):
    """Spreads ±0.01 and ±10 (variances 1e-4 and 100): Bartlett rejects; Welch is used."""
    trials = (_cells({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": 0.5}, [28.49, 28.5, 28.51])
              + _cells({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": 0.75}, [23.5, 33.5, 43.5])
              + _cells({"loss.name": "ce", "loss.gamma": 0.0, "loss.alpha": 0.1}, [0.0, 0.0, 0.0]))
    table = {**table_block("alpha_ce"), "verdicts": {"pooled_variance": True}}
    results = _findings(analysis_store, "alpha_incompatible", trials, table)
    assert results["ce_collapses_at_alpha_01"].variance.startswith(
        "Welch: pooled variance declared, not used: the cells' variances differ (2 cells, Bartlett p")
    assert results["ce_collapses_at_alpha_01"].verdict == INCONCLUSIVE


# --- on a par (TOST) with a relative margin --------------------------------------------------------


def test_anchors_3x3_beat_1x1_and_saturate_within_a_relative_margin(analysis_store):
    """1x1 [30.0, 30.2, 30.4], 3x3 [34.1, 34.3, 34.5], 4x3 [34.0, 34.2, 34.4] (each s = 0.2).
    3x3 - 1x1 = +4.1; 4x3 - 3x3 = -0.1, se = 0.2 √(2/3) = 0.1633 on 4 df. The margin: 5% of
    our 3x3's 34.3 = ±1.715 AP; the TOST interval at 5% (Holm's second, both p tiny) is the
    90% one, -0.1 ± 2.1318 × 0.1633 = [-0.448, 0.248]: within, on a par. The paper: 33.8 - 34.0
    = -0.2, relative -0.2 / 34.0."""
    def anchors(scales: int, ratios: list, aps: list) -> list[FakeTrial]:
        return _cells({"model.anchors.scales_per_octave": scales, "model.anchors.aspect_ratios": ratios}, aps)

    trials = (anchors(1, [1.0], [30.0, 30.2, 30.4]) + anchors(3, [0.5, 1.0, 2.0], [34.1, 34.3, 34.5])
              + anchors(4, [0.5, 1.0, 2.0], [34.0, 34.2, 34.4]))
    results = _findings(analysis_store, "anchors_tost", trials, table_block("anchors"))
    gain, saturates = results["anchors_3x3_beat_1x1"], results["anchors_saturate_beyond_3x3"]
    assert gain.verdict == REPRODUCED and gain.estimate == pytest.approx(4.1) and gain.paper_value == pytest.approx(3.7)
    assert saturates.verdict == REPRODUCED and saturates.confidence == pytest.approx(0.90)
    half = stats.t_quantile(0.95, 4) * 0.2 * math.sqrt(2 / 3)
    assert (saturates.low, saturates.high) == pytest.approx((-0.1 - half, -0.1 + half))
    assert "margin ±1.7 AP (5% of 34.3)" in saturates.compared
    assert saturates.paper_value == pytest.approx(-0.2) and saturates.paper_relative == pytest.approx(-0.2 / 34.0)
    assert saturates.decidable.startswith("on a par decidable if the margin is ≥ ")


# --- the paper's numbers on the standard store ------------------------------------------------------


def test_paper_values_of_the_standard_sweeps(analysis_store):
    by_id = {r.id: r for name in ("speed_accuracy", "gamma_alpha", "alpha_ce", "anchors")
             for r in sweep_findings(load_sweep(open_client(analysis_store.uri), name))}
    assert by_id["ap_rises_with_scale"].paper_value == pytest.approx(0.6)  # 50: 700 -> 800, the weakest step
    assert by_id["ms_rise_with_depth"].paper_value == pytest.approx(17)  # 400 px: 64 -> 81 ms
    assert by_id["ce_alpha_075_beats_05"].paper_value == pytest.approx(31.1 - 30.2)  # the paper's +0.9
    assert by_id["ce_alpha_075_beats_05"].paper_relative == pytest.approx(0.9 / 30.2)
    assert by_id["fl_gamma2_beats_best_ce"].paper_relative == pytest.approx(2.9 / 31.1)
    assert by_id["anchors_3x3_beat_1x1"].paper_value == pytest.approx(34.0 - 30.3)
    assert by_id["ce_collapses_at_alpha_01"].paper_value == 0.0
    assert by_id["ce_collapses_at_alpha_01"].verdict == INCONCLUSIVE  # its run failed: no seeds
    assert by_id["ce_collapses_at_alpha_01"].seeds == "0 of 1, 1 failed"


# --- rendering ----------------------------------------------------------------------------------------


def test_the_findings_block_reads_in_80_columns_with_units_right(analysis_store):
    results = [r for name in ("gamma_alpha", "alpha_ce", "anchors", "speed_accuracy")
               for r in sweep_findings(load_sweep(open_client(analysis_store.uri), name))]
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_findings(results, console)
    text = console.file.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "inconclusive    FL with γ = 2 (its best α) beats the best CE (γ = 0)\n" in text
    assert "— AP" not in text and "seeds 0 of 1, 1 failed" in text
    assert "Holm over 3 findings, 5% family-wise; standard errors: Welch" in text
    blocks = findings_blocks(results)
    assert all("— AP" not in block for block in blocks.values())
    assert "| finding | ours | size | paper | paper size | seeds | level | verdict | decidable if |" in blocks[".md"]
    records = list(csv.DictReader(io.StringIO(blocks[".csv"])))
    headline = next(r for r in records if r["finding"] == "fl_gamma2_beats_best_ce")
    assert headline["paper"] == "+2.9" and headline["level"] == "0.0167" and headline["seeds"] == "2 of 2"
    assert float(headline["paper_relative"]) == pytest.approx(2.9 / 31.1, abs=1e-3)
    assert blocks[".tex"].isascii()
    assert summary_lines(results)[0].startswith("inconclusive: FL with γ = 2 (its best α) beats the best CE "
                                                "(γ = 0) (ours +2.1 [")
