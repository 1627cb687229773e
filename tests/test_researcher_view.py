"""What a researcher sees in MLflow after a sweep: the experiment tagged as model
training, the parent describes the sweep, children have names a person
reads, per-category AP and pictures of predictions, and every run says what
it ran on. Also the time estimate printed before the cluster starts.

Fast: the fake trial function (no training) for the orchestration, and one
real smoke-profile trial for what only the detector produces.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from rich.console import Console

from analysis import layout
from sweeps.cluster import quiet_ray
from sweeps.driver import SweepDriver
from detector.pretrain import pretrained_path
from sweeps.estimate import (MEASURED, PRETRAIN, SWEEP_OVERHEAD_S, TrialTime, cell_cost, estimate_line,
                             estimate_seconds, machine_probe, pretraining_seconds, trial_seconds)
from sweeps.run import _build_report, main_with, plan_from

PROJECT = Path(__file__).resolve().parents[1]
VERSION_TAGS = (layout.ENV_PYTHON, layout.ENV_TORCH, layout.ENV_TORCHVISION, layout.ENV_RAY, layout.ENV_MLFLOW,
                layout.ENV_OPTUNA)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One 2-CPU Ray cluster for the module; its workers import tests.fake_trials from here."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(PROJECT) + (os.pathsep + before if before else "")
    quiet_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


def _args(tmp: Path, smoke_cache: str, *extra: str) -> list[str]:
    return ["profile=smoke", f"data.cache_dir={smoke_cache}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
            f"output_dir={tmp / 'outputs'}", f"reports_dir={tmp / 'reports'}", *extra]


@pytest.fixture(scope="module")
def fake_grid(tmp_path_factory, smoke_cache):
    """gamma_alpha on the smoke profile (gamma 0 and 2) with the fake trial; the driver's terminal captured."""
    tmp = tmp_path_factory.mktemp("fake_grid")
    plan = plan_from(["+sweep=gamma_alpha", *_args(tmp, smoke_cache), "trial.function=tests.fake_trials:ap_from_alpha",
                      "train.iterations=20", "train.log_every=10"])
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    outcome = SweepDriver(plan, console=console).run()
    _build_report(outcome, console)
    return outcome, MlflowClient(outcome.tracking_uri), screen.getvalue()


def _runs(client: MlflowClient, parent_id: str):
    parent = client.get_run(parent_id)
    return parent, layout.children(client, parent.info.experiment_id, parent_id)


def test_the_experiment_is_tagged_as_model_training(fake_grid):
    """MLflow's own kind tag, kept for what reads it; the 3.17/3.18 UI does not (the link's workflowType does)."""
    outcome, client, _ = fake_grid
    experiment = client.get_experiment_by_name(outcome.plan.experiment)
    assert experiment.tags[layout.EXPERIMENT_KIND] == "custom_model_development"


def test_the_parent_describes_the_sweep_in_markdown(fake_grid):
    outcome, client, _ = fake_grid
    assert outcome.report_error is None
    note = client.get_run(outcome.parent_run_id).data.tags[layout.NOTE]
    assert "### Table 1b: focal loss over gamma" in note and "| γ |" in note
    assert "Findings of the paper" in note and "inconclusive" in note


def test_the_report_names_the_command_that_reproduces_the_sweep(fake_grid):
    """The command as given (overrides and all), recorded on the parent, printed at the terminal's
    end of the report, under its Markdown tables and on its page, with the commit and the parent run."""
    import shlex

    outcome, client, screen = fake_grid
    parent = client.get_run(outcome.parent_run_id).data.tags
    words = shlex.split(parent[layout.COMMAND])
    assert words[:4] == ["python", "-m", "sweeps.run", "+sweep=gamma_alpha"]
    assert "trial.function=tests.fake_trials:ap_from_alpha" in words and "train.iterations=20" in words
    assert f"Reproduce: {parent[layout.COMMAND]}" in screen
    assert f"MLflow parent run: {outcome.parent_run_id}" in screen
    markdown = (outcome.reports_dir / "table1b.md").read_text(encoding="utf-8")
    assert f"- command: `{parent[layout.COMMAND]}`" in markdown
    if (PROJECT / ".git").exists():  # a checkout: the commit it ran, clean or not
        assert f"git checkout {parent[layout.ENV_GIT_COMMIT]}" in markdown
        assert ("a clean tree" if parent[layout.ENV_GIT_DIRTY] == "false" else "uncommitted changes") in markdown
    assert "Reproduce: <code>python -m sweeps.run +sweep=gamma_alpha" in (
        outcome.reports_dir / "index.html").read_text(encoding="utf-8")


def test_children_have_readable_names(fake_grid):
    outcome, client, _ = fake_grid
    _, children = _runs(client, outcome.parent_run_id)
    assert sorted(c.info.run_name for c in children) == ["gamma=0", "gamma=2"]  # alpha and loss.name are shared


def test_every_run_says_what_it_ran_on(fake_grid):
    outcome, client, _ = fake_grid
    parent, children = _runs(client, outcome.parent_run_id)
    for run in [parent, *children]:
        tags = run.data.tags
        assert all(tags.get(t) not in (None, "", "unknown") for t in VERSION_TAGS), tags
        if (PROJECT / ".git").exists():  # a checkout (an unpacked archive records "unknown")
            assert len(tags[layout.ENV_GIT_COMMIT]) == 40 and tags[layout.ENV_GIT_DIRTY] in ("true", "false")
        assert len(tags[layout.DATA_DIGEST]) == 16  # the smoke set is on this machine
    assert parent.data.tags[layout.ENV_DEVICE] == "cpu"
    assert len({run.data.tags[layout.DATA_DIGEST] for run in [parent, *children]}) == 1


def test_the_time_is_estimated_before_the_cluster_starts(fake_grid):
    _, _, screen = fake_grid
    first = screen.strip().splitlines()[0]
    assert first.startswith("2 trials, about ") and "on 2 CPUs" in first and "profile smoke" in first


def test_the_estimate_from_measured_figures(tmp_path):
    plan = plan_from(["+sweep=gamma_alpha", "cluster.num_cpus=2"])  # the cpu profile: 10 trials
    configs = [cell.config for cell in plan.cells]
    per_trial = trial_seconds(configs[0], MEASURED["cpu"])
    assert per_trial == MEASURED["cpu"].seconds(configs[0].train.iterations)  # the measured trial's own size
    assert estimate_seconds([per_trial] * 10, 2) == 5 * per_trial + SWEEP_OVERHEAD_S
    assert estimate_seconds([per_trial] * 11, 2) == 6 * per_trial + SWEEP_OVERHEAD_S  # an odd trial takes a round
    assert estimate_seconds([1.0, 1.0, 4.0], 2) == 5.0 + SWEEP_OVERHEAD_S  # in order: 1+4 | 1, as Ray starts them
    assert estimate_line(plan, configs).startswith("10 trials, about ")  # with this machine's own probe
    paper = plan_from(["+sweep=gamma_alpha", "profile=paper", "data=coco", f"data.root={tmp_path}"])  # must exist
    assert estimate_line(paper, configs[:3]) == "3 trials, time unknown (no measured figures for profile paper)"
    gpu = plan_from(["+sweep=gamma_alpha", "cluster.num_cpus=2", "cluster.gpus_per_trial=0.5"])
    assert estimate_line(gpu, configs[:3]) == "3 trials, time unknown (no GPU figures are measured)"


def test_each_cell_is_priced_by_its_own_size():
    """speed_accuracy's cells differ 2.4x (docs/FIDELITY.md E18): priced as one 128-px ResNet-18 cell each,
    its estimate said ~20 min for 27 min 37 s of trials."""
    plan = plan_from(["+sweep=speed_accuracy", "cluster.num_cpus=2"])
    measured = MEASURED["cpu"]
    by_shape = {(c.config.model.depth, c.config.data.min_size): cell_cost(c.config, measured) for c in plan.cells}
    assert by_shape[(18, 128)] == 1.0
    assert by_shape[(18, 96)] == pytest.approx(0.3 + 0.7 * 0.5625)  # E18 measured x0.76
    assert by_shape[(18, 160)] == pytest.approx(0.3 + 0.7 * 1.5625)  # E18 measured x1.49
    assert by_shape[(34, 128)] == pytest.approx(1.7)  # E18 measured x1.54-1.73
    line = estimate_line(plan, [c.config for c in plan.cells], probe_now=measured.probe)
    low = trial_seconds(next(c.config for c in plan.cells if c.config.model.depth == 18
                             and c.config.data.min_size == 96), measured)
    assert f"~{round(low)}-" in line  # a range, from the cheapest cell
    flat = estimate_seconds([trial_seconds(plan.base_config, measured)] * len(plan.cells), 2)
    assert estimate_seconds([trial_seconds(c.config, measured) for c in plan.cells], 2) > 1.2 * flat


def test_an_undecided_finding_says_the_command_and_time_that_would_decide_it():
    """gamma_alpha on the cpu profile: 6 cells, the two headline cells at 3 seeds (focus), 10 trials.
    sweep.seeds=5 makes 30; the 10 finished are kept, so 4 x 4 + 2 x 2 = 20 new trials are priced."""
    from types import SimpleNamespace as Row

    from sweeps.decide import decide_lines

    overrides = ["+sweep=gamma_alpha", "cluster.num_cpus=2", "sweep.seeds=1"]
    plan = plan_from(overrides)
    findings = [Row(id="a", verdict="inconclusive", seeds_needed=5), Row(id="b", verdict="reproduced", seeds_needed=None),
                Row(id="c", verdict="inconclusive", seeds_needed=5), Row(id="d", verdict="inconclusive", seeds_needed=1)]
    lines = decide_lines(plan, findings, overrides, None, lambda more, config_dir: plan_from(more, config_dir),
                         lambda bigger, configs: f"{len(configs)} new trials of {len(bigger.cells)}")
    assert lines == ["to decide a, c (~5 seeds per cell): python -m sweeps.run +sweep=gamma_alpha cluster.num_cpus=2 "
                     "sweep.seeds=5  [20 new trials of 30; the finished seeds are kept]"]


def test_the_estimate_scales_with_the_machine_probe():
    plan = plan_from(["+sweep=gamma_alpha", "cluster.num_cpus=2"])
    measured = MEASURED["cpu"]
    iterations = plan.cells[0].config.train.iterations
    assert measured.seconds(iterations, probe_now=2 * measured.probe) == 2 * measured.seconds(iterations)
    assert TrialTime(1.0, 10.0, "a test").seconds(100, probe_now=5.0) == 110.0  # no probe then: not scaled
    slower = estimate_line(plan, [plan.cells[0].config] * 14, probe_now=2 * measured.probe)
    assert f"~{2 * measured.seconds(iterations):.0f} s each" in slower
    assert slower.endswith("this machine at 0.5x the speed of the one measured)")


def test_the_estimate_counts_a_pretraining_still_to_make(tmp_path):
    plan = plan_from(["+sweep=gamma_alpha", "cluster.num_cpus=2", "model.pretrained=synthetic",
                      "model.frozen_bn=true", f"data.cache_dir={tmp_path}"])
    model = plan.base_config.model
    expected = PRETRAIN.fixed + PRETRAIN.per_iteration * model.pretrain.steps * (model.pretrain.crop_size / 64) ** 2
    assert pretraining_seconds(plan) == pytest.approx(expected)
    assert pretraining_seconds(plan, probe_now=2 * PRETRAIN.probe) == pytest.approx(2 * expected)
    assert f"after ~{expected:.0f} s of one-time pretraining" in estimate_line(plan, [plan.base_config] * 10, probe_now=PRETRAIN.probe)
    pretrained_path(model, plan.base_config.data).parent.mkdir(parents=True, exist_ok=True)
    pretrained_path(model, plan.base_config.data).write_bytes(b"cached")
    assert pretraining_seconds(plan) == 0.0 and "pretraining" not in estimate_line(plan, [plan.base_config] * 10, probe_now=0.135)


def test_the_machine_probe_times_one_thread_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    assert machine_probe(repeats=1) > 0
    assert torch.get_num_threads() == threads


def test_a_real_trial_logs_per_class_ap_curves_and_predictions(tmp_path, smoke_cache):
    outcome = main_with(["+sweep=gamma_alpha", *_args(tmp_path, smoke_cache),
                         "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}", "train.iterations=30"],
                        quiet=True)
    client = MlflowClient(outcome.tracking_uri)
    (child,) = _runs(client, outcome.parent_run_id)[1]
    per_class = layout.per_class_of(child.data.metrics)
    assert sorted(per_class) == ["blue_triangle", "green_circle", "red_square"]  # the smoke set's 3 classes
    assert all(-1.0 <= ap <= 1.0 for ap in per_class.values())
    assert child.data.tags[layout.ENV_DEVICE] == "cpu"
    top = {Path(a.path).name for a in client.list_artifacts(child.info.run_id)}
    assert {layout.PER_CLASS_FILE, layout.PR_CURVES_FILE, layout.PREDICTIONS_DIR} <= top
    pictures = client.list_artifacts(child.info.run_id, layout.PREDICTIONS_DIR)
    assert len(pictures) == 4 and all(p.path.endswith(".png") for p in pictures)
    page = (outcome.reports_dir / "index.html").read_text(encoding="utf-8")
    assert "red_square" in page  # the report reads the AP/* metrics back
