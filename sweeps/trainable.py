"""The Ray Tune function trainable: one cell of the sweep in a Ray worker.

It only computes and calls `tune.report`; the driver's callback does all the
MLflow writing (one process per SQLite file). Exceptions propagate so Tune
marks the trial ERROR (and retries it if trial.max_failures allows).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import ray
from ray import tune

from sweeps.plan import Cell, SweepPlan

FINAL_FLAG = "sweep_final"  # set on the last report: the trial returned normally


def train_cell(config: dict[str, Any], plan: SweepPlan) -> None:
    """Run the cell, forward every report to Tune (with the trial's training
    checkpoint whenever it has a new one), and end with the returned metrics
    plus the workdir's outputs as the final checkpoint.

    A retried trial (its worker died; trial.max_failures) starts from the last
    checkpoint Tune holds, on whichever node it lands, and reports
    `resumed_from`: the iteration it continued from. The training checkpoint
    stays in the workdir until the driver has stored the result (it then
    removes the folder), so a kill in between does not mean training again."""
    cell = plan.cell_of(config)
    workdir = plan.workdir(cell, tune.get_context().get_trial_id())
    workdir.mkdir(parents=True, exist_ok=True)
    resumed_from = restore_checkpoint(tune.get_checkpoint(), workdir)
    reporter = CheckpointingReport(workdir)
    if resumed_from is not None:
        reporter({"iteration": resumed_from, "resumed_from": resumed_from})
    result = run_cell(cell, plan, workdir, reporter)
    final = {**result, FINAL_FLAG: 1, "node_id": ray.get_runtime_context().get_node_id()}
    with outputs_folder(workdir) as outputs:
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(outputs)))


def restore_checkpoint(checkpoint: Optional[tune.Checkpoint], workdir: Path) -> Optional[int]:
    """The iteration the trial continues from, or None for a fresh start.

    Two candidates: the workdir's own training checkpoint (the folder belongs to
    this cell's identity and config, `SweepPlan.workdir`, so it is this trial's
    from an earlier try on this node) and the one Tune holds (a retry that landed
    on another node). The further one wins; an unreadable one is set aside
    (`detector.trial.read_checkpoint`)."""
    from detector.trial import CHECKPOINT_NAME, read_checkpoint

    target = workdir / CHECKPOINT_NAME
    local = _iteration(read_checkpoint(target))
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            source = Path(folder) / CHECKPOINT_NAME  # (a final checkpoint holds no training state)
            held = _iteration(read_checkpoint(source)) if source.is_file() else None
            if held is not None and (local is None or held > local):
                shutil.copyfile(source, target)
                local = held
    return local


def _iteration(state: Optional[dict]) -> Optional[int]:
    """The iteration a training state was saved at (None: no readable checkpoint)."""
    return None if state is None else int(state["iteration"])


@contextmanager
def outputs_folder(workdir: Path) -> Iterator[Path]:
    """The trial's outputs for its final Tune checkpoint (model.pt, metrics.json, the
    pictures): the workdir without its training state, which the driver never logs
    and Tune would otherwise copy to its storage once more (hard links, not copies)."""
    from detector.trial import CHECKPOINT_NAME

    with tempfile.TemporaryDirectory(dir=workdir.parent, prefix=f".{workdir.name}-final-") as folder:
        outputs = Path(folder) / workdir.name
        shutil.copytree(workdir, outputs, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(f"{Path(CHECKPOINT_NAME).stem}.*"))
        yield outputs


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (no bytes copied), or a copy where the filesystem has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class CheckpointingReport:
    """tune.report, with the trial's training checkpoint attached whenever the
    trainer has written a new one since the last report (Tune copies it to its
    storage, which every node reaches)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.seen: Optional[int] = None  # mtime_ns of the checkpoint last handed to Tune

    def __call__(self, metrics: dict[str, Any]) -> None:
        from detector.trial import CHECKPOINT_NAME

        path = self.workdir / CHECKPOINT_NAME
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        if stamp is None or stamp == self.seen:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(dir=self.workdir) as folder:
            shutil.copyfile(path, Path(folder) / CHECKPOINT_NAME)  # the trainer replaces it atomically
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        self.seen = stamp


def run_cell(cell: Cell, plan: SweepPlan, workdir: Path, report: Callable[[dict], None]) -> dict[str, Any]:
    """The cell's trial with `report` for its progress; returns its final metrics (with `iteration`)."""
    import torch  # here, not at module level: the driver never needs torch

    # Ray gives a worker the cores it asked for; torch must not use more.
    torch.set_num_threads(max(1, math.floor(plan.cluster["cpus_per_trial"])))
    forward = _Forward(report, cell.config.train.iterations)
    result = plan.trial_function_object()(cell.config, workdir=workdir, report=forward)
    return {**result, "iteration": int(result.get("iterations", forward.iteration))}


class _Forward:
    """The `report` given to run_trial: passes metrics on, keeping the last
    iteration in case the trial's result does not name it.

    The evaluation at the last iteration is not passed on: the final result
    carries the same metrics, and a scheduler (ASHA) seeing the metric there
    could stop the trial between the two, losing its final result."""

    def __init__(self, report: Callable[[dict], None], iterations: int) -> None:
        self.report = report
        self.iterations = iterations
        self.iteration = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.iteration = int(metrics.get("iteration", self.iteration))
        if self.iteration >= self.iterations and "loss" not in metrics:
            return  # the last evaluation: the final result repeats it
        self.report(dict(metrics))
