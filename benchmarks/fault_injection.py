"""Fault injection: kill a running sweep at a random moment, run it again, count what was lost.

    python benchmarks/fault_injection.py [--kills 20] [--seed 0] [--keep DIR] [--server] [--search]

Each round starts a smoke sweep (`gamma_alpha`, 2 seeds: 4 cells) in a fresh
folder, waits a random time, then kills one of: the driver with SIGINT
(Ctrl-C), the driver with SIGKILL, or a Ray trial worker with SIGKILL; then
runs the same command again to completion. It prints, per round and in
total: kills survived (the second run exited 0 and every cell has a FINISHED
child run), cells lost (no FINISHED child) and cells duplicated (more than
one child run, or more than one FINISHED, for one cell key). The aim: every
kill survived, 0 lost, 0 duplicated.

`--server`: the sweeps write to an MLflow tracking server on a throwaway
PostgreSQL cluster (tests/pg.py; Debian's `postgresql` and psycopg), each round
in an experiment of its own; a search's study lives in that PostgreSQL too.
`--search`: the `search` sweep (4 trials a run) instead of the grid; a round
then counts child runs left RUNNING and child runs duplicated (two for one
trial of one invocation) in MLflow, and the Optuna trials left RUNNING or FAIL
(a killed driver's trials are failed by the rerun that takes over its lease).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
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
SEARCH_TRIALS = 4  # sweep.num_samples of a search round

@dataclass
class Round:
    kind: str
    delay: float
    first_rc: int | None
    second_rc: int
    lost: int
    duplicated: int
    error: str = ""  # the rerun's last stderr line when it failed
    optuna_running: int = 0  # search: trials left RUNNING in the study
    optuna_failed: int = 0  # search: trials marked FAIL (the killed run's, failed as stale)
    diverged: int = 0  # rerun trials that failed by their own training (NonFiniteLossError), not by the kill
    all_failures_diverged: bool = False  # every failed trial of the rerun diverged

    @property
    def survived(self) -> bool:
        """Nothing lost, duplicated or left RUNNING, and the rerun exited 0, or 1 only for trials that
        diverged: a search's sampler seed moves with the trials a kill left, and on the smoke profile
        some sampled points (e.g. γ ~4 with 4 scales) diverge; the exit 1 then reports a real failure."""
        clean = self.second_rc == 0 or (self.second_rc == 1 and self.all_failures_diverged)
        return clean and self.lost == 0 and self.duplicated == 0 and self.optuna_running == 0


@dataclass
class Stores:
    """Where a round's sweep writes: its tracking URI and experiment, and a search's study storage."""

    uri: str
    experiment: str
    storage: str


def command(folder: Path, cache: str, stores: Stores, search: bool) -> list[str]:
    sweep = (["+sweep=search", f"sweep.num_samples={SEARCH_TRIALS}", f"sweep.storage={stores.storage}",
              "sweep.sampler=random"] if search else ["+sweep=gamma_alpha", "sweep.seeds=2"])
    return [sys.executable, "-m", "sweeps.run", *sweep, "profile=smoke",
            f"data.cache_dir={cache}", "train.iterations=30", "train.checkpoint_every=10", "train.log_every=10",
            "trial.max_failures=2", f"output_dir={folder}/outputs", f"reports_dir={folder}/reports",
            f"tracking.uri={stores.uri}", f"tracking.experiment={stores.experiment}"]


def kill(process: subprocess.Popen, kind: str, rng: random.Random) -> None:
    if kind == "driver-sigint":
        process.send_signal(signal.SIGINT)
    elif kind == "driver-sigkill":
        process.kill()
    else:
        workers = trial_worker_pids(process.pid)  # the workers of this driver's cluster
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)


def child_runs(stores: Stores) -> list:
    """The round's child runs (active), from its tracking store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stores.uri)
    experiment = client.get_experiment_by_name(stores.experiment)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'child'", max_results=5000)
    return [run for run in runs if run.info.lifecycle_stage == "active"]


def cell_counts(stores: Stores) -> tuple[Counter, Counter]:
    """(child runs per cell key, FINISHED child runs per cell key)."""
    rows = [(run.data.tags.get("sweep.cell"), run.info.status) for run in child_runs(stores)]
    return Counter(key for key, _ in rows), Counter(key for key, status in rows if status == "FINISHED")


def search_counts(stores: Stores) -> tuple[int, int, int, int]:
    """(child runs left RUNNING, child runs duplicated, Optuna trials RUNNING, Optuna trials FAIL)."""
    import optuna

    from sweeps.search import optuna_storage  # a journal file or an RDB URL, as the sweep opens it

    runs = child_runs(stores)
    slots = Counter((r.data.tags.get("sweep.invocation"), r.data.tags.get("sweep.trial_id")) for r in runs)
    study = optuna.load_study(study_name="search-smoke", storage=optuna_storage(stores.storage))
    states = Counter(trial.state.name for trial in study.trials)
    return (sum(r.info.status == "RUNNING" for r in runs), sum(n > 1 for n in slots.values()),
            states["RUNNING"], states["FAIL"])


def round_stores(folder: Path, index: int, server: object | None, postgres: object | None) -> Stores:
    """A SQLite store and journal in the round's folder, or an experiment on the server and a study database."""
    if server is None:
        return Stores(f"sqlite:///{folder}/mlflow.db", "retinanet-sweeps", str(folder / "journal.log"))
    return Stores(server.uri, f"fault-{index}-{folder.name}", postgres.create_database(f"optuna_{index}"))


def one_round(kind: str, delay: float, cache: str, rng: random.Random, keep: Path | None, stores_of,
              search: bool) -> Round:
    folder = Path(tempfile.mkdtemp(prefix="fault-", dir=keep))
    stores = stores_of(folder)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    first = subprocess.Popen(command(folder, cache, stores, search), cwd=folder, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    second = subprocess.run(command(folder, cache, stores, search), cwd=folder, env=env, capture_output=True,
                            text=True, timeout=900)
    error = second.stderr.strip().splitlines()[-1] if second.returncode and second.stderr.strip() else ""
    (folder / "rerun.log").write_text(second.stdout + second.stderr)  # what failed, for --keep
    failed = [line for line in second.stdout.splitlines() if line.startswith("  failed ")]
    diverged = sum("NonFiniteLossError" in line for line in failed)
    if search:
        left_running, duplicated, optuna_running, optuna_failed = search_counts(stores)
        return Round(kind, delay, first_rc, second.returncode, left_running, duplicated, error, optuna_running,
                     optuna_failed, diverged, bool(failed) and diverged == len(failed))
    runs, finished = cell_counts(stores)
    lost = CELLS - len(finished)
    duplicated = sum(n > 1 for n in runs.values()) + sum(n > 1 for n in finished.values())
    return Round(kind, delay, first_rc, second.returncode, lost, duplicated, error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=40.0, help="seconds; the first run takes ~50 s")
    parser.add_argument("--keep", type=Path, default=None, help="keep each round's folder under DIR")
    parser.add_argument("--server", action="store_true",
                        help="an MLflow server on a throwaway PostgreSQL (tests/pg.py) instead of SQLite files")
    parser.add_argument("--search", action="store_true", help="the search sweep instead of the gamma_alpha grid")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cache = tempfile.mkdtemp(prefix="fault-cache-")
    postgres = server = None
    if args.server:
        sys.path.insert(0, str(PROJECT))
        from tests import pg

        reason = pg.unavailable()
        if reason:
            sys.exit(f"error: --server: {reason}")
        postgres = pg.Postgres()
        postgres.start()
        server = pg.MlflowServer(postgres.create_database("mlflow"), Path(tempfile.mkdtemp(prefix="fault-art-")))
        server.start()
    rounds = []
    try:
        for index in range(args.kills):
            kind, delay = rng.choice(KINDS), rng.uniform(3.0, args.max_delay)
            result = one_round(kind, delay, cache, rng, args.keep,
                               lambda folder, i=index: round_stores(folder, i, server, postgres), args.search)
            rounds.append(result)
            what = (f"left RUNNING {result.lost}, duplicated {result.duplicated}, Optuna RUNNING "
                    f"{result.optuna_running}, FAIL {result.optuna_failed}, diverged {result.diverged}" if args.search
                    else f"lost {result.lost}, duplicated {result.duplicated}")
            print(f"[{index + 1}/{args.kills}] {kind:15s} after {delay:5.1f}s: first exit {result.first_rc}, "
                  f"rerun exit {result.second_rc}, {what}"
                  f"{'' if result.survived else '  <-- NOT SURVIVED ' + result.error}", flush=True)
    finally:
        if server is not None:
            server.stop(graceful=False)
            postgres.remove()
    survived = sum(r.survived for r in rounds)
    mode = f"{'server (PostgreSQL)' if args.server else 'SQLite'}, {'search' if args.search else 'grid'}"
    if args.search:
        print(f"[{mode}] kills survived {survived}/{len(rounds)}, child runs left RUNNING "
              f"{sum(r.lost for r in rounds)}, duplicated {sum(r.duplicated for r in rounds)}, Optuna trials left "
              f"RUNNING {sum(r.optuna_running for r in rounds)}, FAIL {sum(r.optuna_failed for r in rounds)} "
              f"({dict(Counter(r.kind for r in rounds))})")
        return
    print(f"[{mode}] kills survived {survived}/{len(rounds)}, cells lost {sum(r.lost for r in rounds)}, "
          f"cells duplicated {sum(r.duplicated for r in rounds)} "
          f"({dict(Counter(r.kind for r in rounds))})")


if __name__ == "__main__":
    main()
