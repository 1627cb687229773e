"""Fault injection: kill a running sweep at a random moment, run it again, count what was lost.

    python benchmarks/fault_injection.py [--kills 20] [--seed 0] [--keep DIR]

Each round starts a smoke sweep (`gamma_alpha`, 2 seeds: 4 cells) in a fresh
folder, waits a random time, then kills one of: the driver with SIGINT
(Ctrl-C), the driver with SIGKILL, or a Ray trial worker with SIGKILL; then
runs the same command again to completion. It prints, per round and in
total: kills survived (the second run exited 0 and every cell has a FINISHED
child run), cells lost (no FINISHED child) and cells duplicated (more than
one child run, or more than one FINISHED, for one cell key). The aim: every
kill survived, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sweeps.cluster import trial_worker_pids

PROJECT = Path(__file__).resolve().parents[1]
KINDS = ("driver-sigint", "driver-sigkill", "worker-sigkill")
CELLS = 4


@dataclass
class Round:
    kind: str
    delay: float
    first_rc: int | None
    second_rc: int
    lost: int
    duplicated: int
    error: str = ""  # the rerun's last stderr line when it failed

    @property
    def survived(self) -> bool:
        return self.second_rc == 0 and self.lost == 0 and self.duplicated == 0


def command(folder: Path, cache: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.run", "+sweep=gamma_alpha", "profile=smoke", "sweep.seeds=2",
            f"data.cache_dir={cache}", "train.iterations=30", "train.checkpoint_every=10", "train.log_every=10",
            "trial.max_failures=2", f"output_dir={folder}/outputs", f"reports_dir={folder}/reports"]


def kill(process: subprocess.Popen, kind: str, rng: random.Random) -> None:
    if kind == "driver-sigint":
        process.send_signal(signal.SIGINT)
    elif kind == "driver-sigkill":
        process.kill()
    else:
        workers = trial_worker_pids(process.pid)  # the workers of this driver's cluster
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)


def cell_counts(db: Path) -> tuple[Counter, Counter]:
    """(child runs per cell key, FINISHED child runs per cell key), read-only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        rows = connection.execute(
            "select t.value, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'sweep.cell' and r.lifecycle_stage = 'active'").fetchall()
    return Counter(key for key, _ in rows), Counter(key for key, status in rows if status == "FINISHED")


def one_round(kind: str, delay: float, cache: str, rng: random.Random, keep: Path | None) -> Round:
    folder = Path(tempfile.mkdtemp(prefix="fault-", dir=keep))
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    first = subprocess.Popen(command(folder, cache), cwd=folder, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    kill(first, kind, rng)
    try:
        first_rc = first.wait(timeout=300)
    except subprocess.TimeoutExpired:  # a worker kill leaves the driver running to the end: fine
        first.kill()
        first_rc = first.wait()
    time.sleep(2)
    try:  # nothing of the first run may hold CPUs into the second
        os.killpg(first.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    second = subprocess.run(command(folder, cache), cwd=folder, env=env, capture_output=True, text=True,
                            timeout=900)
    runs, finished = cell_counts(folder / "mlflow.db")
    lost = CELLS - len(finished)
    duplicated = sum(n > 1 for n in runs.values()) + sum(n > 1 for n in finished.values())
    error = second.stderr.strip().splitlines()[-1] if second.returncode and second.stderr.strip() else ""
    return Round(kind, delay, first_rc, second.returncode, lost, duplicated, error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=40.0, help="seconds; the first run takes ~50 s")
    parser.add_argument("--keep", type=Path, default=None, help="keep each round's folder under DIR")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cache = tempfile.mkdtemp(prefix="fault-cache-")
    rounds = []
    for index in range(args.kills):
        kind, delay = rng.choice(KINDS), rng.uniform(3.0, args.max_delay)
        result = one_round(kind, delay, cache, rng, args.keep)
        rounds.append(result)
        print(f"[{index + 1}/{args.kills}] {kind:15s} after {delay:5.1f}s: first exit {result.first_rc}, "
              f"rerun exit {result.second_rc}, lost {result.lost}, duplicated {result.duplicated}"
              f"{'' if result.survived else '  <-- NOT SURVIVED ' + result.error}", flush=True)
    survived = sum(r.survived for r in rounds)
    print(f"kills survived {survived}/{len(rounds)}, cells lost {sum(r.lost for r in rounds)}, "
          f"cells duplicated {sum(r.duplicated for r in rounds)} "
          f"({dict(Counter(r.kind for r in rounds))})")


if __name__ == "__main__":
    main()
