"""Run a sweep: `python -m sweeps.run +sweep=<name> [overrides]`.

Compose the Hydra config, validate every trial of it (a bad value is one
line and a non-zero exit before any cluster starts), start or join Ray, run
the trials with Ray Tune while the driver records them in MLflow, then build
the report and say where everything is. Re-running the same command resumes
an interrupted sweep (see sweeps/driver.py).

Heavy modules (Ray, MLflow, Optuna) are imported only once the input is
known to be good, so a user error is reported in a fraction of a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from detector.config import ConfigError
from sweeps.outcome import SweepOutcome
from sweeps.validate import CONF_DIR, available, prepare

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# -- entry points ---------------------------------------------------------------
def main_with(overrides: list[str], *, stop_after: Optional[int] = None, quiet: bool = False) -> SweepOutcome:
    """Run a sweep in-process from Hydra overrides (tests, notebooks).

    `stop_after=N` ends the sweep once N trials have finished, as Ctrl-C would.
    Raises ConfigError (one line) for bad input."""
    return run_sweep(compose_checked(overrides), overrides, stop_after=stop_after, quiet=quiet)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        outcome = run_sweep(cfg, list(HydraConfig.get().overrides.task))
    except ConfigError as error:
        _exit_user_error(str(error))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the sweep", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if outcome.interrupted:
        sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    """CLI. Bad input is rejected here, before Hydra creates its output folder
    (and in one line: Hydra's own errors span many); then Hydra runs the sweep."""
    argv = sys.argv[1:]
    if not any(arg.startswith("-") for arg in argv):  # Hydra flags (--cfg, -m, ...) take Hydra's own path
        try:
            prepare(compose_checked(argv), argv)
        except ConfigError as error:
            _exit_user_error(str(error))
    _hydra_main()


def compose_checked(overrides: list[str]) -> DictConfig:
    """The composed config; unknown group choices and Hydra's override errors as one-line ConfigErrors."""
    problem = check_group_choices(overrides)
    if problem:
        raise ConfigError(problem)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=overrides)
    except HydraException as error:
        cause = f" ({_first_line(error.__cause__)})" if error.__cause__ is not None else ""
        raise ConfigError(_first_line(error).rstrip(".") + cause) from None


def _exit_user_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)  # a user error: one line, no traceback
    sys.exit(EXIT_USER_ERROR)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_group_choices(overrides: list[str]) -> Optional[str]:
    """One line naming an unknown `[+]group=choice` (sweep, profile, loss, ...)
    and the available ones; also a missing +sweep. None when all is well."""
    has_sweep = False
    for item in overrides:
        name, sep, choice = item.lstrip("+~").partition("=")
        folder = CONF_DIR / name
        if not sep or "." in name or not folder.is_dir():
            continue
        has_sweep = has_sweep or name == "sweep"
        if not (folder / f"{choice}.yaml").is_file():
            return f"unknown {name} {choice!r}; available: {', '.join(available(name))}"
    if not has_sweep:
        return f"no sweep given: add +sweep=<name>, one of {', '.join(available('sweep'))}"
    return None


# -- the sweep ------------------------------------------------------------------
def run_sweep(cfg: DictConfig, overrides: Sequence[str] = (), *, stop_after: Optional[int] = None,
              quiet: bool = False) -> SweepOutcome:
    """Validate, run on Ray, record in MLflow, report. Returns the outcome.
    `overrides`: the command line's, so sweep keys given there beat `trimmed`."""
    prepared = prepare(cfg, overrides)
    from rich.console import Console

    from sweeps.driver import SweepDriver

    console = Console(quiet=quiet)
    driver = SweepDriver(prepared, console=console, stop_after=stop_after)
    outcome = driver.run()
    outcome.report_error = _build_report(outcome, console)
    print_summary(outcome, console)
    return outcome


def _build_report(outcome: SweepOutcome, console: Any) -> Optional[str]:
    """analysis.report.build_report, if that module exists; a failure is shown, not hidden."""
    try:
        from analysis.report import build_report
    except ModuleNotFoundError as error:
        if error.name not in ("analysis", "analysis.report"):
            raise  # analysis/ exists but is broken: that is a bug to see
        return "analysis.report is not available: tables were not built"
    try:  # reports_dir is the root (conf: reports_dir); analysis writes <root>/<sweep>/
        written = build_report(outcome.parent_run_id, tracking_uri=outcome.tracking_uri,
                               experiment=outcome.experiment, reports_dir=outcome.reports_dir.parent,
                               console=console)
    except Exception as error:  # the sweep's results are safe in MLflow; say what went wrong and go on
        return f"building the report failed: {type(error).__name__}: {error}"
    if isinstance(written, (str, Path)) and Path(written).is_dir():
        outcome.reports_dir = Path(written)
    return None


def print_summary(outcome: SweepOutcome, console: Any) -> None:
    """Final lines: how it went and where the results are."""
    c = outcome.counts
    console.print(f"[bold]{outcome.sweep}[/] ({outcome.profile}): {c['finished']} finished, {c['failed']} failed"
                  + (f", {c['before']} done in earlier runs" if c.get("before") else ""), soft_wrap=True)
    for key, error in outcome.failures.items():
        console.print(f"  [red]failed[/] {key}: {error.splitlines()[0][:160]}", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/]: {c['killed']} trial(s) not finished; run the same command "
                      "again to continue (finished trials are kept)", soft_wrap=True)
    if outcome.study:
        console.print(f"Optuna study: {outcome.study}", highlight=False, soft_wrap=True)
    console.print(f"MLflow: experiment '{outcome.experiment}', parent run {outcome.parent_run_id} "
                  f"at {outcome.tracking_uri}", highlight=False, soft_wrap=True)
    console.print(f"  browse: mlflow ui --backend-store-uri {outcome.tracking_uri}", highlight=False, soft_wrap=True)
    if outcome.report_error:
        console.print(f"[yellow]report[/]: {outcome.report_error}; rebuild later with "
                      f"python -m analysis.report {outcome.parent_run_id}", highlight=False, soft_wrap=True)
    else:
        console.print(f"Reports: {outcome.reports_dir}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
