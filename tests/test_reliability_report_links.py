"""Secrets stay secret in the HTML report too (issue 24, item 5): its MLflow
links are built from tracking.uri, which may carry a password; the page, a
file people share, shows the user and *** instead. One masking function for
analysis/ and sweeps/ (analysis/redact.py)."""

from __future__ import annotations

import pytest
from rich.console import Console

from analysis import redact as analysis_redact
from analysis.html import HtmlInputs, render_page
from analysis.report import create_report
from sweeps import redact as sweeps_redact
from tests.analysis_fixtures import FakeTrial, fake_metrics, log_fake_sweep

SECRET = "s3cr3t-pw"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a logged fake gamma_alpha sweep (no Ray, no training)."""
    root = tmp_path_factory.mktemp("links")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trials = [FakeTrial({"loss.name": "focal", "loss.gamma": gamma, "loss.alpha": 0.25}, 0, fake_metrics(ap))
              for gamma, ap in ((0.0, 0.300), (2.0, 0.345))]
    parent = log_fake_sweep(uri, "gamma_alpha", trials, artifact_location=str(root / "artifacts"))
    return create_report(parent, tracking_uri=uri, reports_dir=root / "reports", console=Console(quiet=True))


def test_the_pages_mlflow_links_hold_no_password(report):
    page = render_page(report, HtmlInputs(tracking_uri=f"https://alice:{SECRET}@mlflow.example:5000",
                                          experiment_id="7", saved_view=True))
    assert SECRET not in page
    run = report.sweep.trials[0].run_id
    assert f'href="https://alice:***@mlflow.example:5000/#/experiments/7/runs/{run}"' in page  # still the run's link
    assert 'href="https://alice:***@mlflow.example:5000/#/experiments/7/runs?' in page  # the sweep's runs page


def test_one_masking_function_for_analysis_and_sweeps():
    assert sweeps_redact.redact is analysis_redact.redact
