"""Trial functions for sweep tests that need no training (`trial.function=tests.fake_trials:...`).

They report like `detector.trial.run_trial` (losses every log_every, AP every
eval_every, the final metrics) with AP a known function of the cell, so a
test can predict what ASHA or a resume will do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from analysis.layout import COCO_METRICS


def ap_from_alpha(cfg, *, workdir: Path, report) -> dict:
    """AP = alpha * iteration / iterations at each evaluation: a higher alpha is always better."""
    train = cfg.train
    for iteration in range(train.log_every, train.iterations + 1, train.log_every):
        time.sleep(0.05)  # a trial takes a moment, so the scheduler sees the rungs in order
        report({"iteration": iteration, "loss": 1.0 / iteration, "loss_cls": 0.5 / iteration,
                "loss_box": 0.5 / iteration, "lr": train.lr})
        if train.eval_every and iteration % train.eval_every == 0:
            report({"iteration": iteration, **_metrics(cfg.loss.alpha * iteration / train.iterations)})
    final = {**_metrics(cfg.loss.alpha), "ms_per_image": 1.0, "iterations": train.iterations}
    (Path(workdir) / "metrics.json").write_text(json.dumps(final))
    return final


def _metrics(ap: float) -> dict[str, float]:
    return {name: ap for name in COCO_METRICS}


def slow_ap(cfg, *, workdir: Path, report) -> dict:
    """`ap_from_alpha` taking FAKE_TRIAL_STEP_S (default 0.2) seconds per logged step, and
    holding its first report until the file FAKE_TRIAL_GATE exists (if set): a test acts
    while the trial runs (a second driver, an outage), then lets it go on."""
    import os

    step = float(os.environ.get("FAKE_TRIAL_STEP_S", "0.2"))
    gate = os.environ.get("FAKE_TRIAL_GATE")
    original = report

    def slow_report(values: dict) -> None:
        while gate and not Path(gate).exists():
            time.sleep(0.2)
        if "loss" in values:
            time.sleep(step)
        original(values)

    return ap_from_alpha(cfg, workdir=workdir, report=slow_report)
