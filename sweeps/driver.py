"""The driver process of one sweep invocation: parent run, resume state, the
Tune experiment with its callbacks, and the bookkeeping at the end.

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
from pathlib import Path
from typing import Any, Optional

from mlflow.entities import Run
from omegaconf import OmegaConf

from detector.config import TrialConfig
from sweeps.callbacks import MlflowCallback
from sweeps.cluster import ClusterInfo, ray_cluster
from sweeps.plan import SweepPlan
from sweeps.progress import MlflowPoller, ProgressBoard, ProgressCallback
from sweeps.outcome import SweepOutcome
from sweeps.space import Cell
from sweeps.tracking import FAILED, FINISHED, KILLED, RUNNING, ParentIdentity, SweepTracker, git_commit, \
    resolve_tracking_uri
from sweeps.tuning import Experiment, StopAfterTrials, grid_tuner, search_tuner
from sweeps.validate import Prepared

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SweepDriver:
    """Runs one prepared sweep on Ray and records it in MLflow."""

    def __init__(self, prepared: Prepared, console: Any, stop_after: Optional[int] = None) -> None:
        self.p = prepared
        self.console = console
        self.stop_after = stop_after
        cfg = prepared.cfg
        self.uri = resolve_tracking_uri(cfg.tracking.uri)
        self.output_dir = Path(cfg.output_dir).resolve()
        self.reports_dir = Path(cfg.reports_dir).resolve() / prepared.spec.name
        self.fit_seconds = 0.0

    def run(self) -> SweepOutcome:
        """Open the store (fails before Ray starts if unreachable), find the
        parent to resume, then start the cluster only if there is work."""
        tracker = SweepTracker(self.uri, self.p.cfg.tracking.experiment)
        existing = tracker.find_parent(self._identity()) if self.p.spec.resume else None
        if existing is not None and self.p.spec.kind == "grid":
            if not grid_resume(tracker.children(existing.info.run_id), self.p.cells)[0]:
                return self._already_done(tracker, existing.info.run_id)
        with ray_cluster(self.p.cluster) as info:
            resumed = tracker.open_parent(self._identity(), existing, self.p.base,
                                          OmegaConf.to_yaml(self.p.cfg, resolve=True), git_commit(PROJECT_ROOT))
            plan = self._plan(tracker.parent_id, info)
            runner = self._run_grid if self.p.spec.kind == "grid" else self._run_search
            outcome = runner(tracker, plan, info)
        outcome.resumed = resumed
        return outcome

    def _already_done(self, tracker: SweepTracker, parent_id: str) -> SweepOutcome:
        """Every cell has a FINISHED child: nothing to run, no cluster to start."""
        tracker.parent_id = parent_id
        outcome = self._outcome(tracker, {}, killed=0, before=len(self.p.cells), failures={})
        tracker.close_parent(FINISHED, outcome.counts)
        outcome.resumed = True
        return outcome

    def _identity(self) -> ParentIdentity:
        spec = self.p.spec
        return ParentIdentity(spec.name, self.p.profile, spec.kind, self.p.base_hash)

    def _plan(self, parent_id: str, info: ClusterInfo) -> SweepPlan:
        name = f"{self.p.spec.name}-{parent_id[:8]}"
        # A cluster of this machine shares its disk: trial folders go under
        # output_dir. Elsewhere each worker uses its own temp folder.
        work_root = str(self.output_dir / "trials" / name) if info.local else None
        return SweepPlan(base=self.p.base, spec=self.p.spec, name=name, invocation=uuid.uuid4().hex,
                         work_root=work_root, cells={cell.key: cell for cell in self.p.cells},
                         cpus_per_trial=float(self.p.cluster["cpus_per_trial"]),
                         trial_function=str(self.p.cfg.trial.function))

    # -- grid ----------------------------------------------------------------
    def _run_grid(self, tracker: SweepTracker, plan: SweepPlan, info: ClusterInfo) -> SweepOutcome:
        pending, previous, before = grid_resume(tracker.children(), self.p.cells)
        if info.local:
            prepare_datasets(plan, pending)
        board = self._board(len(pending), before, info)
        callbacks = [MlflowCallback(plan, tracker, previous), *self._progress(plan, board, info)]
        self._fit(grid_tuner(plan, pending, self._experiment(plan, info, callbacks)), board, tracker, plan, info)
        return self._finish(tracker, plan, len(pending), before)

    # -- search --------------------------------------------------------------
    def _run_search(self, tracker: SweepTracker, plan: SweepPlan, info: ClusterInfo) -> SweepOutcome:
        from sweeps.search import describe_storage, make_scheduler, make_searcher, study_name, study_trial_count

        spec = self.p.spec
        children = close_stale_children(tracker)
        before = sum(run.info.status == FINISHED for run in children)
        if info.local:
            prepare_datasets(plan, [Cell({}, plan.base_seed)])
        searcher, _ = make_searcher(spec, self.p.profile, plan.base_seed)
        scheduler = make_scheduler(spec, int(plan.base["train"]["iterations"]))
        board = self._board(spec.num_samples, before, info)
        callbacks = [MlflowCallback(plan, tracker, previous={}), *self._progress(plan, board, info)]
        tuner = search_tuner(plan, searcher, scheduler, spec.num_samples, self._experiment(plan, info, callbacks))
        self._fit(tuner, board, tracker, plan, info)
        outcome = self._finish(tracker, plan, spec.num_samples, before)
        count = study_trial_count(spec, self.p.profile)
        outcome.study = f"'{study_name(spec, self.p.profile)}' in {describe_storage(spec)} ({count} trials)"
        return outcome

    # -- shared --------------------------------------------------------------
    def _board(self, total: int, before: int, info: ClusterInfo) -> ProgressBoard:
        where = "a local Ray cluster" if info.local else f"the Ray cluster at {info.address}"
        title = (f"{self.p.spec.name} ({self.p.profile}): {total} trials on {where} "
                 f"({info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs)")
        return ProgressBoard(title, total, before, console=self.console)

    def _progress(self, plan: SweepPlan, board: ProgressBoard, info: ClusterInfo) -> list:
        """The display's Tune callback; none under Ray Client, where Tune's
        callbacks run on the cluster (the display then polls MLflow, see _fit)."""
        return [] if info.client else [ProgressCallback(plan, board)]

    def _experiment(self, plan: SweepPlan, info: ClusterInfo, callbacks: list) -> Experiment:
        stopper = StopAfterTrials(self.stop_after) if self.stop_after else None
        return Experiment(
            name=f"{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=self._storage_path(info),
            cpus_per_trial=float(self.p.cluster["cpus_per_trial"]),
            gpus_per_trial=float(self.p.cluster.get("gpus_per_trial") or 0),
            max_failures=int(self.p.cfg.trial.max_failures),
            callbacks=[*callbacks, stopper] if stopper else callbacks,
            stopper=stopper,
        )

    def _storage_path(self, info: ClusterInfo) -> Optional[str]:
        """Where Tune puts trial checkpoints before the driver logs them to MLflow:
        cluster.storage_path, else output_dir/ray_results (a cluster within this
        machine) or Tune's default on the node running Tune (Ray Client)."""
        configured = self.p.cluster.get("storage_path")
        if configured:
            return str(configured)
        return None if info.client else str(self.output_dir / "ray_results")

    def _fit(self, tuner: Any, board: ProgressBoard, tracker: SweepTracker, plan: SweepPlan,
             info: ClusterInfo) -> None:
        """Tuner.fit under the live display. A first Ctrl-C makes Tune stop and
        return; a second one raises KeyboardInterrupt: runs are closed either way."""
        poller = MlflowPoller(tracker, plan, board) if info.client else None
        start = time.perf_counter()
        try:
            with board, (poller or contextlib.nullcontext()):
                results = tuner.fit()
        except KeyboardInterrupt:
            tally = close_and_tally(tracker, plan.invocation)
            tracker.close_parent(KILLED, tally.counts)
            raise
        finally:
            self.fit_seconds = time.perf_counter() - start
        if info.local:
            _remove_tune_copies(results)

    def _finish(self, tracker: SweepTracker, plan: SweepPlan, planned: int, before: int) -> SweepOutcome:
        """Close the runs left open, end the parent, and sum up (from MLflow: the
        one record of what this invocation did, wherever Tune ran)."""
        tally = close_and_tally(tracker, plan.invocation)
        not_started = max(planned - tally.touched, 0)
        outcome = self._outcome(tracker, tally.counts, tally.counts["killed"] + not_started, before, tally.failures)
        tracker.close_parent(KILLED if outcome.interrupted else FINISHED, outcome.counts)
        return outcome

    def _outcome(self, tracker: SweepTracker, counts: dict[str, int], killed: int, before: int,
                 failures: dict[str, str]) -> SweepOutcome:
        counts = {"finished": counts.get("finished", 0), "failed": counts.get("failed", 0),
                  "killed": killed, "before": before}
        return SweepOutcome(sweep=self.p.spec.name, profile=self.p.profile, parent_run_id=tracker.parent_id,
                            experiment=str(self.p.cfg.tracking.experiment), tracking_uri=self.uri,
                            reports_dir=self.reports_dir, counts=counts, interrupted=killed > 0,
                            failures=dict(failures), fit_seconds=self.fit_seconds)


@dataclasses.dataclass
class Tally:
    """The child runs one invocation touched, by outcome."""

    counts: dict[str, int]  # finished, failed, killed
    failures: dict[str, str]  # cell key -> error
    touched: int


def close_and_tally(tracker: SweepTracker, invocation: str) -> Tally:
    """Child runs of this invocation still RUNNING (the sweep was interrupted)
    become KILLED; then count them all by status."""
    runs = [r for r in tracker.children() if r.data.tags.get("sweep.invocation") == invocation]
    for run in runs:
        if run.info.status == RUNNING:
            tracker.finish_child(run.info.run_id, KILLED)
    statuses = [KILLED if r.info.status == RUNNING else r.info.status for r in runs]
    failures = {r.data.tags.get("sweep.cell", r.info.run_id): r.data.tags.get("error", "")
                for r in runs if r.info.status == FAILED}
    counts = {"finished": statuses.count(FINISHED), "failed": statuses.count(FAILED), "killed": statuses.count(KILLED)}
    return Tally(counts, failures, len(runs))


def grid_resume(children: list[Run], cells: list[Cell]) -> tuple[list[Cell], dict[str, Run], int]:
    """(cells to run, their earlier unfinished child runs by cell key, cells already finished)."""
    latest = latest_child_per_cell(children)
    finished = {key for key, run in latest.items() if run.info.status == FINISHED}
    pending = [cell for cell in cells if cell.key not in finished]
    previous = {cell.key: latest[cell.key] for cell in pending if cell.key in latest}
    return pending, previous, len(cells) - len(pending)


def latest_child_per_cell(children: list[Run]) -> dict[str, Run]:
    """One run per `sweep.cell`: a FINISHED one if any, else the latest started."""
    chosen: dict[str, Run] = {}
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get("sweep.cell")
        old = chosen.get(key) if key else None
        if key and (old is None or run.info.status == FINISHED or old.info.status != FINISHED):
            chosen[key] = run
    return chosen


def close_stale_children(tracker: SweepTracker) -> list[Run]:
    """Search trials of a killed driver stay RUNNING in MLflow; they will not
    continue (Optuna proposes new points), so mark them KILLED."""
    children = tracker.children()
    for run in children:
        if run.info.status == RUNNING:
            tracker.finish_child(run.info.run_id, KILLED)
    return children


def prepare_datasets(plan: SweepPlan, cells: list[Cell]) -> None:
    """Write each synthetic dataset the cells need once, here, before trials
    start: parallel trials would otherwise each generate the same files.
    Only for a cluster on this machine (other nodes have their own disks)."""
    from detector.data.synthetic import ensure_synthetic_dataset

    seen: set[str] = set()
    for cell in cells:
        data = TrialConfig.from_dict(cell.trial_values(plan.base)).data
        key = json.dumps(dataclasses.asdict(data), sort_keys=True)
        if data.kind == "synthetic" and key not in seen:
            seen.add(key)
            ensure_synthetic_dataset(data)


def _remove_tune_copies(results: Any) -> None:
    """Tune's copy of each trial (its checkpoint) is in MLflow now; drop it to save disk."""
    path = Path(results.experiment_path) if getattr(results, "experiment_path", None) else None
    if path is not None and path.is_dir():
        shutil.rmtree(path)
