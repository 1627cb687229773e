"""Run a sweep: `python -m sweeps.run +sweep=<name> [overrides] [--config-dir DIR]`.

Compose the config once, build the plan (every trial's config validated: a
bad value is one line and a non-zero exit before any cluster starts), start
or join Ray, run the trials with Ray Tune while the driver records them in
MLflow, then build the report and say where everything is. Re-running the
same command resumes an interrupted sweep (see sweeps/driver.py).

Heavy modules (Ray, MLflow, Optuna) are imported only once the input is
known to be good, so a user error is reported in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

from detector.config import ConfigError
from sweeps.compose import HelpRequested, compose_config, group_options, split_argv, usage
from sweeps.failures import SweepAborted, failed_trials_message
from sweeps.inputs import check_study_storage, check_tracking_server
from sweeps.lease import SweepBusy
from sweeps.plan import SweepPlan, build_plan
from sweeps.redact import redact
from sweeps.timing import needs_quiet_timing, time_quietly

EXIT_TRIALS_FAILED = 1  # the sweep ran; some trials failed (each named in the summary)
EXIT_USER_ERROR = 2
EXIT_ABORTED = 69  # EX_UNAVAILABLE: a service (tracking store, disk) failed mid-sweep; run again to continue
EXIT_BUSY = 75  # EX_TEMPFAIL: another invocation is running this sweep; try again later
EXIT_INTERRUPTED = 130


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI: a user error is one line and exit 2 (75 when the sweep is running elsewhere);
    failed trials exit 1, a service failing mid-sweep 69, Ctrl-C 130 (run again to continue)."""
    try:
        overrides, config_dir = split_argv(sys.argv[1:] if argv is None else argv)
        plan = plan_from(overrides, config_dir)
        outcome = run_plan(plan, overrides=overrides, config_dir=config_dir)
    except HelpRequested as request:
        print(usage("sweeps.run", request.config_dir))
        return
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)  # a user error: one line, no traceback
        sys.exit(EXIT_BUSY if isinstance(error, SweepBusy) else EXIT_USER_ERROR)
    except SweepAborted as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)  # a store's error may quote its URI
        sys.exit(EXIT_ABORTED)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the sweep", file=sys.stderr)
        exit_now(EXIT_INTERRUPTED)
    code = exit_code(outcome)
    if code:
        sys.exit(code)


def exit_now(code: int) -> None:
    """Exit with `code`, skipping the interpreter's finalisation. A Ctrl-C inside ray.init leaves
    Ray's C++ core half started, and its teardown at exit crashed (SIGSEGV, exit -11 instead of
    130, in 4 of 17 Ctrl-Cs 10-18 s into a smoke sweep on a loaded 2-core machine, 2026-12-07).
    By now the runs are closed and Ray is shut down (sweeps.cluster.ray_cluster), so nothing is
    left for atexit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_code(outcome: Any) -> int:
    """130 for an interrupted sweep, 1 when a trial failed (one line on stderr after the
    summary, which names each failed cell), else 0."""
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.counts.get("failed"):
        total = sum(outcome.counts.get(key, 0) for key in ("finished", "failed", "killed"))
        print(f"error: {failed_trials_message(outcome.failures, total)}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return 0


def main_with(overrides: list[str], *, config_dir: Optional[str] = None, stop_after: Optional[int] = None,
              quiet: bool = False) -> Any:
    """Run a sweep in-process from Hydra overrides (tests, notebooks); returns its SweepOutcome.

    `stop_after=N` ends the sweep once N trials have finished, as Ctrl-C would.
    Raises ConfigError (one line) for bad input."""
    return run_plan(plan_from(overrides, config_dir), stop_after=stop_after, quiet=quiet, overrides=overrides,
                    config_dir=config_dir)


def plan_from(overrides: list[str], config_dir: Optional[str] = None) -> SweepPlan:
    """Compose once and build the plan; a missing +sweep names the sweeps there are."""
    if not any(item.lstrip("+").startswith("sweep=") for item in overrides):
        names = ", ".join(group_options("sweep", config_dir))
        raise ConfigError(f"no sweep given: add +sweep=<name>, one of {names}")
    return build_plan(compose_config(overrides, config_dir), overrides, config_dir)


def run_plan(plan: SweepPlan, *, stop_after: Optional[int] = None, quiet: bool = False,
             overrides: Optional[Sequence[str]] = None, config_dir: Optional[str] = None) -> Any:
    """Run on Ray, record in MLflow, report. Returns the SweepOutcome.
    A tracking server that does not answer is a one-line ConfigError before anything starts.
    With the `overrides` that made the plan, an undecided finding gets the command that would
    decide it (sweeps/decide.py)."""
    from analysis.render import default_console
    from sweeps.driver import SweepDriver  # Ray and Tune load here, after the cheap checks of the command line
    from sweeps.search import check_study_base

    check_tracking_server(plan.tracking_uri)
    if plan.search is not None:
        check_study_storage(plan.search.storage)
        check_study_base(plan.search, plan.name, plan.profile, plan.base_hash)

    console = default_console(quiet=quiet)  # a sweep's log file gets its tables unsqueezed too
    outcome = SweepDriver(plan, console=console, stop_after=stop_after).run()
    if needs_quiet_timing(plan) and not outcome.interrupted:
        from sweeps.tracking import SweepTracker

        time_quietly(plan, SweepTracker(outcome.tracking_uri, plan.experiment), outcome.parent_run_id,
                     say=lambda line: console.print(line, highlight=False))
    _build_report(outcome, console)
    if overrides is not None and not outcome.interrupted:
        _say_what_would_decide(plan, outcome, list(overrides), config_dir, console)
    print_summary(outcome, console)
    return outcome


def _say_what_would_decide(plan: SweepPlan, outcome: Any, overrides: list[str], config_dir: Optional[str],
                           console: Any) -> None:
    """After the findings: for each undecided one, the command that adds the seeds it needs, and its time."""
    from sweeps.decide import decide_lines, seeds_to_decide
    from sweeps.estimate import MEASURED, estimate_line, machine_probe

    if not seeds_to_decide(outcome.findings, plan.seeds):
        return  # every finding decided (or none more seeds would decide): no probe, no plans to build
    measured = MEASURED.get(plan.profile)
    probe = machine_probe() if measured and measured.probe else None
    for line in decide_lines(plan, outcome.findings, overrides, config_dir, plan_from,
                             lambda bigger, configs: estimate_line(bigger, configs, probe_now=probe)):
        console.print(line, highlight=False, soft_wrap=True)


def _build_report(outcome: Any, console: Any) -> None:
    """Tables, findings and plots from MLflow; a failure is shown, not hidden (the results are safe in MLflow)."""
    from analysis.report import create_report

    try:
        report = create_report(outcome.parent_run_id, tracking_uri=outcome.tracking_uri,
                               experiment=outcome.plan.experiment, reports_dir=outcome.plan.reports_root,
                               console=console)
        outcome.reports_dir, outcome.findings = report.out_dir, report.findings
    except Exception as error:  # noqa: BLE001 - reported in the summary, with the command to retry
        outcome.report_error = f"building the report failed: {type(error).__name__}: {error}"


def _runs_page(outcome: Any) -> Optional[str]:
    """The MLflow UI page of the sweep's trials (on `mlflow ui`'s default address for a local store)."""
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    from analysis.layout import runs_page

    try:
        experiment_id = MlflowClient(outcome.tracking_uri).get_run(outcome.parent_run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a convenience line; the results are in MLflow either way
        return None
    served = urlparse(outcome.tracking_uri).scheme in ("http", "https")
    return runs_page(redact(outcome.tracking_uri) if served else "http://127.0.0.1:5000", experiment_id,
                     outcome.parent_run_id, saved_view=outcome.report_error is None)  # the report saves the view


def print_summary(outcome: Any, console: Any) -> None:
    """Final lines: how it went and where the results are (store passwords redacted)."""
    plan, c, uri = outcome.plan, outcome.counts, redact(outcome.tracking_uri)
    console.print(f"[bold]{plan.name}[/] ({plan.profile}): {c['finished']} finished, {c['failed']} failed"
                  + (f", {c['before']} done in earlier runs" if c.get("before") else ""), soft_wrap=True)
    for key, error in outcome.failures.items():
        console.print(f"  [red]failed[/] {key}: {redact(error.splitlines()[0])[:160] if error else ''}",
                      highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/]: {c['killed']} trial(s) not finished; run the same command "
                      "again to continue (finished trials are kept)", soft_wrap=True)
    if outcome.study:
        console.print(f"Optuna study: {redact(outcome.study)}", highlight=False, soft_wrap=True)
    console.print(f"MLflow: experiment '{plan.experiment}', parent run {outcome.parent_run_id} "
                  f"at {uri}", highlight=False, soft_wrap=True)
    console.print(f"  browse: mlflow ui --backend-store-uri {uri}", highlight=False, soft_wrap=True)
    page = _runs_page(outcome)
    if page:
        console.print(f"  this sweep's trials, best AP first: {page}", highlight=False, soft_wrap=True)
    if outcome.report_error:
        console.print(f"[yellow]report[/]: {outcome.report_error}; rebuild later with "
                      f"python -m analysis.report {outcome.parent_run_id}", highlight=False, soft_wrap=True)
    else:
        console.print(f"Reports: {outcome.reports_dir}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
