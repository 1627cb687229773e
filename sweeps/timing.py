"""The quiet timing phase: ms/image of every finished model, measured after the trials.

A trial's own ms/image is taken while its siblings train on the other cores
(measured: 96 px timed slower than 128 px on 2 cores), so sweeps whose table
plots speed (`timing: quiet`, e.g. speed_accuracy) time each finished model
again once the trials are over and Ray is shut down: one model at a time,
with the trial's thread count, REPEATS passes of QUIET_IMAGES images; the
median pass replaces `ms_per_image` (logged later at the same step, so it is
the run's latest value) and `ms_per_image_spread` says how much the passes
differ. The protocol (memory format, images x passes) is tagged on the run; a
model timed under another protocol is timed again by the next invocation
(re-running a finished sweep re-times it and rebuilds the report).

Only for a cluster of this machine: on a remote cluster the models live on
other nodes (and GPUs); their in-trial figure stands, and the tag says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from analysis import layout
from detector.config import TrialConfig
from sweeps.plan import SweepPlan

REPEATS = 5
# A pass of 32 images takes ~1 s on a quiet 2-core machine, long enough for passes to agree:
# passes of ~0.3 s (10 images) spread up to 21% (speed_accuracy, 3 seeds; docs/FIDELITY.md E13).
QUIET_IMAGES = 32


def needs_quiet_timing(plan: SweepPlan) -> bool:
    return plan.timing == layout.QUIET_TIMING and not plan.cluster.get("address")


def time_quietly(plan: SweepPlan, tracker: Any, parent_id: str, say: Callable[[str], None]) -> int:
    """Time every FINISHED child of the parent not timed quietly under the current protocol yet;
    returns how many were timed."""
    from detector.speed import measure_speed

    cells = {cell.key: cell for cell in plan.cells}
    runs = [run for run in layout.latest_per_cell(tracker.children(parent_id)).values()
            if run.info.status == layout.FINISHED and run.data.tags.get(layout.CELL) in cells
            and not _timed_by(run, protocol(cells[run.data.tags[layout.CELL]].config))]
    if runs:
        say(f"timing {len(runs)} model(s) in a quiet phase ({REPEATS} passes each)")
    threads = max(1, int(plan.cluster["cpus_per_trial"]))
    for run in runs:
        cell = cells[run.data.tags[layout.CELL]]
        with tempfile.TemporaryDirectory() as folder:
            path = tracker.client.download_artifacts(run.info.run_id, layout.MODEL_FILE, folder)
            speed = measure_speed(cell.config, Path(path), REPEATS, threads, images=QUIET_IMAGES)
        step = int(cell.config.train.iterations)
        tracker.log_metrics(run.info.run_id, {layout.SPEED_METRIC: speed.median,
                                              layout.SPEED_SPREAD: speed.spread}, step=step)
        tracker.set_tags(run.info.run_id, {layout.TIMING: layout.QUIET_TIMING,
                                           layout.TIMING_PROTOCOL: protocol(cell.config)})
    return len(runs)


def protocol(config: TrialConfig) -> str:
    """How the quiet phase times a model, e.g. "channels_last,32x5" (memory format, images x passes)."""
    memory = "channels_last" if config.eval.channels_last else "nchw"
    return f"{memory},{QUIET_IMAGES}x{REPEATS}"


def _timed_by(run: Any, current: str) -> bool:
    """The run was timed quietly under the current protocol (a run without the protocol tag is not)."""
    tags = run.data.tags
    return tags.get(layout.TIMING) == layout.QUIET_TIMING and tags.get(layout.TIMING_PROTOCOL) == current
