"""What the sweep machinery costs: orchestration seconds per trial, and the
throughput of parallel trials against one at a time.

1. Overhead. Trivial trials that report like a cpu-profile trial (the same
   number of training and evaluation reports, a checkpoint of the cpu model's
   size) run through the whole machinery (Hydra config, Ray Tune on a local
   cluster, the MLflow callback, checkpoints, the progress display), one at a
   time (cluster.num_cpus=1). Per-trial overhead = the slope of wall time
   between a 1-trial and a 21-trial sweep (fixed costs such as starting Ray
   cancel out), minus the trial's own time when called directly.
   Aim: < 2 s and < 3 % of a cpu-profile trial (~60 s).
2. Parallel efficiency. Trials of a fixed amount of single-core work, through
   the sweep on 1 CPU and on all CPUs: efficiency = speedup / CPUs, over the
   span from the first trial's start to the last one's end (also printed:
   with Tune's start-up, and against calling the trials directly).
   Aim: >= 90 % on 2 cores. Other processes on the machine lower it: the
   load average is printed with the figures.

    python benchmarks/sweep_overhead.py                 # both, ~4 minutes on 2 cores
    python benchmarks/sweep_overhead.py --work-seconds 20 --trials 8 --skip-parallel
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(PROJECT), str(HERE)]  # run as a plain script
# The local Ray cluster's workers inherit this: they import the trial functions below.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(PROJECT), os.environ.get("PYTHONPATH")) if p)

CPU_TRIAL_SECONDS = 60.0  # a cpu-profile trial on one core (README: ~1 min)
MODEL_BYTES_ENV = "SWEEP_BENCH_MODEL_BYTES"
WORK_ENV = "SWEEP_BENCH_WORK_STEPS"
SIX = ("AP", "AP50", "AP75", "APS", "APM", "APL")


# -- trial functions (called by the Ray workers through trial.function) ---------------
def trivial_trial(cfg, *, workdir: Path, report) -> dict:
    """Reports like a real trial of `cfg` (every log_every, each eval_every, the
    final evaluation) and writes a model.pt of the cpu model's size; no training."""
    for iteration in range(cfg.train.log_every, cfg.train.iterations + 1, cfg.train.log_every):
        report({"iteration": iteration, "loss": 1.0 / iteration, "loss_cls": 0.5 / iteration,
                "loss_box": 0.5 / iteration, "lr": cfg.train.lr})
        if cfg.train.eval_every and iteration % cfg.train.eval_every == 0:
            report({"iteration": iteration, **{name: 0.1 for name in SIX}})
    return _finish(cfg, Path(workdir), report)


def busy_trial(cfg, *, workdir: Path, report) -> dict:
    """A fixed amount of single-core work (matrix products), then a trivial finish.
    Reports about as often per second of work as a cpu-profile trial (26 in ~60 s)."""
    import torch

    torch.set_num_threads(1)
    steps = int(os.environ[WORK_ENV])
    every = max(1, steps // 4)
    a = torch.randn(256, 256)
    for step in range(1, steps + 1):
        a = torch.tanh(a @ a)
        if step % every == 0:
            report({"iteration": step, "loss": float(a.abs().mean()), "loss_cls": 0.0, "loss_box": 0.0, "lr": 0.0})
    return _finish(cfg, Path(workdir), report)


def _finish(cfg, workdir: Path, report) -> dict:
    metrics = {name: 0.1 for name in SIX}
    report({"iteration": cfg.train.iterations, **metrics})
    (workdir / "model.pt").write_bytes(os.urandom(int(os.environ.get(MODEL_BYTES_ENV, "1000"))))
    result = {**metrics, "ms_per_image": 1.0, "iterations": float(cfg.train.iterations)}
    (workdir / "metrics.json").write_text(json.dumps(result))
    return result


# -- measurements ------------------------------------------------------------------------
def sweep_seconds(root: Path, function: str, extra: list[str]) -> tuple[float, float, float]:
    """(wall time, trials-phase time, first trial start to last trial end) of one
    gamma_alpha sweep (cpu profile) through sweeps.run.main_with."""
    from sweeps.run import main_with

    name = f"s{len(list(root.iterdir()))}"
    overrides = ["+sweep=gamma_alpha", f"trial.function={function}", f"tracking.uri=sqlite:///{root}/mlflow.db",
                 f"tracking.experiment={name}", f"output_dir={root}/{name}", f"reports_dir={root}/{name}/reports",
                 f"data.cache_dir={root}/data", *extra]
    start = time.perf_counter()
    outcome = main_with(overrides, quiet=True)
    seconds = time.perf_counter() - start
    assert outcome.counts["failed"] == 0 and not outcome.interrupted, outcome
    return seconds, outcome.fit_seconds, trials_span(outcome)


def trials_span(outcome) -> float:
    """Seconds from the first trial's start to the last trial's end (MLflow run times):
    the trials phase without Tune's start-up (worker processes, imports)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(outcome.tracking_uri)
    experiment = client.get_experiment_by_name(outcome.experiment)
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")
    return (max(r.info.end_time for r in children) - min(r.info.start_time for r in children)) / 1000.0


def direct_seconds(function, cfg, trials: int) -> float:
    """The same trials called in this process, no machinery."""
    start = time.perf_counter()
    for _ in range(trials):
        with tempfile.TemporaryDirectory() as workdir:
            function(cfg, workdir=Path(workdir), report=lambda metrics: None)
    return (time.perf_counter() - start) / trials


def cpu_trial_config():
    """The cpu profile's trial config (what the default sweep runs)."""
    from sweeps.compose import trial_config

    return trial_config([])


def model_bytes(cfg) -> int:
    """Size of the cpu model's saved state dict (the checkpoint every trial ships)."""
    import io

    import torch

    from detector.model import build_model

    buffer = io.BytesIO()
    torch.save(build_model(cfg.model, cfg.loss, cfg.data.synthetic.num_classes).state_dict(), buffer)
    return buffer.tell()


def overhead(root: Path, many: int) -> dict[str, float]:
    """Per-trial orchestration seconds from a 1-trial and a `many`-trial sweep,
    one trial at a time: the slope of the trials phase, less the trial itself."""
    cfg = cpu_trial_config()
    os.environ[MODEL_BYTES_ENV] = str(model_bytes(cfg))
    one = ["cluster.num_cpus=1", "sweep.grid={loss.name:[focal],loss.gamma:[2.0],loss.alpha:[0.25]}"]
    lots = ["cluster.num_cpus=1", f"sweep.seeds={max(1, many // 21)}"]
    wall_one, fit_one, _ = sweep_seconds(root, "sweep_overhead:trivial_trial", one)
    wall_many, fit_many, _ = sweep_seconds(root, "sweep_overhead:trivial_trial", lots)
    trials = 21 * max(1, many // 21)
    direct = direct_seconds(trivial_trial, cfg, 3)
    per_trial = (fit_many - fit_one) / (trials - 1) - direct
    return {"trials": trials, "fit_1": fit_one, "fit_n": fit_many, "direct": direct, "per_trial": per_trial,
            "first_trial": fit_one - direct, "fixed": wall_one - fit_one,
            "model_mb": int(os.environ[MODEL_BYTES_ENV]) / 1e6}


def parallel(root: Path, trials: int, work_seconds: float) -> dict[str, float]:
    """Speedup of the trials phase: `trials` busy trials on all CPUs against one CPU."""
    cfg = cpu_trial_config()
    os.environ[WORK_ENV] = str(calibrate(work_seconds))
    os.environ[MODEL_BYTES_ENV] = "1000"
    cells = f"sweep.seeds={trials}", "sweep.grid={loss.name:[focal],loss.gamma:[2.0],loss.alpha:[0.25]}"
    cpus = os.cpu_count() or 1
    direct = direct_seconds(busy_trial, cfg, 1)
    _, t_1, span_1 = sweep_seconds(root, "sweep_overhead:busy_trial", ["cluster.num_cpus=1", *cells])
    _, t_n, span_n = sweep_seconds(root, "sweep_overhead:busy_trial", [f"cluster.num_cpus={cpus}", *cells])
    return {"trials": trials, "cpus": cpus, "direct": direct, "fit_1": t_1, "fit_n": t_n,
            "efficiency": t_1 / t_n / cpus, "span_1": span_1, "span_n": span_n,
            "steady_efficiency": span_1 / span_n / cpus, "efficiency_vs_direct": trials * direct / (span_n * cpus)}


def calibrate(seconds: float) -> int:
    """Work steps that take about `seconds` on one core here."""
    import torch

    torch.set_num_threads(1)
    a, steps, start = torch.randn(256, 256), 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        a, steps = torch.tanh(a @ a), steps + 1
    return int(steps * seconds / (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--many", type=int, default=21, help="trials in the large overhead sweep (multiple of 21)")
    parser.add_argument("--trials", type=int, default=6, help="busy trials in the parallel test")
    parser.add_argument("--work-seconds", type=float, default=10.0, help="single-core seconds of one busy trial")
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        o = overhead(root, args.many)
        print(f"overhead: {o['per_trial']:.2f} s of orchestration per trial "
              f"({100 * o['per_trial'] / CPU_TRIAL_SECONDS:.1f} % of a ~{CPU_TRIAL_SECONDS:.0f} s cpu-profile trial; "
              f"aim < 2 s and < 3 %)")
        print(f"  trials phase: 1 trial {o['fit_1']:.1f} s (worker start included), {o['trials']} trials "
              f"{o['fit_n']:.1f} s; trial called directly {o['direct']:.2f} s; checkpoint {o['model_mb']:.0f} MB; "
              f"fixed cost per sweep outside it (Ray start, store, report) {o['fixed']:.1f} s")
        if not args.skip_parallel:
            p = parallel(root, args.trials, args.work_seconds)
            print(f"parallel: {p['trials']} trials of ~{args.work_seconds:.0f} s, {p['cpus']} CPUs against 1: "
                  f"efficiency {100 * p['steady_efficiency']:.0f} % from first trial start to last trial end "
                  f"(aim >= 90 %), {100 * p['efficiency']:.0f} % with Tune's start-up of the trials phase; "
                  f"{100 * p['efficiency_vs_direct']:.0f} % against calling the trials directly one after another")
            print(f"  1 CPU: {p['span_1']:.1f} s of trials ({p['fit_1']:.1f} s phase); {p['cpus']} CPUs: "
                  f"{p['span_n']:.1f} s ({p['fit_n']:.1f} s); one trial directly {p['direct']:.2f} s")
    print(f"load average while measuring (other processes count too): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
