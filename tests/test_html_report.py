"""reports/<sweep>/index.html: self-contained, and what a real browser shows of it.

The browser checks run headless Chromium (Debian's `chromium`; CI installs it,
see .ci/run): a screenshot that is not blank, and the DOM holding the table's
numbers. Without a chromium binary they skip, saying so.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image
from rich.console import Console

from analysis import layout
from analysis.html import STYLE, HtmlInputs, per_class_html, render_page
from analysis.layout import REPORT_PAGE as FILE_NAME
from analysis.report import create_report
from analysis.records import TrialRecord
from analysis.render_findings import COLUMNS, TITLE, finding_row, print_findings
from tests.analysis_fixtures import FakeTrial, _search_trials, fake_metrics, log_fake_sweep

CATEGORIES = ("red_square", "green_circle", "blue_triangle")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WINDOW = 1280  # px: the window a researcher reads the page in
CPU_CLASSES = tuple(f"class_{i:02d}_{name}" for i, name in enumerate(
    ["pedestrian", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "light",
     "hydrant", "stop_sign", "meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow"]))  # 20, as the cpu set
# Measures the per-category table where the browser laid it out, into an attribute --dump-dom shows.
MEASURE = """<script>(() => {
  const box = document.querySelector("table.per-class").parentElement;
  document.body.dataset.measure = JSON.stringify({page: document.documentElement.scrollWidth,
    window: window.innerWidth, right: box.getBoundingClientRect().right, inner: box.scrollWidth,
    shown: box.clientWidth, overflow: getComputedStyle(box).overflowX});
})();</script>"""


def _trials() -> list[FakeTrial]:
    """gamma 0 and 2 at alpha .25, AP 30.0 and 34.5; per-category AP logged as the sweep's callback does."""
    trials = []
    for gamma, ap in ((0.0, 0.300), (2.0, 0.345)):
        metrics = {**fake_metrics(ap), **{layout.per_class_metric(c): ap + 0.1 * i for i, c in enumerate(CATEGORIES)}}
        trials.append(FakeTrial({"loss.name": "focal", "loss.gamma": gamma, "loss.alpha": 0.25}, 0, metrics))
    return trials


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The gamma_alpha report of a logged fake sweep (no Ray, no training)."""
    root = tmp_path_factory.mktemp("html")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parent = log_fake_sweep(uri, "gamma_alpha", _trials(), artifact_location=str(root / "artifacts"))
    return create_report(parent, tracking_uri=uri, reports_dir=root / "reports", console=Console(quiet=True))


def test_the_page_holds_everything_inline(report):
    page = (report.out_dir / FILE_NAME).read_text(encoding="utf-8")
    assert report.out_dir / FILE_NAME in report.paths
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no network: nothing fetched from elsewhere"
    assert "<script" not in page and "@import" not in page
    assert 'src="data:image/png;base64,' in page  # the plot, inline
    assert "Table 1b: focal loss over gamma" in page and "34.5" in page and "31.1" in page  # ours and the paper's
    assert "inconclusive" in page or "reproduced" in page  # findings with verdicts
    assert "loss.alpha=0.25, loss.name=focal" in page  # what every trial shares, said once
    assert "loss.gamma=2.0, seed 0" in page  # each cell's difference from the base
    for category in CATEGORIES:
        assert category in page  # the per-category AP, read from the child runs' AP/* metrics
    assert "44.5" in page  # green_circle of the gamma=2 trial: 0.345 + 0.1


def test_the_parent_run_describes_the_sweep(report):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{report.out_dir.parents[1] / 'mlflow.db'}")
    note = client.get_run(report.sweep.run_id).data.tags[layout.NOTE]
    assert note.startswith("**Sweep gamma_alpha**") and "### Table 1b" in note and "**34.5**" in note
    assert "Findings of the paper" in note and len(note) <= layout.NOTE_CHARS


def test_run_links_only_for_a_server(report):
    served = render_page(report, HtmlInputs(tracking_uri="http://mlflow:5000", experiment_id="7"))
    trial = report.sweep.trials[0].run_id
    assert f'href="http://mlflow:5000/#/experiments/7/runs/{trial}"' in served
    assert f"searchFilter=tags.%60mlflow.parentRunId%60%20%3D%20%27{report.sweep.run_id}%27" in served  # this sweep's
    viewed = render_page(report, HtmlInputs(tracking_uri="http://mlflow:5000", experiment_id="7", saved_view=True))
    assert f"runs?viewStateShareKey=sweep-{report.sweep.run_id}&amp;workflowType=machine_learning" in viewed
    local = render_page(report, HtmlInputs(tracking_uri="sqlite:///x.db", experiment_id="7"))
    assert "href=" not in local


def test_a_search_gets_parallel_coordinates(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = log_fake_sweep(uri, "search", _search_trials(), artifact_location=str(tmp_path / "a"), kind="search")
    search = create_report(parent, tracking_uri=uri, reports_dir=tmp_path / "reports", console=Console(quiet=True))
    plot = search.plots[0]
    assert plot.name == "parallel_coordinates" and len(plot.series) == 3  # the finished trials, one line each
    assert len(plot.series[0].y) == 5  # α, γ, scales, ratios, then AP
    assert (search.out_dir / "parallel_coordinates.png").is_file()
    assert "parallel_coordinates" in (search.out_dir / FILE_NAME).read_text(encoding="utf-8")


# -- in a real browser ---------------------------------------------------------------
def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)}): apt-get install -y chromium")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium as root in a container needs --no-sandbox; no GPU here."""
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_browser_shows_the_report(report, tmp_path):
    page = (report.out_dir / FILE_NAME).resolve().as_uri()
    shot = tmp_path / "report.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", page)
    assert shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert image.size == (1280, 2000) and colours is not None and len(colours) > 200, "a blank page"
    top = image.crop((0, 0, 1280, 200)).getcolors(maxcolors=1 << 20)
    assert len(top) > 10, "the title and header are drawn"


def _measured(page: str, tmp_path) -> dict:
    """The per-category table's box in Chromium at 1280 px: page width, its right edge, inner and shown widths."""
    path = tmp_path / "measure.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(f"--window-size={WINDOW},900", "--dump-dom", path.resolve().as_uri()).stdout
    found = re.search(r'data-measure="([^"]*)"', dom)
    assert found, dom[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def _class_trials(count: int, seeds: int = 1) -> list[FakeTrial]:
    """The cpu main command's shape: gamma x alpha cells (x seeds), AP of 20 categories each."""
    cells = [(g, a) for g in (0.0, 0.5, 1.0, 2.0, 5.0, 0.1, 0.2) for a in (0.25, 0.9)][:count]
    trials = []
    for (gamma, alpha) in cells:
        for seed in range(seeds):
            ap = 0.05 + gamma / 50 + seed / 100
            per_class = {layout.per_class_metric(c): ap + i / 200 for i, c in enumerate(CPU_CLASSES)}
            trials.append(FakeTrial({"loss.gamma": gamma, "loss.alpha": alpha}, seed, {**fake_metrics(ap), **per_class}))
    return trials


def test_the_per_category_table_fits_a_1280_px_window(tmp_path):
    """20 categories, 10 trials (the cpu main command): categories down, trials across, inside the page."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = log_fake_sweep(uri, "gamma_alpha", _class_trials(10), artifact_location=str(tmp_path / "artifacts"))
    wide = create_report(parent, tracking_uri=uri, reports_dir=tmp_path / "reports", console=Console(quiet=True),
                         log_artifacts=False)
    page = (wide.out_dir / FILE_NAME).read_text(encoding="utf-8")
    table = page.split('<table class="per-class">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + len(CPU_CLASSES) and "alpha=0.25<br>gamma=5.0" in table  # transposed
    size = _measured(page, tmp_path)
    assert size["window"] == WINDOW and size["page"] <= WINDOW, size  # nothing runs off the right edge
    assert size["right"] <= WINDOW and size["inner"] <= size["shown"], size  # the whole table in view


def test_a_per_category_table_wider_than_the_window_scrolls_in_its_box(tmp_path):
    """30 trials (10 cells x 3 seeds) of 20 categories: wider than the page, so it scrolls in its own box."""
    trials = [TrialRecord(run_id=f"run{i:03d}", cell=f"c{i}", overrides=t.overrides, seed=t.seed, status="FINISHED",
                          error="", metrics=fake_metrics(t.metrics["AP"])) for i, t in enumerate(_class_trials(10, 3))]
    per_class = {r.run_id: layout.per_class_of(t.metrics) for r, t in zip(trials, _class_trials(10, 3))}
    body = per_class_html(trials, per_class)
    assert "seed 2" in body  # seeds vary: each column says which
    page = f"<!DOCTYPE html><html><head><style>{STYLE}</style></head><body><h1>x</h1>{body}</body></html>"
    size = _measured(page, tmp_path)
    assert size["page"] <= WINDOW and size["right"] <= WINDOW, size  # the page itself keeps its width
    assert size["inner"] > size["shown"] and size["overflow"] == "auto", size  # the rest is a scroll away


def test_the_browser_dom_holds_the_tables_numbers(report):
    dom = _chromium("--dump-dom", (report.out_dir / FILE_NAME).resolve().as_uri()).stdout
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", dom)
    assert "34.5" in cells and "31.1" in cells and "34.0" in cells  # ours (γ=2), the paper's γ=0 and γ=2 AP
    assert "Sweep gamma_alpha" in dom


def test_the_page_shows_the_findings_as_every_other_format_does(report):
    """One findings table: the page's cells are the texts Markdown and the terminal show, units right
    (the AP numbers with their unit, never "— AP"; the trend named by its axis, as in the terminal)."""
    page = (report.out_dir / FILE_NAME).read_text(encoding="utf-8")
    table = page.split(f"<h2>{TITLE}</h2>", 1)[1].split("</table>", 1)[0]
    rows = [[html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in table.split("<tr>")[2:]]
    assert report.findings and rows == [list(finding_row(r)) for r in report.findings]
    console = Console(file=io.StringIO(), width=400)
    print_findings(report.findings, console)
    terminal = console.file.getvalue()
    for result, cells in zip(report.findings, rows):
        ours, paper = cells[COLUMNS.index("ours")], cells[COLUMNS.index("paper")]
        assert ours == "—" or ours.endswith(f" {result.unit}"), ours
        assert paper == "—" or paper.endswith(f" {result.unit}"), paper
        assert f"ours {ours}" in terminal and f"paper {paper}" in terminal
        assert cells[COLUMNS.index("compared")] in terminal  # e.g. "the weakest of 1 steps along gamma: ..."
    assert "— AP" not in page and "— ms" not in page
    assert any(result.estimate is not None for result in report.findings)  # a number with its unit was shown


def test_a_report_reads_the_runs_once_and_keys_the_rows_once(tmp_path, monkeypatch):
    """Tables, findings, plots and the page read one SweepRecord: one query for the child runs
    (their per-class AP included), one build of the keyed rows."""
    import analysis.sweep

    calls = {"children": 0, "rows": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(layout, "children", counted("children", layout.children))
    monkeypatch.setattr(analysis.sweep, "keyed_rows", counted("rows", analysis.sweep.keyed_rows))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = log_fake_sweep(uri, "gamma_alpha", _trials(), artifact_location=str(tmp_path / "artifacts"))
    report = create_report(parent, tracking_uri=uri, reports_dir=tmp_path / "reports", console=Console(quiet=True))
    assert report.tables and report.findings and report.plots
    assert calls == {"children": 1, "rows": 1}
    assert "44.5" in (report.out_dir / FILE_NAME).read_text(encoding="utf-8")  # per-class AP, from that one read
