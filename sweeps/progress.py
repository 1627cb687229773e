"""Live progress of a sweep in the terminal (rich): a line per trial (status,
iteration, loss, AP) and an overall line (done / running / failed, elapsed,
estimated time left). Fed by a Tune callback in the driver.

AP arrives as COCOeval's fraction and is shown in percent, one decimal, as
every table, report and plot shows it (and the paper prints it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from ray import tune
from ray.tune.experiment import Trial
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from analysis import layout
from sweeps.plan import SweepPlan
from sweeps.trainable import FINAL_FLAG

_MISSING = object()
MAX_ROWS = 24  # beyond this, finished trials are folded into the summary line
ENDED = ("DONE", "FAILED", "STOPPED")
STYLES = {"RUNNING": "cyan", "DONE": "green", "FAILED": "red", "STOPPED": "yellow", "RETRY": "magenta"}


@dataclass
class TrialLine:
    """What the display knows about one trial."""

    label: str
    total: int  # iterations the trial will run
    status: str = "RUNNING"
    iteration: int = 0
    loss: Optional[float] = None
    ap: Optional[float] = None  # COCO AP as a fraction in [0, 1], as trials report it
    changed: float = 0.0  # when the status last changed (orders the rows)

    @property
    def fraction(self) -> float:
        """Share of this trial's work done (a finished or failed trial counts as all)."""
        if self.status in ("DONE", "FAILED", "STOPPED"):
            return 1.0
        return min(self.iteration / max(self.total, 1), 1.0)


class ProgressBoard:
    """Trial lines plus totals, rendered by a rich Live display."""

    def __init__(self, title: str, total: int, done_before: int, console: Optional[Console] = None) -> None:
        self.title, self.total, self.done_before = title, total, done_before
        self.lines: dict[str, TrialLine] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()  # rich refreshes from its own thread
        self._live = Live(get_renderable=self.render, console=console or Console(), refresh_per_second=2,
                          transient=False)

    def __enter__(self) -> "ProgressBoard":
        self.started = time.monotonic()
        self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.stop()
        if not self._live.console.is_terminal:  # rich ends the final table without a newline there
            self._live.console.line()

    def update(self, trial_id: str, **fields: Any) -> None:
        with self._lock:
            line = self.lines.get(trial_id)
            if line is None:  # a trial that failed before it started
                line = self.lines[trial_id] = TrialLine(trial_id, 0, status="PENDING", changed=time.monotonic())
            ended = fields.get("status", line.status) != line.status and fields["status"] in ENDED
            if "status" in fields and fields["status"] != line.status:
                line.changed = time.monotonic()
            for name, value in fields.items():
                setattr(line, name, value)
        if ended and not self._live.console.is_terminal:
            self._log_line(line)

    def _log_line(self, line: TrialLine) -> None:
        """Without a terminal (a log file, CI) the live table shows only at the
        end, so each trial that ends also gets a plain line."""
        c = self.counts()
        ended = c["done"] + c["failed"]
        self._live.console.print(f"[{ended}/{self.total}] {line.status.lower()} {line.label} "
                                 f"AP {percent(line.ap)} ({_clock(time.monotonic() - self.started)})",
                                 highlight=False, soft_wrap=True)

    def add(self, trial_id: str, label: str, total: int) -> None:
        with self._lock:
            if trial_id in self.lines:  # a retried trial starts again
                self.lines[trial_id].status = "RUNNING"
            else:
                self.lines[trial_id] = TrialLine(label, total, changed=time.monotonic())

    def counts(self) -> dict[str, int]:
        """Trials of this invocation by state (pending = not started yet)."""
        states = [line.status for line in self.lines.values()]
        done = sum(s in ("DONE", "STOPPED") for s in states)
        failed, running = states.count("FAILED"), sum(s in ("RUNNING", "RETRY") for s in states)
        return {"done": done, "running": running, "failed": failed,
                "pending": max(self.total - len(states), 0)}

    def eta_seconds(self) -> Optional[float]:
        """Time left, from the share of all iterations done so far."""
        elapsed = time.monotonic() - self.started
        progress = sum(line.fraction for line in self.lines.values()) / max(self.total, 1)
        if progress <= 0.0 or elapsed < 1.0:
            return None
        return elapsed * (1.0 - progress) / progress

    def render(self) -> Group:
        with self._lock:
            return Group(self._table(), self._summary())

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left", expand=False, box=None, pad_edge=False)
        for name, justify in (("trial", "left"), ("status", "left"), ("iter", "right"),
                              ("loss", "right"), ("AP", "right")):
            table.add_column(name, justify=justify)
        for line in self._visible_lines():
            table.add_row(line.label, Text(line.status, style=STYLES.get(line.status, "")),
                          f"{line.iteration}/{line.total}", _number(line.loss, ".4f"), percent(line.ap))
        return table

    def _visible_lines(self) -> list[TrialLine]:
        """Running and failed trials first, then the most recently finished ones."""
        rank = {"RUNNING": 0, "RETRY": 0, "FAILED": 1}
        ordered = sorted(self.lines.values(), key=lambda l: (rank.get(l.status, 2), -l.changed))
        return ordered[:MAX_ROWS]

    def _summary(self) -> Text:
        c = self.counts()
        elapsed = time.monotonic() - self.started
        eta = self.eta_seconds()
        before = f" (+{self.done_before} done before)" if self.done_before else ""
        left = "" if eta is None or c["running"] + c["pending"] == 0 else f", about {_clock(eta)} left"
        return Text(f"{c['done']} done, {c['running']} running, {c['failed']} failed, {c['pending']} pending "
                    f"of {self.total}{before}; elapsed {_clock(elapsed)}{left}")


class ProgressCallback(tune.Callback):
    """Feeds the board from Tune's events (in the driver)."""

    def __init__(self, plan: SweepPlan, board: ProgressBoard) -> None:
        self.plan, self.board = plan, board
        self.constant = constant_overrides(plan)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its run config (callbacks included) for Tune's own
        restore, which sweeps do not use; the live objects stay in the driver."""
        return {}

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.plan.search is None:
            cell = trial.config["cell"]
            overrides, seed, total = cell.overrides, cell.seed, cell.config.train.iterations
        else:  # the sampled values are enough for a label: no trial config is built here
            overrides, seed = self.plan.search_overrides(trial.config), self.plan.base_seed
            total = int(overrides.get("train.iterations", self.plan.base["train"]["iterations"]))
        self.board.add(trial.trial_id, trial_label(overrides, seed, self.constant, self.plan.seeds > 1), total)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        fields: dict[str, Any] = {"iteration": int(result.get("iteration", 0))}
        if "loss" in result:
            fields["loss"] = float(result["loss"])
        if "AP" in result:
            fields["ap"] = float(result["AP"])
        self.board.update(trial.trial_id, **fields)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        final = (trial.last_result or {}).get(FINAL_FLAG)
        self.board.update(trial.trial_id, status="DONE" if final else "STOPPED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.board.update(trial.trial_id, status="FAILED")

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.board.update(trial.trial_id, status="RETRY")


class MlflowPoller:
    """Feeds the board by reading MLflow every few seconds, for Ray Client
    sweeps, where Tune's callbacks run on the cluster and not here."""

    STATUS = {"RUNNING": "RUNNING", "FINISHED": "DONE", "FAILED": "FAILED", "KILLED": "STOPPED"}

    def __init__(self, tracker: Any, plan: SweepPlan, invocation: str, board: ProgressBoard,
                 every: float = 3.0) -> None:
        self.tracker, self.plan, self.invocation, self.board, self.every = tracker, plan, invocation, board, every
        self.constant = constant_overrides(plan)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-progress", daemon=True)

    def __enter__(self) -> "MlflowPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the final states, for the table left on screen

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def poll(self) -> None:
        """One look at this invocation's child runs."""
        for run in self.tracker.children():
            if run.data.tags.get(layout.INVOCATION) != self.invocation:
                continue
            run_id, tags = run.info.run_id, run.data.tags
            if run_id not in self.board.lines:
                overrides, seed = layout.decode_overrides(tags.get(layout.OVERRIDES)), int(tags.get(layout.SEED, 0))
                total = int(run.data.params.get("train.iterations", 0))
                self.board.add(run_id, trial_label(overrides, seed, self.constant, self.plan.seeds > 1), total)
            self.board.update(run_id, **self._fields(run))

    def _fields(self, run: Any) -> dict[str, Any]:
        metrics = run.data.metrics
        history = self.tracker.client.get_metric_history(run.info.run_id, "loss") if "loss" in metrics else []
        fields: dict[str, Any] = {"status": self.STATUS.get(run.info.status, run.info.status),
                                  "iteration": max((m.step for m in history), default=0)}
        if "loss" in metrics:
            fields["loss"] = metrics["loss"]
        if "AP" in metrics:
            fields["ap"] = metrics["AP"]
        return fields


def constant_overrides(plan: SweepPlan) -> dict[str, Any]:
    """Overrides every trial shares (loss.name=focal in gamma_alpha): not worth a column of the display."""
    if plan.search is not None:
        return dict(plan.search.fixed)
    shared = dict(plan.cells[0].overrides) if plan.cells else {}
    for cell in plan.cells[1:]:
        shared = {k: v for k, v in shared.items() if cell.overrides.get(k, _MISSING) == v}
    return shared


def trial_label(overrides: dict[str, Any], seed: int, constant: dict[str, Any], with_seed: bool) -> str:
    """What tells this trial apart: its varying overrides (floats shortened), and the seed if seeds vary."""
    parts = [f"{name.rsplit('.', 1)[-1] if _unique_leaf(name, overrides) else name}={_short(value)}"
             for name, value in sorted(overrides.items()) if constant.get(name, _MISSING) != value]
    if with_seed or not parts:
        parts.append(f"seed={seed}")
    return " ".join(parts)


def _unique_leaf(name: str, overrides: dict[str, Any]) -> bool:
    """`gamma` reads better than `loss.gamma`, unless two overrides share the leaf name."""
    leaf = name.rsplit(".", 1)[-1]
    return sum(other.rsplit(".", 1)[-1] == leaf for other in overrides) == 1


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace(" ", "")


def _number(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def percent(fraction: Optional[float]) -> str:
    """A COCO metric (a fraction) in percent with one decimal, as the tables show it: 0.114 -> "11.4"."""
    return _number(None if fraction is None else 100.0 * fraction, ".1f")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
