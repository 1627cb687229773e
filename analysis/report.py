"""Build a sweep's report: tables, the paper's findings, plots -> reports/<sweep>/, the terminal, MLflow.

    python -m analysis.report gamma_alpha [--tracking-uri URI] [--reports-dir DIR]
                                          [--experiment NAME] [--profile NAME] [--no-log-artifacts]

The argument is a sweep name (its latest parent run is used) or a parent
run id. sweeps/run.py calls `build_report` at the end of a sweep.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mlflow.tracking import MlflowClient
from rich.console import Console

from analysis import layout
from analysis.errors import AnalysisError
from analysis.findings import sweep_findings
from analysis.html import HtmlInputs, Report, write_html
from analysis.layout import EXPERIMENT, REPORT_DIR, REPORT_PAGE
from analysis.plots import make_plots
from analysis.provenance import Reproduction
from analysis.records import split_overrides, status_summary
from analysis.render import default_console, print_table, to_markdown, write_table
from analysis.render_findings import findings_blocks, findings_markdown, print_findings
from analysis.runs import load_sweep, open_client, store_errors
from analysis.sweep import SweepRecord
from analysis.tables import build_tables

def build_report(sweep_or_run_id: str, **options: Any) -> Path:
    """`create_report(sweep_or_run_id, **options)`, returning the report's folder,
    `<reports_dir>/<sweep name>/` (what the command line and sweeps/ need)."""
    return create_report(sweep_or_run_id, **options).out_dir


def create_report(
    sweep_or_run_id: str,
    *,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    reports_dir: str | Path = "reports",
    log_artifacts: bool = True,
    console: Console | None = None,
    profile: str | None = None,
) -> Report:
    """Write the tables (.md/.csv/.tex, the Findings block in the first table's files),
    plots (.png/.svg) and one self-contained page of it all (index.html) of a
    sweep into `<reports_dir>/<sweep name>/`; returns the Report (tables,
    findings, plots, files).

    `sweep_or_run_id`: a sweep name (its latest parent run in `experiment`,
    of `profile` if given) or a parent run id. The tables and findings are
    printed to `console` (default: the terminal), and with `log_artifacts`
    the files are logged to the parent run under `reports/`, the tables and
    findings become its description (Markdown) in the MLflow UI, and the
    experiment gets the sweep's saved view of its trials (`save_runs_view`).
    Raises AnalysisError for a user error (unknown sweep/run, unreachable store).
    """
    client = open_client(tracking_uri)
    sweep = load_sweep(client, sweep_or_run_id, experiment, profile)
    out_dir = Path(reports_dir) / (sweep.name or sweep.run_id)  # the one place the sweep's name is appended
    console = console or default_console()
    _header(sweep, console)
    report = Report(sweep, out_dir, tables=build_tables(sweep), findings=sweep_findings(sweep))
    reproduction = Reproduction.of(sweep)
    for i, table in enumerate(report.tables):
        print_table(table, console)
        after = dict(findings_blocks(report.findings)) if i == 0 else {}  # the findings test the main table
        after[".md"] = "\n".join(block for block in (after.get(".md"), reproduction.markdown()) if block)
        report.paths += write_table(table, out_dir, after=after)
    print_findings(report.findings, console)
    for line in reproduction.lines():
        console.print(line, highlight=False, soft_wrap=True)
    report.plots = make_plots(sweep, out_dir)
    report.paths += [path for plot in report.plots for path in plot.paths]
    # the saved view before the page, which links to it
    saved = log_artifacts and save_runs_view(client, sweep)
    report.paths.append(write_html(report, HtmlInputs(client.tracking_uri, sweep.experiment_id, saved)))
    if log_artifacts:
        with store_errors(client.tracking_uri, "log reports to"):
            for path in report.paths:
                client.log_artifact(sweep.run_id, str(path), artifact_path=REPORT_DIR)
            more = f"The whole report: artifact {REPORT_DIR}/{REPORT_PAGE} of this run."
            client.set_tag(sweep.run_id, layout.NOTE, layout.note_text(note_markdown(report), more))
    return report


def save_runs_view(client: MlflowClient, sweep: SweepRecord) -> bool:
    """The sweep's saved view in the MLflow UI (its "Views" list, and the link the sweep prints):
    its trials, best AP first, with AP, AP50, AP75, ms/image and the swept parameters as columns.
    Returns True once written (the experiment tag `layout.runs_view` describes)."""
    name = f"{sweep.name or 'sweep'} ({sweep.profile or '?'}, parent {sweep.run_id[:8]}): trials by AP"
    key, value = layout.runs_view(name, sweep.run_id, split_overrides(sweep.trials)[1], int(time.time() * 1000))
    with store_errors(client.tracking_uri, "save the runs view in"):
        client.set_experiment_tag(sweep.experiment_id, key, value)
    return True


def note_markdown(report: Report) -> str:
    """The parent run's description in the MLflow UI: the counts, the tables and the findings."""
    sweep = report.sweep
    lines = [f"**Sweep {sweep.name}** (profile {sweep.profile or '?'}, {len(sweep.trials)} trials). "
             f"Report: `{report.out_dir / REPORT_PAGE}` (also this run's artifact `{REPORT_DIR}/{REPORT_PAGE}`).", ""]
    if report.findings:
        lines += [findings_markdown(report.findings)]
    lines += [to_markdown(table) for table in report.tables]
    lines += [Reproduction.of(sweep).markdown()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a user error prints `error: ...` and returns 2."""
    args = _parser().parse_args(argv)
    try:
        out_dir = build_report(args.sweep, tracking_uri=args.tracking_uri,
                               experiment=args.experiment, reports_dir=args.reports_dir,
                               log_artifacts=not args.no_log_artifacts, profile=args.profile)
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"report written to {out_dir}/")
    return 0


def _header(sweep: SweepRecord, console: Console) -> None:
    console.print(f"[bold]sweep {sweep.name}[/bold] (profile {sweep.profile or '?'}, "
                  f"parent run {sweep.run_id}): {len(sweep.trials)} trials: "
                  f"{status_summary(sweep.trials) or 'none yet'}",
                  highlight=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="sweep name (its latest run) or a parent run id")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--profile", default=None, help="with a sweep name: its latest run of this profile")
    parser.add_argument("--reports-dir", default="reports", help="folder for reports/<sweep>/")
    parser.add_argument("--no-log-artifacts", action="store_true",
                        help="do not log the files to the parent run (e.g. a read-only server)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
