"""reports/<sweep>/index.html: self-contained, and what a real browser shows of it.

The browser checks run headless Chromium (Debian's `chromium`; CI installs it,
see .ci/run): a screenshot that is not blank, and the DOM holding the table's
numbers. Without a chromium binary they skip, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image
from rich.console import Console

from analysis import layout
from analysis.html import FILE_NAME, HtmlInputs, render_page
from analysis.report import create_report
from tests.analysis_fixtures import FakeTrial, _search_trials, fake_metrics, log_fake_sweep

CATEGORIES = ("red_square", "green_circle", "blue_triangle")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


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


def test_the_browser_dom_holds_the_tables_numbers(report):
    dom = _chromium("--dump-dom", (report.out_dir / FILE_NAME).resolve().as_uri()).stdout
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", dom)
    assert "34.5" in cells and "31.1" in cells and "34.0" in cells  # ours (γ=2), the paper's γ=0 and γ=2 AP
    assert "Sweep gamma_alpha" in dom
