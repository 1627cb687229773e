"""The driver process of one sweep invocation: parent run, resume state, the
Tune run with its callbacks, and the bookkeeping at the end.

Resume (grid): the parent run is found again by sweep name, profile and the
hash of the base config; each cell's latest child run decides: FINISHED is
skipped, anything else (FAILED, KILLED, or RUNNING after a killed driver) is
run again and logs into that same child run. Search sweeps add
`num_samples` trials to their persistent Optuna study on every run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from mlflow.entities import Run
from ray.tune.stopper import CombinedStopper

from analysis import layout
from analysis.layout import FAILED, FINISHED, KILLED, RUNNING
from detector.config import DataConfig, TrialConfig
from sweeps import environment
from sweeps.callbacks import MlflowCallback
from sweeps.cluster import ClusterInfo, ray_cluster
from sweeps.continuation import parent_to_continue
from sweeps.estimate import estimate_line
from sweeps.failures import SweepAborted, aborted_message
from sweeps.inputs import resolve_tracking_uri
from sweeps.ledger import SweepLedger
from sweeps.lease import clear_stale_journal_lock
from sweeps.plan import Cell, SweepPlan
from sweeps.progress import MlflowPoller, ProgressBoard, ProgressCallback
from sweeps.tracking import SweepTracker
from sweeps.tuning import StopAfterTrials, grid_tuner, run_config, search_tuner

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# (cells to run, their earlier unfinished child runs by cell key, how many cells finished before)
GridResume = tuple[list[Cell], dict[str, Run], int]


@dataclass
class SweepOutcome:
    """Where the results of one invocation are, and how it went."""

    plan: SweepPlan
    parent_run_id: str
    tracking_uri: str
    counts: dict[str, int]  # finished, failed, killed (this invocation), before (earlier ones)
    interrupted: bool = False
    resumed: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # cell key -> error
    study: Optional[str] = None  # search sweeps: study name, storage, trial count
    fit_seconds: float = 0.0  # wall time of the trials phase (Ray Tune), startup and report excluded
    reports_dir: Optional[Path] = None  # set once the report is written
    report_error: Optional[str] = None
    findings: list = field(default_factory=list)  # the report's FindingResults (analysis/findings.py), once written


class SweepDriver:
    """Runs one plan on Ray and records it in MLflow."""

    def __init__(self, plan: SweepPlan, console: Any, stop_after: Optional[int] = None) -> None:
        self.plan = plan
        self.console = console
        self.stop_after = stop_after
        self.uri = resolve_tracking_uri(plan.tracking_uri)
        self.invocation = uuid.uuid4().hex  # tags the child runs this invocation touches
        self.fit_seconds = 0.0
        self.ledger: Optional[SweepLedger] = None

    def run(self) -> SweepOutcome:
        """Under the sweep's ledger (one invocation at a time per parent run and per
        study, on any host: sweeps/ledger.py), run it."""
        plan = self.plan
        study = None
        if plan.search is not None:
            from sweeps.search import study_name

            study = (plan.search.storage, study_name(plan.search, plan.name, plan.profile))
        ledger = SweepLedger(self.uri, plan.output_dir, plan.experiment, plan.name, plan.profile, plan.base_hash,
                             study=study)
        ledger.acquire(wait=plan.wait, notify=lambda line: self.console.print(line, highlight=False))
        with ledger:
            self.ledger = ledger
            return self._run()

    def _stop_if_lost(self, recorder: MlflowCallback) -> None:
        """A lease taken over under us (it expired: this driver could not renew it) stops
        the Tune run like a failed store: one line, exit 69, the same command continues."""
        if self.ledger is not None:
            self.ledger.on_lost(lambda error: setattr(recorder, "broken", recorder.broken or error))

    def _run(self) -> SweepOutcome:
        """Open the store (fails before Ray starts if unreachable), find the
        parent to resume, then start the cluster only if there is work."""
        tracker = SweepTracker(self.uri, self.plan.experiment)
        existing = parent_to_continue(tracker, self.plan,
                                      say=lambda line: self.console.print(line, highlight=False, soft_wrap=True))
        search = self.plan.search
        resume = self._grid_resume(tracker, existing) if search is None else None
        if resume is not None and existing is not None and not resume[0]:
            return self._already_done(tracker, existing.info.run_id)
        # A search's trials are priced as its base config (its space moves the loss and anchors, not the size).
        configs = ([cell.config for cell in resume[0]] if resume is not None
                   else [self.plan.base_config] * search.num_samples)
        self.console.print(estimate_line(self.plan, configs), highlight=False, soft_wrap=True)
        self._clear_journal_lock()
        with ray_cluster(self.plan.cluster, say=lambda line: self.console.print(line, highlight=False)) as info:
            resumed = tracker.open_parent(self.plan, existing)
            plan = self._with_workspace(tracker.parent_id, info)
            if resume is not None:
                outcome = self._run_grid(tracker, plan, info, resume)
            else:
                outcome = self._run_search(tracker, plan, info)
        outcome.resumed = resumed
        return outcome

    def _clear_journal_lock(self) -> None:
        """A search's journal file may hold the lock of a process killed mid-append: removed
        here, with one line, rather than waited on silently once Ray has started."""
        search = self.plan.search
        if search is not None and "://" not in search.storage:
            journal = Path(search.storage).expanduser().resolve()
            clear_stale_journal_lock(journal, say=lambda line: self.console.print(line, highlight=False,
                                                                                 soft_wrap=True))

    def _grid_resume(self, tracker: SweepTracker, existing: Optional[Run]) -> GridResume:
        """What is left of a grid: every cell for a new parent, else the cells the
        resumed parent has not finished (read once: the lease keeps other writers out)."""
        if existing is None:
            return list(self.plan.cells), {}, 0
        return grid_resume(tracker.children(existing.info.run_id), self.plan.cells)

    def _tag_environment(self, tracker: SweepTracker, data: DataConfig, info: ClusterInfo) -> dict[str, str]:
        """Versions, device, git state and data digest on the parent run; returned for the children."""
        tags = environment.run_tags(PROJECT_ROOT, data, environment.cluster_device(info.gpus))
        tracker.set_tags(tracker.parent_id, tags)
        return tags

    def _already_done(self, tracker: SweepTracker, parent_id: str) -> SweepOutcome:
        """Every cell has a FINISHED child: nothing to run, no cluster to start."""
        tracker.parent_id = parent_id
        outcome = self._outcome(tracker, {}, killed=0, before=len(self.plan.cells), failures={})
        tracker.close_parent(FINISHED, outcome.counts)
        outcome.resumed = True
        return outcome

    def _with_workspace(self, parent_id: str, info: ClusterInfo) -> SweepPlan:
        """The plan Tune gets: its trial folders under output_dir on a cluster of this
        machine (one disk), else a temp folder on each worker; its store passwords
        concealed (Tune pickles the plan into its storage; the driver keeps them)."""
        name = f"{self.plan.name}-{parent_id[:8]}"
        work_root = str(self.plan.output_dir / "trials" / name) if info.local else None
        return dataclasses.replace(self.plan.concealed(), work_root=work_root, parent_id=parent_id)

    # -- grid ----------------------------------------------------------------
    def _run_grid(self, tracker: SweepTracker, plan: SweepPlan, info: ClusterInfo,
                  resume: GridResume) -> SweepOutcome:
        pending, previous, before = resume
        if info.local:
            prepare_datasets([cell.config for cell in pending])
        env = self._tag_environment(tracker, plan.cells[0].config.data, info)
        board = self._board(len(pending), before, info)
        recorder = MlflowCallback(plan, tracker, previous, self.invocation, env)
        self._stop_if_lost(recorder)
        run = self._run_config(plan, info, recorder, self._progress(plan, board, info))
        self._fit(grid_tuner(plan, pending, run), board, tracker, plan, info, recorder)
        return self._finish(tracker, len(pending), before)

    # -- search --------------------------------------------------------------
    def _run_search(self, tracker: SweepTracker, plan: SweepPlan, info: ClusterInfo) -> SweepOutcome:
        from sweeps.search import describe_storage, make_scheduler, make_searcher, study_name, study_trial_count

        search = self.plan.search  # the driver's own: its storage keeps the password Optuna needs
        assert search is not None
        children = close_stale_children(tracker)
        before = sum(run.info.status == FINISHED for run in children)
        if info.local:
            prepare_datasets([plan.base_config])
        env = self._tag_environment(tracker, plan.base_config.data, info)
        token, dead = (self.ledger.token, frozenset(self.ledger.dead_owners)) if self.ledger else ("", frozenset())
        searcher, _ = make_searcher(search, plan.name, plan.profile, plan.base_seed, plan.base_hash, token, dead)
        if self.ledger is not None:
            self.ledger.beat_also(searcher.heartbeat)
        scheduler = make_scheduler(search, plan.base_config.train.iterations)
        board = self._board(search.num_samples, before, info)
        recorder = MlflowCallback(plan, tracker, {}, self.invocation, env)
        self._stop_if_lost(recorder)
        tuner = search_tuner(plan, searcher, scheduler,
                             self._run_config(plan, info, recorder, self._progress(plan, board, info)))
        try:
            self._fit(tuner, board, tracker, plan, info, recorder)
        finally:  # interrupted or stopped: our unfinished trials FAIL now, not after their heartbeat expires
            try:
                searcher.fail_open_trials()
            except Exception:  # noqa: BLE001 - the store is down: the heartbeat expiry fails them later
                pass
        outcome = self._finish(tracker, search.num_samples, before)
        count = study_trial_count(search, plan.name, plan.profile)
        outcome.study = f"'{study_name(search, plan.name, plan.profile)}' in {describe_storage(search)} ({count} trials)"
        return outcome

    # -- shared --------------------------------------------------------------
    def _board(self, total: int, before: int, info: ClusterInfo) -> ProgressBoard:
        where = "a local Ray cluster" if info.local else f"the Ray cluster at {info.address}"
        title = (f"{self.plan.name} ({self.plan.profile}): {total} trials on {where} "
                 f"({info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs)")
        return ProgressBoard(title, total, before, console=self.console)

    def _progress(self, plan: SweepPlan, board: ProgressBoard, info: ClusterInfo) -> list:
        """The display's Tune callback; none under Ray Client, where Tune's
        callbacks run on the cluster (the display then polls MLflow, see _fit)."""
        return [] if info.client else [ProgressCallback(plan, board)]

    def _run_config(self, plan: SweepPlan, info: ClusterInfo, recorder: MlflowCallback, display: list) -> Any:
        """Tune's settings: the MLflow recorder (whose stopper ends the run if the store
        fails), the display, and `stop_after` (a test's stand-in for Ctrl-C)."""
        callbacks, stoppers = [recorder, *display], [recorder.stopper()]
        if self.stop_after:
            stop_after = StopAfterTrials(self.stop_after)
            callbacks.append(stop_after)
            stoppers.append(stop_after)
        name = f"{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}-{self.invocation[:6]}"
        return run_config(plan, name, self._storage_path(info), callbacks, CombinedStopper(*stoppers))

    def _storage_path(self, info: ClusterInfo) -> Optional[str]:
        """Where Tune puts trial checkpoints before the driver logs them to MLflow:
        cluster.storage_path, else output_dir/ray_results (a cluster within this
        machine) or Tune's default on the node running Tune (Ray Client)."""
        configured = self.plan.cluster.get("storage_path")
        if configured:
            return str(configured)
        return None if info.client else str(self.plan.output_dir / "ray_results")

    def _fit(self, tuner: Any, board: ProgressBoard, tracker: SweepTracker, plan: SweepPlan,
             info: ClusterInfo, recorder: MlflowCallback) -> None:
        """Tuner.fit under the live display. A first Ctrl-C makes Tune stop and
        return; a second one raises KeyboardInterrupt: runs are closed either way.
        A store that failed under the recorder, or any callback's error, raises
        SweepAborted (one line; this invocation's open runs marked KILLED where
        the store answers), never Tune's traceback and its advice to call Tuner.restore."""
        poller = MlflowPoller(tracker, plan, self.invocation, board) if info.client else None
        start = time.perf_counter()
        try:
            with board, (poller or contextlib.nullcontext()):
                results = tuner.fit()
        except KeyboardInterrupt:
            tally = close_and_tally(tracker, self.invocation)
            tracker.close_parent(KILLED, tally.counts)
            raise
        except Exception as error:  # noqa: BLE001 - a callback's (MLflow, disk): one line, resumable
            raise SweepAborted(aborted_message(error, marked=mark_killed(tracker, self.invocation))) from error
        finally:
            self.fit_seconds = time.perf_counter() - start
        if info.local:
            _remove_tune_copies(results)
        if recorder.broken is not None:
            raise SweepAborted(aborted_message(recorder.broken, marked=mark_killed(tracker, self.invocation)))

    def _finish(self, tracker: SweepTracker, planned: int, before: int) -> SweepOutcome:
        """Close the runs left open, end the parent, and sum up (from MLflow: the
        one record of what this invocation did, wherever Tune ran)."""
        tally = close_and_tally(tracker, self.invocation)
        not_started = max(planned - tally.touched, 0)
        outcome = self._outcome(tracker, tally.counts, tally.counts["killed"] + not_started, before, tally.failures)
        tracker.close_parent(KILLED if outcome.interrupted else FINISHED, outcome.counts)
        return outcome

    def _outcome(self, tracker: SweepTracker, counts: dict[str, int], killed: int, before: int,
                 failures: dict[str, str]) -> SweepOutcome:
        counts = {"finished": counts.get("finished", 0), "failed": counts.get("failed", 0),
                  "killed": killed, "before": before}
        return SweepOutcome(plan=self.plan, parent_run_id=tracker.parent_id, tracking_uri=self.uri, counts=counts,
                            interrupted=killed > 0, failures=dict(failures), fit_seconds=self.fit_seconds)


@dataclass
class Tally:
    """The child runs one invocation touched, by outcome."""

    counts: dict[str, int]  # finished, failed, killed
    failures: dict[str, str]  # cell key -> error
    touched: int


def close_and_tally(tracker: SweepTracker, invocation: str) -> Tally:
    """Child runs of this invocation still RUNNING (the sweep was interrupted)
    become KILLED; then count them all by status."""
    runs = drop_orphans(tracker, [r for r in tracker.children() if r.data.tags.get(layout.INVOCATION) == invocation])
    for run in runs:
        if run.info.status == RUNNING:
            tracker.finish_child(run.info.run_id, KILLED)
    statuses = [KILLED if r.info.status == RUNNING else r.info.status for r in runs]
    failures = {r.data.tags.get(layout.CELL, r.info.run_id): r.data.tags.get(layout.ERROR, "")
                for r in runs if r.info.status == FAILED}
    counts = {"finished": statuses.count(FINISHED), "failed": statuses.count(FAILED), "killed": statuses.count(KILLED)}
    return Tally(counts, failures, len(runs))


def drop_orphans(tracker: SweepTracker, runs: list[Run]) -> list[Run]:
    """`runs` without the orphans of replayed create_run requests, which are deleted.

    MLflow's client replays a request whose response was lost; a replayed
    create_run answered after `start_child` looked (a slow server) leaves a run
    no trial uses: no params, and another run of this invocation for its cell
    (and search trial) that has them. Counted, it would make a complete sweep
    look interrupted."""
    def slot(run: Run) -> tuple[Optional[str], Optional[str]]:
        return run.data.tags.get(layout.CELL), run.data.tags.get(layout.TRIAL_ID)

    used = {slot(run) for run in runs if run.data.params}
    kept = []
    for run in runs:
        if not run.data.params and slot(run) in used:
            tracker.client.delete_run(run.info.run_id)
        else:
            kept.append(run)
    return kept


def mark_killed(tracker: SweepTracker, invocation: str) -> bool:
    """After a service failed mid-sweep: this invocation's open runs and the parent
    become KILLED, where the store still answers. Returns whether that worked; if
    not, they stay RUNNING, which the next invocation resumes the same way."""
    try:
        tally = close_and_tally(tracker, invocation)
        tracker.close_parent(KILLED, tally.counts)
    except Exception:  # noqa: BLE001 - the store is what failed; the caller says so in its line
        return False
    return True


def grid_resume(children: list[Run], cells: Sequence[Cell]) -> GridResume:
    """(cells to run, their earlier unfinished child runs by cell key, cells already finished)."""
    latest = layout.latest_per_cell(children)
    finished = {key for key, run in latest.items() if run.info.status == FINISHED}
    pending = [cell for cell in cells if cell.key not in finished]
    previous = {cell.key: latest[cell.key] for cell in pending if cell.key in latest}
    return pending, previous, len(cells) - len(pending)


def close_stale_children(tracker: SweepTracker) -> list[Run]:
    """Search trials of a killed driver stay RUNNING in MLflow; they will not
    continue (Optuna proposes new points), so mark them KILLED."""
    children = tracker.children()
    for run in children:
        if run.info.status == RUNNING:
            tracker.finish_child(run.info.run_id, KILLED)
    return children


def prepare_datasets(configs: Sequence[TrialConfig]) -> None:
    """Write each synthetic dataset, and each synthetically pretrained backbone
    (model.pretrained=synthetic), the trials need once, here, before trials
    start: parallel trials would otherwise each make the same files.
    Only for a cluster on this machine (other nodes have their own disks)."""
    from detector.config import SYNTHETIC_WEIGHTS
    from detector.data.synthetic import ensure_synthetic_dataset
    from detector.pretrain import ensure_pretrained

    seen: set[str] = set()
    for config in configs:
        key = json.dumps(dataclasses.asdict(config.data), sort_keys=True)
        if config.data.kind == "synthetic" and key not in seen:
            seen.add(key)
            ensure_synthetic_dataset(config.data)
        if config.model.pretrained == SYNTHETIC_WEIGHTS:
            ensure_pretrained(config.model, config.data)  # returns at once when cached


def _remove_tune_copies(results: Any) -> None:
    """Tune's copy of each trial (its checkpoint) is in MLflow now; drop it to save disk."""
    path = Path(results.experiment_path) if getattr(results, "experiment_path", None) else None
    if path is not None and path.is_dir():
        shutil.rmtree(path)
