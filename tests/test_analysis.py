"""analysis/: reading sweeps from a real MLflow store and building the paper's tables."""

from __future__ import annotations

import os
import statistics
import time
from types import SimpleNamespace

import pytest
from tests.analysis_fixtures import (  # noqa: F401  (analysis_store is a fixture)
    ALPHA_CE_AP,
    BEST_ALPHA,
    GAMMA_ALPHA_AP,
    NAN_ERROR,
    SEARCH_AP,
    FakeTrial,
    analysis_store,
    fake_metrics,
)

from analysis.errors import AnalysisError
from analysis.paper import load_paper, same_value
from analysis import layout
from analysis.records import TrialRecord, parse_param
from analysis.runs import load_sweep, open_client
from analysis.tables import MISSING, Table
from analysis.tables import build_tables, speed_note


def _load(store, name):
    return load_sweep(open_client(store.uri), name)


def _tables(store, name) -> dict[str, Table]:
    return {t.name: t for t in build_tables(_load(store, name))}


def _row(table: Table, **key) -> list:
    """The cells of the row whose key columns show these values."""
    index = {c.key: i for i, c in enumerate(table.columns)}
    for row in table.rows:
        if all(same_value(row.cells[index[k]].value, v) for k, v in key.items()):
            return row
    raise AssertionError(f"no row {key} in {table.name}")


def _cell(table: Table, column: str, **key):
    return _row(table, **key).cells[[c.key for c in table.columns].index(column)]


def pct(fraction: float) -> float:
    return round(100 * fraction, 1)


# --- runs.py -------------------------------------------------------------------


def test_load_sweep_returns_plain_records(analysis_store):
    sweep = _load(analysis_store, "alpha_ce")
    assert sweep.run_id == analysis_store.parents["alpha_ce"]
    assert (sweep.name, sweep.profile, sweep.kind) == ("alpha_ce", "cpu", "grid")
    by_alpha = {t.overrides["loss.alpha"]: t for t in sweep.trials}
    assert set(by_alpha) == set(ALPHA_CE_AP)
    finished = by_alpha[0.75]
    assert finished.status == "FINISHED" and finished.seed == 0 and finished.error == ""
    assert finished.metrics == pytest.approx(fake_metrics(0.312))  # the final values, not step 10's
    assert finished.value("loss.name") == "ce" and finished.value("model.depth") == 18
    failed = by_alpha[0.1]
    assert failed.status == "FAILED" and failed.error == NAN_ERROR and failed.metrics == {}


def test_latest_parent_of_a_sweep_and_parent_by_run_id(analysis_store):
    latest = _load(analysis_store, "gamma_alpha")
    assert latest.run_id == analysis_store.parents["gamma_alpha"]
    assert len(latest.trials) == sum(len(v) for v in GAMMA_ALPHA_AP.values())
    by_id = load_sweep(open_client(analysis_store.uri), latest.run_id)
    assert by_id.name == "gamma_alpha" and by_id.run_id == latest.run_id


def test_unknown_sweep_lists_the_sweeps_with_runs(analysis_store):
    with pytest.raises(AnalysisError, match="no runs of sweep 'nope'") as error:
        _load(analysis_store, "nope")
    for name in ("alpha_ce", "anchors", "fl_star", "gamma_alpha", "ohem", "search", "speed_accuracy"):
        assert name in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_run_id_and_child_run_id(analysis_store):
    with pytest.raises(AnalysisError, match="no run with id 0{32}"):
        _load(analysis_store, "0" * 32)
    child = _load(analysis_store, "alpha_ce").trials[0].run_id
    with pytest.raises(AnalysisError, match="not a sweep's parent run"):
        _load(analysis_store, child)


def test_unknown_experiment(analysis_store):
    with pytest.raises(AnalysisError, match="no experiment 'other' .*retinanet-sweeps"):
        load_sweep(open_client(analysis_store.uri), "alpha_ce", experiment="other")


def test_unreachable_server_fails_fast_and_restores_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    start = time.monotonic()
    with pytest.raises(AnalysisError, match="cannot read MLflow store http://localhost:1"):
        load_sweep(open_client("http://localhost:1"), "gamma_alpha")
    assert time.monotonic() - start < 10
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_missing_sqlite_file_is_an_error_not_a_new_store(tmp_path):
    with pytest.raises(AnalysisError, match="no MLflow store at sqlite:///"):
        open_client(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_resumed_cell_keeps_the_finished_run():
    def record(run_id, status, start):  # an mlflow Run lookalike
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status, start_time=start),
                               data=SimpleNamespace(tags={layout.CELL: "loss.alpha=0.25,seed=0"}))

    chosen = layout.latest_per_cell([record("a", "FAILED", 1), record("b", "FINISHED", 2),
                                     record("c", "FAILED", 3)]).values()
    assert [t.info.run_id for t in chosen] == ["b"]


def test_parse_param():
    assert parse_param("0.25") == 0.25 and parse_param("None") is None
    assert parse_param("[0.5, 1.0, 2.0]") == [0.5, 1.0, 2.0] and parse_param("ce") == "ce"


# --- tables.py -----------------------------------------------------------------


def test_alpha_table_cells_equal_logged_metrics_in_percent(analysis_store):
    table = _tables(analysis_store, "alpha_ce")["table1a"]
    for alpha, ap in ALPHA_CE_AP.items():
        if ap is None:
            continue
        metrics = fake_metrics(ap)
        for name in ("AP", "AP50", "AP75"):
            cell = _cell(table, name, alpha=alpha)
            assert cell.value == pct(metrics[name]) and cell.text == f"{pct(metrics[name]):.1f}"
    assert _cell(table, "paper_AP", alpha=0.75).value == 31.1


def test_failed_and_missing_cells_are_marked(analysis_store):
    table = _tables(analysis_store, "alpha_ce")["table1a"]
    failed = _row(table, alpha=0.1)
    assert failed.status == "failed" and failed.error == NAN_ERROR
    assert _cell(table, "AP", alpha=0.1).text == "failed"
    missing = _row(table, alpha=0.99)  # in the paper, not run
    assert missing.status == "missing" and _cell(table, "AP", alpha=0.99).text == MISSING
    assert _cell(table, "paper_AP", alpha=0.99).value == 28.7
    assert any("alpha=0.1" in note and "nan" in note for note in table.notes)


def test_best_row_is_highlighted(analysis_store):
    table = _tables(analysis_store, "alpha_ce")["table1a"]
    best = [row for row in table.rows if row.best]
    assert len(best) == 1 and best[0] is _row(table, alpha=0.75)
    assert all(c.bold for c in best[0].cells[:4]) and not any(c.bold for c in best[0].cells[4:])


def test_best_alpha_per_gamma_by_mean_over_seeds(analysis_store):
    table = _tables(analysis_store, "gamma_alpha")["table1b"]
    for gamma, alpha in BEST_ALPHA.items():
        assert _cell(table, "alpha", gamma=gamma).value == alpha
        finished = [ap for ap in GAMMA_ALPHA_AP[(gamma, alpha)] if ap is not None]
        assert _cell(table, "AP", gamma=gamma).value == pct(statistics.fmean(finished))
    assert _row(table, gamma=2.0).best  # 32.0 mean beats (2, .5)'s single 34.0 seed
    assert _cell(table, "AP", gamma=5.0).text == "failed"
    assert _cell(table, "AP", gamma=0.2).text == MISSING  # paper-only gamma
    assert _cell(table, "paper_alpha", gamma=0.5).value == 0.5


def test_mean_and_sample_std_over_seeds(analysis_store):
    table = _tables(analysis_store, "gamma_alpha")["table1b"]
    aps = [100 * ap for ap in GAMMA_ALPHA_AP[(2.0, 0.25)]]
    cell = _cell(table, "AP", gamma=2.0)
    std = round(statistics.stdev(aps), 1)
    assert (cell.value, cell.std, cell.n) == (round(statistics.fmean(aps), 1), std, 2)
    assert cell.text == f"{cell.value:.1f} ± {std:.1f}"
    assert table.show_n and _row(table, gamma=2.0).n == 2


def test_gamma_alpha_grid_marks_missing_failed_and_best_alpha(analysis_store):
    grid = _tables(analysis_store, "gamma_alpha")["table1b_grid"]
    assert [c.key for c in grid.columns] == ["gamma", "alpha=0.25", "alpha=0.5", "alpha=0.75"]
    assert _cell(grid, "alpha=0.75", gamma=0.5).text == MISSING
    assert _cell(grid, "alpha=0.25", gamma=5.0).text == "failed"
    partial = _cell(grid, "alpha=0.5", gamma=0.0)  # one seed failed: the other is shown
    assert partial.value == pct(0.262) and partial.n == 1 and _row(grid, gamma=0.0).status == "partial"
    for gamma, alpha in BEST_ALPHA.items():
        bold = [c.key for c, cell in zip(grid.columns, _row(grid, gamma=gamma).cells) if cell.bold]
        assert f"alpha={alpha:g}" in bold
    assert _cell(grid, "alpha=0.25", gamma=2.0).text.endswith("(n=2)")


def test_anchor_rows_by_scales_and_number_of_ratios(analysis_store):
    table = _tables(analysis_store, "anchors")["table1c"]
    assert _cell(table, "AP", num_scales=3, num_aspects=3).value == 34.0
    assert _cell(table, "paper_AP", num_scales=3, num_aspects=3).value == 34.0
    assert _cell(table, "AP", num_scales=4, num_aspects=3).text == MISSING
    assert _row(table, num_scales=3, num_aspects=3).best


def test_ohem_methods_from_loss_name_and_max_pos_fraction(analysis_store):
    table = _tables(analysis_store, "ohem")["table1d"]
    methods = [row.cells[0].text for row in table.rows if row.status == "finished"]
    assert methods == ["OHEM", "OHEM 1:3", "FL"]
    fl = next(row for row in table.rows if row.cells[0].text == "FL")
    assert fl.best and fl.cells[1].text == MISSING and fl.cells[3].value == 33.0
    assert fl.cells[[c.key for c in table.columns].index("paper_AP")].value == 36.0


def test_speed_table_shows_ours_and_paper_rows_apart(analysis_store):
    table = _tables(analysis_store, "speed_accuracy")["table1e"]
    assert _cell(table, "ms_per_image", depth=34, scale=128).value == 19.0
    assert _cell(table, "paper_AP", depth=34, scale=128).text == MISSING
    assert _cell(table, "AP", depth=50, scale=600).text == MISSING
    assert _cell(table, "paper_time_ms", depth=50, scale=600).value == 98
    assert [c.key for c in table.columns][2:9] == ["AP", "AP50", "AP75", "APS", "APM", "APL", "ms_per_image"]


def test_fl_star_rows_match_the_appendix(analysis_store):
    table = _tables(analysis_store, "fl_star")["table3"]
    index = [c.key for c in table.columns].index("paper_AP")
    shown = {tuple(c.text for c in row.cells[:3]): row.cells[index].value for row in table.rows}
    assert shown[("CE", MISSING, MISSING)] == 31.1 and shown[("FL*", "2", "1")] == 33.8


def test_search_trials_sorted_by_ap_failed_last(analysis_store):
    table = _tables(analysis_store, "search")["trials"]
    aps = [c.value for c in table.column_cells("AP")]
    finished = sorted((pct(ap) for ap in SEARCH_AP if ap is not None), reverse=True)
    assert aps[:-1] == finished and table.column_cells("AP")[-1].text == "failed"
    assert table.rows[0].best
    assert table.column_cells("loss.gamma")[0].text == "0.6235"  # 4 significant digits
    assert [c.text for c in table.column_cells("early_stopped")] == ["no", "yes", "no", "no"]  # ASHA


def test_paper_numbers_are_the_packaged_copy():
    paper = load_paper()
    assert paper["table1b_gamma_alpha"].find({"gamma": 2.0})["AP"] == 34.0
    assert paper["table1d_ohem"].find({"method": "FL", "batch_size": None})["AP"] == 36.0


def test_unknown_sweep_name_gets_a_trials_table(analysis_store, tmp_path):
    from tests.analysis_fixtures import log_fake_sweep

    uri = analysis_store.uri
    log_fake_sweep(uri, "custom_beta", [FakeTrial({"loss.box_beta": b}, 0, fake_metrics(0.2 + b))
                                        for b in (0.0, 0.11)])
    (table,) = build_tables(load_sweep(open_client(uri), "custom_beta"))
    assert [c.key for c in table.columns][:2] == ["run", "loss.box_beta"]
    assert [c.value for c in table.column_cells("loss.box_beta")] == [0.11, 0.0]


def test_profile_filter_of_a_sweep_name(analysis_store):
    client = open_client(analysis_store.uri)
    assert load_sweep(client, "gamma_alpha", profile="cpu").run_id == analysis_store.parents["gamma_alpha"]
    with pytest.raises(AnalysisError, match="no runs of sweep 'gamma_alpha' with profile 'smoke'"):
        load_sweep(client, "gamma_alpha", profile="smoke")


# --- the declaration, not the name, picks the table ------------------------------------


def test_a_renamed_copy_of_a_sweep_gets_table_1b_with_the_papers_numbers(analysis_store):
    from tests.analysis_fixtures import log_fake_sweep, standard_trials, table_block

    log_fake_sweep(analysis_store.uri, "my_gamma_copy", standard_trials()["gamma_alpha"],
                   table=table_block("gamma_alpha"))
    sweep = load_sweep(open_client(analysis_store.uri), "my_gamma_copy")
    assert sweep.name == "my_gamma_copy" and sweep.table.paper == "table1b_gamma_alpha"
    tables = {t.name: t for t in build_tables(sweep)}
    assert sorted(tables) == ["table1b", "table1b_grid"]
    table = tables["table1b"]
    for row in load_paper()["table1b_gamma_alpha"].rows:
        assert _cell(table, "paper_AP", gamma=row["gamma"]).value == row["AP"]
        assert _cell(table, "paper_alpha", gamma=row["gamma"]).value == row["alpha"]
    for gamma, alpha in BEST_ALPHA.items():
        assert _cell(table, "alpha", gamma=gamma).value == alpha
    assert _row(table, gamma=2.0).best


def test_a_parent_with_a_bad_declaration_is_a_one_line_error(analysis_store):
    from tests.analysis_fixtures import log_fake_sweep

    log_fake_sweep(analysis_store.uri, "bad_table", [FakeTrial({"loss.gamma": 1.0}, 0, fake_metrics(0.2))],
                   table={"paper": "table1b_gamma_alpha", "rows": {"gamma": {"lenn": "loss.gamma"}}})
    with pytest.raises(AnalysisError, match=r"parent run \w+: sweep.table.rows.gamma: unknown derivation 'lenn'") as error:
        load_sweep(open_client(analysis_store.uri), "bad_table")
    assert "\n" not in str(error.value)


def test_a_users_own_keyed_table_without_a_paper(analysis_store, tmp_path):
    from tests.analysis_fixtures import log_fake_sweep

    from analysis.plots import make_plots

    table = {"name": "box_beta", "rows": {"beta": "loss.box_beta"}, "plot": {"kind": "curve", "x": "beta"}}
    log_fake_sweep(analysis_store.uri, "my_box_beta", [FakeTrial({"loss.box_beta": b}, s, fake_metrics(0.2 + b + s / 100))
                                                       for b in (0.0, 0.11) for s in (0, 1)], table=table)
    sweep = load_sweep(open_client(analysis_store.uri), "my_box_beta")
    (built,) = build_tables(sweep)
    assert built.name == "box_beta" and [c.key for c in built.columns] == ["beta", "AP", "AP50", "AP75"]
    assert _cell(built, "AP", beta=0.11).value == pct(0.315) and _row(built, beta=0.11).best
    (plot,) = make_plots(sweep, tmp_path)
    assert plot.name == "ap_vs_beta" and plot.labels() == ["ours"] and plot.series[0].x == [0.0, 0.11]


def test_speed_note_says_how_ms_was_timed_and_the_spread_between_passes():
    def trial(i: int, quiet: bool, spread, status: str = "FINISHED") -> TrialRecord:
        return TrialRecord(run_id=f"r{i}", cell=f"c{i}", overrides={}, seed=0, status=status, error="",
                           metrics={"ms_per_image": 10.0}, quiet_timing=quiet, speed_spread=spread)

    timed = [trial(0, True, 0.01), trial(1, True, 0.04), trial(2, True, 0.02), trial(3, False, None),
             trial(4, True, 0.5, status="FAILED")]  # a failed trial's figure does not count
    assert speed_note(timed) == ("ms: median of the quiet timing passes, one model at a time after the trials "
                                 "(3 of 4 models); spread between passes, (slowest - fastest) / median: "
                                 "median 2.0%, max 4.0%")
    assert speed_note([trial(0, False, None)]).startswith("ms: timed inside each trial while other trials")
    assert speed_note([trial(0, True, 0.01, status="FAILED")]) is None
