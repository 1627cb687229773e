"""One self-contained HTML page per sweep: `reports/<sweep>/index.html`.

What a researcher opens first: the tables beside the paper's numbers, the
paper's findings with our verdicts, the plots, every trial's difference from
the base config with its numbers, the AP of each category per trial, and
links to the MLflow runs when the store is a server. Everything is inline
(CSS, plots as base64 PNG): the file opens offline, from a mail attachment
or an artifact store alike.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence
from urllib.parse import urlparse

from analysis.findings import FindingResult
from analysis.layout import REPORT_PAGE, SPEED_METRIC, format_value, run_page, runs_page, shown
from analysis.plots import Plot
from analysis.provenance import Reproduction
from analysis.records import TrialRecord, split_overrides, status_summary
from analysis.redact import redact
from analysis.render import displayed  # the columns as every renderer shows them (n after the keys)
from analysis.render_findings import COLUMNS as FINDING_COLUMNS, TITLE as FINDINGS_TITLE, design_line, finding_row
from analysis.rules import NOT_REPRODUCED, REPRODUCED
from analysis.sweep import SweepRecord
from analysis.tables import Table

TRIAL_METRICS = ("AP", "AP50", "AP75", SPEED_METRIC)
VERDICT_CLASS = {REPRODUCED: "good", NOT_REPRODUCED: "bad"}  # inconclusive: "unsure"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1180px;color:#1d2330;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #dde3ee;
padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}.meta{color:#5a6478;margin:0 0 12px}
table{border-collapse:collapse;margin:6px 0 10px}th,td{padding:4px 10px;border-bottom:1px solid #e4e8f0;
text-align:right;white-space:nowrap}th{background:#f3f5f9;font-weight:600}td.key,th.key{text-align:left}
th.paper,td.paper{background:#f7f3ea;color:#6b5522}tr.best td{font-weight:700}td.wrap{white-space:normal;
text-align:left}.good{color:#0f7a32;font-weight:600}.bad{color:#b3261e;font-weight:600}
.unsure{color:#9a6a00;font-weight:600}.note{color:#5a6478;font-size:13px}img.plot{max-width:min(100%,840px);
border:1px solid #e4e8f0;margin:6px 0}code{background:#f3f5f9;padding:1px 4px;border-radius:3px}
a{color:#1a56c4}.legend{font-size:12px;color:#5a6478}
.scroll{overflow-x:auto;max-width:100%}table.per-class{font-size:13px}table.per-class td,table.per-class th{
padding:3px 6px}table.per-class th.trial{white-space:normal;vertical-align:bottom;font-weight:500}
table.per-class tr>:first-child{position:sticky;left:0;background:#fff}table.per-class th:first-child{
background:#f3f5f9}
"""


@dataclass
class Report:
    """What a report holds: the sweep, its tables, the paper's findings tested, plots, files."""

    sweep: SweepRecord
    out_dir: Path
    tables: list[Table] = field(default_factory=list)
    findings: list[FindingResult] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


@dataclass
class HtmlInputs:
    """Where the runs are, for the page's links (a browser opens them only on a server)."""

    tracking_uri: str = ""
    experiment_id: str = ""
    saved_view: bool = False  # the experiment holds the sweep's saved view (layout.runs_view): link to it


def write_html(report: Report, inputs: HtmlInputs) -> Path:
    """Write `<report.out_dir>/index.html`; returns its path."""
    report.out_dir.mkdir(parents=True, exist_ok=True)
    path = report.out_dir / REPORT_PAGE
    path.write_text(render_page(report, inputs), encoding="utf-8")
    return path


def render_page(report: Report, inputs: HtmlInputs) -> str:
    """The whole page as one string."""
    sweep = report.sweep
    links = RunLinks(inputs.tracking_uri, inputs.experiment_id, sweep.run_id, inputs.saved_view)
    parts = [f"<h1>Sweep {_e(sweep.name)}</h1>", _meta(report, links), reproduce_html(Reproduction.of(sweep))]
    if report.findings:
        parts += [f"<h2>{FINDINGS_TITLE}</h2>", findings_html(report.findings)]
    for table in report.tables:
        parts += [table_html(table)]
    if report.plots:
        parts += ["<h2>Plots</h2>"] + [_image(p) for plot in report.plots for p in plot.paths if p.suffix == ".png"]
    parts += ["<h2>Trials: what each changed, and what it got</h2>", trials_html(sweep.trials, links)]
    parts += ["<h2>AP per category</h2>", per_class_html(sweep.trials, {t.run_id: t.per_class for t in sweep.trials})]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(sweep.name)}: sweep report</title><style>{STYLE}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


# -- parts ----------------------------------------------------------------------------
def _meta(report: Report, links: RunLinks) -> str:
    sweep = report.sweep
    summary = status_summary(sweep.trials) or "no trials yet"
    run = links.anchor(sweep.run_id, sweep.run_id)
    page = f' · <a href="{_e(links.page)}">the trials of this sweep in MLflow, best AP first</a>' if links.page else ""
    return (f'<p class="meta">profile <b>{_e(sweep.profile or "?")}</b> · {_e(sweep.kind)} · '
            f"{len(sweep.trials)} trials ({_e(summary)}) · parent run {run}{page}</p>")


def reproduce_html(reproduction: Reproduction) -> str:
    """Under the title: the command that reproduces the sweep, the code it ran, the parent run."""
    rebuilt = reproduction.command_note().strip()
    note = f' <span class="note">{_e(rebuilt)}</span>' if rebuilt else ""
    run = _e(reproduction.parent_run_id)
    return (f'<p class="meta">Reproduce: <code>{_e(reproduction.shell_command)}</code>{note}<br>'
            f"code: {reproduction.code_text(lambda text: f'<code>{_e(text)}</code>')}<br>"
            f"this page again: <code>python -m analysis.report {run}</code> (the MLflow parent run)</p>")


def findings_html(results: Sequence[FindingResult]) -> str:
    """The findings table of every format (analysis/render_findings.py), the verdict coloured."""
    rows = [_row(FINDING_COLUMNS, header=True, keys=(0, 7, 8, 9))]
    verdict_at = FINDING_COLUMNS.index("verdict")
    for r in results:
        cells = [_e(text) for text in finding_row(r)]
        cells[verdict_at] = f'<span class="{VERDICT_CLASS.get(r.verdict, "unsure")}">{_e(r.verdict)}</span>'
        rows.append(_row(cells, keys=(0, 7, 8, 9), wrap=(0, 8, 9)))
    return _table(rows) + f'<p class="note">{_e(design_line(results))}</p>'


def table_html(table: Table) -> str:
    """A report table: ours beside the paper's columns (shaded), the best row bold, the notes below."""
    columns, rows = displayed(table)
    head = "".join(f'<th class="{_column_class(c.source)}">{_e(c.header)}</th>' for c in columns)
    body = []
    for row, cells in zip(table.rows, rows):
        tds = "".join(f'<td class="{_column_class(c.source)}">{_e(cell.text)}</td>' for c, cell in zip(columns, cells))
        body.append(f'<tr{" class=best" if row.best else ""}>{tds}</tr>')
    notes = "".join(f"<li>{_e(note)}</li>" for note in table.notes)
    return (f"<h2>{_e(table.title)}</h2><table><tr>{head}</tr>{''.join(body)}</table>"
            + (f'<ul class="note">{notes}</ul>' if notes else ""))


def trials_html(trials: Sequence[TrialRecord], links: RunLinks) -> str:
    """Each trial's overrides of the base config (those all trials share said once), status and numbers."""
    shared, varying = split_overrides(trials)
    lines = [f'<p class="note">Every trial overrides the base config with '
             f"{_e(_overrides_text(shared)) if shared else 'nothing in common'}; below, what differs. "
             f"AP numbers in percent.</p>"]
    rows = [_row(["run", "overrides", "status", *TRIAL_METRICS], header=True, keys=(0, 1, 2))]
    for trial in sorted(trials, key=lambda t: -t.metrics.get("AP", -1.0)):
        own = {k: v for k, v in trial.overrides.items() if k in varying}
        status = trial.status.lower() + (" (stopped early)" if trial.early_stopped else "")
        if trial.error:
            status += f": {trial.error}"
        cells = [links.anchor(trial.run_id, trial.run_id[:8]), _e(_overrides_text(own) + f", seed {trial.seed}"),
                 _e(status), *(_e(_metric_text(trial.metrics.get(m), m)) for m in TRIAL_METRICS)]
        rows.append(_row(cells, keys=(0, 1, 2), wrap=(2,)))
    return "".join(lines) + _table(rows)


def per_class_html(trials: Sequence[TrialRecord], per_class: Mapping[str, Mapping[str, float]]) -> str:
    """AP in percent per category and trial, shaded by value ("—": the category has no ground truth).

    The longer list runs down the page: with more categories than trials (20
    classes, 10 trials on the cpu profile) the categories are the rows and the
    trials the columns, else the other way round, so the table fits a 1280-px
    window; wider still (30 trials of 3 seeds), it scrolls in its own box,
    its first column kept in view."""
    shown = [t for t in sorted(trials, key=lambda t: -t.metrics.get("AP", -1.0)) if per_class.get(t.run_id)]
    categories = list(dict.fromkeys(c for t in shown for c in per_class[t.run_id]))
    if not categories:
        return '<p class="note">No per-category AP logged (runs from before it was recorded, or no finished trial).</p>'
    labels = trial_labels(trials, shown)
    if len(categories) > len(shown):
        head = '<tr><th class="key">category</th>' + "".join(
            f'<th class="trial">{"<br>".join(_e(part) for part in labels[t.run_id])}</th>' for t in shown) + "</tr>"
        rows = [_row([_e(c)] + [_shaded(per_class[t.run_id].get(c)) for t in shown], keys=(0,)) for c in categories]
    else:
        head = _row(["trial", *categories], header=True, keys=(0,))
        rows = [_row([_e(", ".join(labels[t.run_id]))] + [_shaded(per_class[t.run_id].get(c)) for c in categories],
                     keys=(0,)) for t in shown]
    return (f'<div class="scroll"><table class="per-class">{head}{"".join(rows)}</table></div>'
            '<p class="legend">AP over IoU .50:.95 per category; darker is better; trials best AP first.</p>')


def trial_labels(trials: Sequence[TrialRecord], shown: Sequence[TrialRecord]) -> dict[str, list[str]]:
    """Run id -> what tells the trial apart, one part per varying override (`gamma=0.5`: the
    last name of a dotted key where no other varying key shares it), and the seed where seeds vary."""
    _, varying = split_overrides(trials)
    leaves = [key.rsplit(".", 1)[-1] for key in varying]
    seeds = len({t.seed for t in trials}) > 1
    labels = {}
    for trial in shown:
        parts = [f"{key.rsplit('.', 1)[-1] if leaves.count(key.rsplit('.', 1)[-1]) == 1 else key}="
                 f"{format_value(value)}" for key, value in sorted(trial.overrides.items()) if key in varying]
        if seeds:
            parts.append(f"seed {trial.seed}")
        labels[trial.run_id] = parts or [trial.run_id[:8]]  # one trial alone: nothing varies
    return labels


# -- helpers --------------------------------------------------------------------------
class RunLinks:
    """Links to MLflow runs, only when the store is a server a browser can open."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_id: str = "", saved_view: bool = False) -> None:
        tracking_uri = redact(tracking_uri)  # a page is shared: user:***@, never the password
        self.server = tracking_uri if urlparse(tracking_uri).scheme in ("http", "https") and experiment_id else ""
        self.experiment_id = experiment_id
        self.page = runs_page(tracking_uri, experiment_id, parent_id, saved_view) if self.server and parent_id else ""

    def anchor(self, run_id: str, text: str) -> str:
        code = f"<code>{_e(text)}</code>"
        return f'<a href="{_e(run_page(self.server, self.experiment_id, run_id))}">{code}</a>' if self.server else code


def _overrides_text(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(overrides.items()))


def _metric_text(value: Optional[float], metric: str) -> str:
    value = shown(metric, value)
    if value is None:
        return "—"
    return f"{value:.1f} ms" if metric == SPEED_METRIC else f"{value:.1f}"


def _shaded(value: Optional[float]) -> str:
    """A percent cell with a green background as strong as the AP."""
    percent = shown("AP", value)
    if percent is None:
        return "—"
    alpha = 0.08 + 0.72 * min(max(percent / 100, 0.0), 1.0)
    return f'<span style="display:block;background:rgba(15,122,50,{alpha:.2f})">{percent:.1f}</span>'


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _column_class(source: str) -> str:
    return {"key": "key", "paper": "paper"}.get(source, "")


def _row(cells: Iterable[str], header: bool = False, keys: Sequence[int] = (), wrap: Sequence[int] = ()) -> str:
    """A table row: header cells are plain text (escaped here), body cells HTML (escaped by the caller)."""
    tag = "th" if header else "td"
    out = []
    for i, cell in enumerate(cells):
        classes = " ".join(c for c, on in (("key", i in keys), ("wrap", i in wrap)) if on)
        attribute = f' class="{classes}"' if classes else ""
        out.append(f"<{tag}{attribute}>{_e(cell) if header else cell}</{tag}>")
    return f"<tr>{''.join(out)}</tr>"


def _table(rows: Sequence[str]) -> str:
    return f"<table>{''.join(rows)}</table>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)

