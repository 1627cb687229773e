"""Where the spread between the quiet phase's timing passes comes from.

The quiet phase (sweeps/timing.py) times each trained model in REPEATS passes
of QUIET_IMAGES images and reports the median pass mean with the relative
spread (slowest - fastest) / median. This script times the finished models of
a sweep again in longer passes, keeping every image's time, and prints per
model the spread the passes would have had, had each timed only its first n
images (`--lengths`), for two per-pass figures: the mean over its images
(the quiet phase's) and the median (blind to a few slow images). If the
spread fell with n, longer passes would fix it; if it stays, whole passes
ran slower (the host: compare benchmarks/host_noise.py).
Findings on the 2-core VM: docs/FIDELITY.md E14.

    python benchmarks/timing_spread.py +sweep=speed_accuracy sweep.seeds=3
    python benchmarks/timing_spread.py +sweep=speed_accuracy sweep.seeds=3 --parent <run id> --passes 8 --show-passes
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per model, not a bar

from analysis import layout
from detector.evaluate import timing_inputs
from detector.speed import load_for_timing
from sweeps.inputs import resolve_tracking_uri
from sweeps.run import plan_from
from sweeps.timing import MODEL_ARTIFACT, QUIET_IMAGES
from sweeps.tracking import SweepTracker


def image_times(model: torch.nn.Module, images: list[torch.Tensor], warmup: int, gc_off: bool) -> list[float]:
    """ms of each image after the warm-up ones (batch 1, post-processing included)."""
    for image in images[:warmup]:
        model([image])
    times = []
    if gc_off:
        gc.disable()
    try:
        for image in images[warmup:]:
            start = time.perf_counter()
            model([image])
            times.append(1000.0 * (time.perf_counter() - start))
    finally:
        gc.enable()
    return times


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


@torch.inference_mode()
def load(cell, path: Path, images: int) -> tuple[torch.nn.Module, list[torch.Tensor], int]:
    """The quiet phase's model (memory format included) and the first `images` timed images."""
    model, val_set = load_for_timing(cell.config, path, torch.device("cpu"))
    return (model, *timing_inputs(val_set, cell.config.eval, images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="+", help="the sweep, as for sweeps.run (+sweep=... sweep.seeds=...)")
    parser.add_argument("--models", type=int, default=6, help="the first N finished models")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", help="the sweep's parent run id (default: the one sweeps.run would resume)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, QUIET_IMAGES, 64, 126],
                        help="pass lengths (images) to compare; the passes time the longest")
    parser.add_argument("--show-passes", action="store_true", help="print each pass's mean too")
    parser.add_argument("--gc", choices=["on", "off"], default="on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = plan_from(args.overrides)
    tracker = SweepTracker(resolve_tracking_uri(plan.tracking_uri), plan.experiment)
    found = None if args.parent else tracker.find_parent(plan)
    if not args.parent and found is None:
        raise SystemExit(f"error: no parent run of {plan.name} ({plan.profile}) with this config: give --parent <run id>")
    parent = args.parent or found.info.run_id
    cells = {cell.key: cell for cell in plan.cells}
    runs = [run for run in tracker.children(parent)
            if run.info.status == layout.FINISHED and run.data.tags.get(layout.CELL) in cells]
    runs = list(layout.latest_per_cell(runs).values())[: args.models]
    print(f"{len(runs)} models, {args.passes} passes of {max(args.lengths)} images, {args.threads} thread(s), "
          f"gc {args.gc}; spread (slowest - fastest) / median of the passes cut to their first n images")
    header = " ".join(f"{f'mean@{n}':>8}" for n in args.lengths) + " " + \
        " ".join(f"{f'med@{n}':>8}" for n in args.lengths)
    print(f"{'depth':>5} {'size':>4} {'seed':>4} {'ms':>6} {header}")
    rows = []
    for run in runs:
        cell = cells[run.data.tags[layout.CELL]]
        with tempfile.TemporaryDirectory() as folder:
            model, images, warmup = load(cell, Path(tracker.client.download_artifacts(
                run.info.run_id, MODEL_ARTIFACT, folder)), max(args.lengths))
        with torch.inference_mode():
            image_times(model, images, warmup, args.gc == "off")  # untimed pass, as the quiet phase
            passes = [image_times(model, images, warmup, args.gc == "off") for _ in range(args.passes)]
        rows.append(spreads(passes, args.lengths))
        cfg = cell.config
        ms = statistics.median(statistics.fmean(times[:QUIET_IMAGES]) for times in passes)
        print(f"{cfg.model.depth:5d} {cfg.data.min_size:4d} {cell.seed:4d} {ms:6.1f} "
              + " ".join(f"{value:8.1%}" for value in rows[-1]))
        if args.show_passes:
            print("      pass means, ms: " + " ".join(f"{statistics.fmean(t):.1f}" for t in passes))
    for label, pick in (("median", statistics.median), ("max", max)):
        print(f"{label:>22} " + " ".join(f"{pick(r[i] for r in rows):8.1%}" for i in range(len(rows[0]))))


def spreads(passes: list[list[float]], lengths: list[int]) -> list[float]:
    """The spread between passes had each pass timed only its first n images, for each n in
    `lengths`: of the pass means, then of the pass medians."""
    return ([spread([statistics.fmean(times[:n]) for times in passes]) for n in lengths]
            + [spread([statistics.median(times[:n]) for times in passes]) for n in lengths])

if __name__ == "__main__":
    main()
