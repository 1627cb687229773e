"""analysis/: renderers (CSV/LaTeX parse back), plots (valid PNG/SVG, series) and the report."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import matplotlib.image
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from analysis.errors import AnalysisError
from analysis.plots import make_plots
from analysis.render import default_console, to_csv, to_latex, to_markdown
from analysis.report import build_report, main
from analysis.runs import load_sweep, open_client
from analysis.tables import Table
from analysis.tables import build_tables
from tests.analysis_fixtures import BEST_ALPHA, NAN_ERROR, SPEED, analysis_store  # noqa: F401

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sweep(store, name):
    return load_sweep(open_client(store.uri), name)


def _tables(store, name) -> dict[str, Table]:
    return {t.name: t for t in build_tables(_sweep(store, name))}


def _latex_rows(text: str) -> list[list[str]]:
    """Body cells of a booktabs tabular, \\textbf and $\\pm$ undone."""
    body = text.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = []
    for line in body.strip().splitlines():
        cells = [c.strip() for c in line.rstrip().removesuffix(r"\\").split(" & ")]
        rows.append([re.sub(r"\\textbf\{(.*)\}", r"\1", c).replace(r"$\pm$", "±") for c in cells])
    return rows


def _number(text: str) -> float | None:
    match = re.match(r"^-?\d+(\.\d+)?", text)
    return float(match.group(0)) if match else None


# --- render.py -----------------------------------------------------------------


@pytest.mark.parametrize("sweep, table_name", [("gamma_alpha", "table1b"), ("gamma_alpha", "table1b_grid"),
                                               ("alpha_ce", "table1a"), ("speed_accuracy", "table1e")])
def test_csv_and_latex_parse_back_to_the_table_numbers(analysis_store, sweep, table_name):
    table = _tables(analysis_store, sweep)[table_name]
    records = list(csv.DictReader(io.StringIO(to_csv(table))))
    latex = _latex_rows(to_latex(table))
    shift = 1 if table.show_n else 0  # LaTeX shows an n column after the keys
    n_keys = sum(c.source == "key" for c in table.columns)
    assert len(records) == len(latex) == len(table.rows)
    for row, record, tex in zip(table.rows, records, latex):
        tex = tex[:n_keys] + tex[n_keys + shift:]
        for column, cell, tex_cell in zip(table.columns, row.cells, tex):
            assert _number(record[column.key]) == cell.value
            assert _number(tex_cell) == _number(record[column.key])
            if cell.std is not None:
                assert float(record[f"{column.key}_std"]) == cell.std == float(tex_cell.split("± ")[1].split()[0])
        assert record["best"] == str(int(row.best)) and record["status"] == row.status


def test_csv_has_the_error_of_a_failed_cell(analysis_store):
    table = _tables(analysis_store, "alpha_ce")["table1a"]
    records = {r["alpha"]: r for r in csv.DictReader(io.StringIO(to_csv(table)))}
    assert records["0.1"]["AP"] == "failed" and records["0.1"]["error"] == NAN_ERROR
    assert records["0.99"]["AP"] == "" and records["0.99"]["status"] == "missing"
    assert records["0.75"]["best"] == "1" and records["0.5"]["best"] == "0"


def test_markdown_bolds_the_best_row_and_marks_failed_and_missing(analysis_store):
    text = to_markdown(_tables(analysis_store, "alpha_ce")["table1a"])
    lines = {line.split(" | ")[0].strip("| *"): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["0.75"].startswith("| **0.75** | **31.2** |")
    assert "| failed |" in lines["0.1"] and "| — |" in lines["0.99"]
    assert text.startswith("### Table 1a") and "nan" in text.split("\n\n")[-1]


def test_latex_is_a_booktabs_tabular_with_groups(analysis_store):
    text = to_latex(_tables(analysis_store, "gamma_alpha")["table1b"])
    for part in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule",
                 r"\multicolumn{4}{c}{ours}", r"\multicolumn{4}{c}{paper}", r"\textbf{", r"$\gamma$"):
        assert part in text
    assert "±" not in text and "—" not in text  # pure ASCII for pdflatex
    assert text.isascii()


# --- plots.py ------------------------------------------------------------------


def _check_files(plot):
    png, svg = plot.paths
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 0
    assert matplotlib.image.imread(png).ndim == 3
    assert svg.suffix == ".svg" and "<svg" in svg.read_text()[:1000]


@pytest.mark.parametrize("sweep, name, labels", [
    ("gamma_alpha", "ap_vs_gamma", ["ours (best α per γ)", "paper (Table 1b)"]),
    ("alpha_ce", "ap_vs_alpha", ["ours (CE, γ = 0)", "paper (Table 1a)"]),
    ("anchors", "anchors_ap", ["ours, 1 aspect ratio", "paper, 1 aspect ratio",
                               "ours, 3 aspect ratios", "paper, 3 aspect ratios"]),
    ("speed_accuracy", "figure2", ["ours ResNet-18", "ours ResNet-34", "RetinaNet-50 (paper Table 1e)",
                                   "RetinaNet-101 (paper Table 1e)", "other detectors (paper Figure 2)"]),
])
def test_plots_are_valid_images_with_the_expected_series(analysis_store, tmp_path, sweep, name, labels):
    (plot,) = make_plots(_sweep(analysis_store, sweep), tmp_path)
    assert plot.name == name and plot.labels() == labels
    _check_files(plot)


def test_gamma_plot_points_are_best_alpha_means(analysis_store, tmp_path):
    (plot,) = make_plots(_sweep(analysis_store, "gamma_alpha"), tmp_path)
    ours = plot.series[0]
    assert ours.x == sorted(BEST_ALPHA)  # gamma 5 failed: no point
    assert ours.point_labels == [f"α={BEST_ALPHA[g]:g}" for g in ours.x]
    assert ours.y[-1] + ours.offset == pytest.approx(32.0)  # drawn relative to its own value at γ = 2


def test_ours_and_the_papers_curve_each_relative_to_its_own_value_in_one_cell(analysis_store, tmp_path):
    """Both shapes on one axis in AP points, whatever the levels: 0 at the paper's best cell both have."""
    (plot,) = make_plots(_sweep(analysis_store, "gamma_alpha"), tmp_path)
    ours, paper = plot.series
    assert (ours.offset, paper.offset) == (pytest.approx(32.0), 34.0)  # γ = 2: the paper's best
    assert ours.y[ours.x.index(2.0)] == 0.0 and paper.y[paper.x.index(2.0)] == 0.0
    assert paper.y[0] == pytest.approx(31.1 - 34.0)  # CE, γ = 0, against γ = 2: Table 1b's -2.9
    assert ours.y[0] == pytest.approx(29.9 - 32.0)  # (30.1 + 29.7) / 2 at α = .75, less our γ = 2
    assert ours.yerr[-1] > 0  # the seeds' spread is kept


def test_a_declared_baseline_cell_and_bars_relative_to_it(analysis_store, tmp_path):
    from tests.analysis_fixtures import ANCHORS_AP, log_fake_sweep, standard_trials, table_block

    table = table_block("anchors")
    table["plot"] = {**table["plot"], "baseline": {"num_scales": 1, "num_aspects": 1}}
    log_fake_sweep(analysis_store.uri, "anchors_from_one", standard_trials()["anchors"], table=table)
    (plot,) = make_plots(_sweep(analysis_store, "anchors_from_one"), tmp_path)
    by_label = {s.label: s for s in plot.series}
    ours, paper = by_label["ours, 3 aspect ratios"], by_label["paper, 3 aspect ratios"]
    assert ours.y == pytest.approx([100 * (ANCHORS_AP[(s, (0.5, 1.0, 2.0))] - ANCHORS_AP[(1, (1.0,))])
                                    for s in ours.x])  # gains over one anchor, in points
    assert paper.y == pytest.approx([32.4 - 30.3, 34.2 - 30.3, 34.0 - 30.3, 33.8 - 30.3])
    _check_files(plot)


def test_without_the_papers_numbers_the_axis_is_absolute(analysis_store, tmp_path):
    from tests.analysis_fixtures import log_fake_sweep, standard_trials

    table = {"name": "gammas", "rows": {"gamma": "loss.gamma"}, "plot": {"kind": "curve", "x": "gamma"}}
    trials = [t for t in standard_trials()["gamma_alpha"] if t.overrides["loss.alpha"] == 0.25]
    log_fake_sweep(analysis_store.uri, "gammas_alone", trials, table=table)
    (plot,) = make_plots(_sweep(analysis_store, "gammas_alone"), tmp_path)
    assert plot.series[0].offset == 0.0 and plot.series[0].y[0] == pytest.approx(20.3)  # γ 0: (20.1 + 20.5) / 2


def test_a_line_plot_labels_a_point_only_where_its_label_changes():
    from analysis.plots import changes_only

    assert changes_only(["α=0.9", "α=0.9", "α=0.25", "α=0.25", "α=0.9"]) == ["α=0.9", "", "α=0.25", "", "α=0.9"]
    assert changes_only([]) == []


def test_figure2_keeps_our_times_apart_from_the_papers(analysis_store, tmp_path):
    (plot,) = make_plots(_sweep(analysis_store, "speed_accuracy"), tmp_path)
    resnet34 = next(s for s in plot.series if s.label == "ours ResNet-34")
    assert resnet34.x == [SPEED[(34, 96)][1], SPEED[(34, 128)][1]] and resnet34.panel == "ours"
    assert {s.panel for s in plot.series if "paper" in s.label} == {"paper"}


# --- report.py -----------------------------------------------------------------


def test_build_report_writes_files_prints_and_logs_artifacts(analysis_store, tmp_path):
    console = Console(file=io.StringIO(), width=200)
    out = build_report("gamma_alpha", tracking_uri=analysis_store.uri, reports_dir=tmp_path, console=console)
    assert out == tmp_path / "gamma_alpha"
    names = sorted(p.name for p in out.iterdir())
    expected = [f"{stem}.{ext}" for stem in ("table1b", "table1b_grid") for ext in ("md", "csv", "tex")]
    assert names == sorted(expected + ["ap_vs_gamma.png", "ap_vs_gamma.svg", "index.html"])
    printed = console.file.getvalue()
    assert "Table 1b" in printed and "paper AP" in printed
    parent = analysis_store.parents["gamma_alpha"]
    logged = {Path(f.path).name for f in MlflowClient(analysis_store.uri).list_artifacts(parent, "reports")}
    assert logged == set(names)


def test_build_report_from_a_parent_run_id_without_logging(analysis_store, tmp_path):
    parent = analysis_store.parents["ohem"]
    out = build_report(parent, tracking_uri=analysis_store.uri, reports_dir=tmp_path,
                       log_artifacts=False, console=Console(file=io.StringIO()))
    assert (out / "table1d.csv").exists()
    assert MlflowClient(analysis_store.uri).list_artifacts(parent, "reports") == []


def test_build_report_unknown_sweep_raises(analysis_store, tmp_path):
    with pytest.raises(AnalysisError):
        build_report("nope", tracking_uri=analysis_store.uri, reports_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_user_error_is_one_line_and_exit_2(analysis_store, tmp_path, capsys):
    code = main(["nope", "--tracking-uri", analysis_store.uri, "--reports-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no runs of sweep 'nope'") and err.count("\n") == 1
    assert main(["gamma_alpha", "--tracking-uri", "http://localhost:1"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read MLflow store http://localhost:1")


def test_cli_writes_the_report(analysis_store, tmp_path, capsys):
    code = main(["fl_star", "--tracking-uri", analysis_store.uri, "--reports-dir", str(tmp_path),
                 "--no-log-artifacts"])
    assert code == 0 and (tmp_path / "fl_star" / "table3.tex").exists()
    assert "report written to" in capsys.readouterr().out


def test_the_findings_block_is_printed_and_written_into_the_main_tables_files(analysis_store, tmp_path):
    from analysis.report import create_report

    console = Console(file=io.StringIO(), width=200)
    report = create_report("gamma_alpha", tracking_uri=analysis_store.uri, reports_dir=tmp_path,
                           console=console, log_artifacts=False)
    assert [f.id for f in report.findings] == ["fl_gamma2_beats_best_ce", "gamma5_below_gamma2",
                                               "best_alpha_falls_with_gamma"]
    assert [t.name for t in report.tables] == ["table1b", "table1b_grid"]
    assert "Findings of the paper" in console.file.getvalue() and "inconclusive" in console.file.getvalue()
    out = report.out_dir
    markdown = (out / "table1b.md").read_text()
    assert markdown.startswith("### Table 1b") and "### Findings" in markdown
    assert "### Findings" not in (out / "table1b_grid.md").read_text()
    table_part, findings_part = (out / "table1b.csv").read_text().split("\n\n")
    assert len(list(csv.DictReader(io.StringIO(table_part)))) == len(report.tables[0].rows)
    records = list(csv.DictReader(io.StringIO(findings_part)))
    assert [r["finding"] for r in records] == [f.id for f in report.findings]
    assert records[0]["paper"] == "+2.9" and records[0]["verdict"] == "inconclusive"
    latex = (out / "table1b.tex").read_text()
    assert latex.count(r"\begin{tabular}") == 2 and latex.isascii()


def test_a_sweep_copy_under_another_name_gets_the_declared_report(analysis_store, tmp_path):
    from tests.analysis_fixtures import log_fake_sweep, standard_trials, table_block

    log_fake_sweep(analysis_store.uri, "my_anchor_copy", standard_trials()["anchors"], table=table_block("anchors"))
    out = build_report("my_anchor_copy", tracking_uri=analysis_store.uri, reports_dir=tmp_path,
                       console=Console(file=io.StringIO()), log_artifacts=False)
    assert out == tmp_path / "my_anchor_copy"
    assert sorted(p.name for p in out.iterdir()) == ["anchors_ap.png", "anchors_ap.svg", "index.html",
                                                     "table1c.csv", "table1c.md", "table1c.tex"]


# --- how to reproduce a report ---------------------------------------------------


def test_every_report_names_the_command_commit_and_parent_run_that_reproduce_it(tmp_path):
    """Terminal end, Markdown files, the parent's description and the page: the command with its
    overrides (as quoted for a shell), the commit and whether the tree was dirty, the parent run."""
    from analysis import layout
    from analysis.report import create_report
    from tests.analysis_fixtures import log_fake_sweep, standard_trials

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = log_fake_sweep(uri, "gamma_alpha", standard_trials()["gamma_alpha"], artifact_location=str(tmp_path / "a"))
    command = "python -m sweeps.run +sweep=gamma_alpha sweep.seeds=3 'sweep.trimmed.cpu={loss.gamma:[0.0,2.0]}'"
    client = MlflowClient(uri)
    for tag, value in ((layout.COMMAND, command), (layout.ENV_GIT_COMMIT, "a" * 40), (layout.ENV_GIT_DIRTY, "true")):
        client.set_tag(parent, tag, value)
    console = Console(file=io.StringIO(), width=200)
    report = create_report(parent, tracking_uri=uri, reports_dir=tmp_path / "reports", console=console)
    terminal = console.file.getvalue().rstrip().splitlines()
    assert terminal[-4:] == [f"Reproduce: {command}",  # the end of what the terminal shows
                             f"  code: git checkout {'a' * 40} (uncommitted changes: the commit alone is not "
                             "the code that ran)",
                             f"  MLflow parent run: {parent}",
                             f"  this report again: python -m analysis.report {parent}"]
    for name in ("table1b.md", "table1b_grid.md"):
        markdown = (report.out_dir / name).read_text(encoding="utf-8")
        assert f"- command: `{command}`" in markdown and f"`git checkout {'a' * 40}`" in markdown
        assert f"- MLflow parent run: `{parent}`" in markdown
    assert f"`{command}`" in client.get_run(parent).data.tags[layout.NOTE]
    page = (report.out_dir / "index.html").read_text(encoding="utf-8")
    assert "Reproduce: <code>python -m sweeps.run +sweep=gamma_alpha sweep.seeds=3 " \
           "&#x27;sweep.trimmed.cpu={loss.gamma:[0.0,2.0]}&#x27;</code>" in page
    assert f"<code>git checkout {'a' * 40}</code> (uncommitted changes" in page and parent in page


def test_the_report_saves_the_sweeps_view_of_its_trials_in_mlflow(analysis_store, tmp_path):
    """An experiment tag the MLflow UI lists under Views: this sweep's trials, AP and the swept params as columns."""
    import json

    from analysis import layout

    parent = analysis_store.parents["anchors"]
    build_report(parent, tracking_uri=analysis_store.uri, reports_dir=tmp_path, console=Console(file=io.StringIO()))
    client = MlflowClient(analysis_store.uri)
    tags = client.get_experiment(client.get_run(parent).info.experiment_id).tags
    state = json.loads(json.loads(tags[f"{layout.SAVED_VIEW_PREFIX}sweep-{parent}"])["state"])
    assert state["searchFilter"] == layout.children_filter(parent)
    assert state["selectedColumns"][-2:] == ["params.`model.anchors.aspect_ratios`",
                                             "params.`model.anchors.scales_per_octave`"]  # what the sweep varies


def test_a_parent_from_before_the_command_was_recorded_gets_its_implied_command(analysis_store, tmp_path):
    from analysis.provenance import Reproduction

    reproduction = Reproduction.of(_sweep(analysis_store, "anchors"))
    assert reproduction.shell_command == "python -m sweeps.run +sweep=anchors profile=cpu"
    assert "rebuilt from the sweep's name and profile" in reproduction.command_note()
    assert reproduction.checkout == f"git checkout {'0' * 40}"  # the parent's git.commit tag, the only one there
    assert reproduction.tree_text() == "not known whether the tree was clean"


def test_output_to_a_file_gets_a_wide_console_quiet_when_asked(capsys):
    # pytest captures stdout, so this is the case of `python -m sweeps.run ... > sweep.log`:
    # rich's 80 columns squeezed Table 1e's 17 columns to "…" in every cell.
    console = default_console()
    assert not console.is_terminal and console.width == 200 and not console.quiet
    assert default_console(quiet=True).quiet
    with console.capture() as captured:
        console.print(" | ".join(f"column {k}" for k in range(17)))
    assert "column 16" in captured.get()
