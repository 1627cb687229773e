"""The local sweep lease (a flock): exclusive, one line naming its holder, taken over from a dead holder.
Waiting, and the lease every host sees: tests/test_ledger.py and tests/test_ledger_server.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.lease import SweepBusy, SweepLease, sqlite_path, store_lock

HOLD = """
import sys, time
from pathlib import Path
from sweeps.lease import SweepLease
lease = SweepLease(Path(sys.argv[1]), "same sweep", "demo (smoke)")
lease.acquire(wait=False)
print("held", flush=True)
time.sleep(600)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_lease_refuses_in_one_line_naming_the_holder(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(SweepBusy) as error:
            SweepLease(tmp_path, "same sweep", "demo (smoke)").acquire(wait=False)
        message = str(error.value)
        assert message.startswith("sweep demo (smoke) is already running (host ")
        assert f"pid {holder.pid}, since " in message and "\n" not in message
        SweepLease(tmp_path, "another sweep", "other (smoke)").acquire(wait=False)  # others are free
    finally:
        holder.kill()
        holder.wait()


def test_a_lease_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lease = SweepLease(tmp_path, "same sweep", "demo (smoke)")
    lease.acquire(wait=False)  # no clean-up needed: the kernel released the dead holder's lock
    assert f"pid {os.getpid()}," in lease.holder()
    lease.release()


def test_store_lock_is_only_for_sqlite_files(tmp_path):
    assert sqlite_path(f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "mlflow.db").resolve()
    assert sqlite_path("http://localhost:5000") is None
    with store_lock(f"sqlite:///{tmp_path}/sub/mlflow.db"):
        assert (tmp_path / "sub" / "mlflow.db.lock").exists()
    with store_lock("http://localhost:5000"):
        pass


def test_a_new_sqlite_store_is_created_whole_under_its_final_name(tmp_path):
    """A Ctrl-C during MLflow's migrations used to leave a store no run could open."""
    import sqlite3

    with store_lock(f"sqlite:///{tmp_path}/mlflow.db"):
        tables = {row[0] for row in sqlite3.connect(tmp_path / "mlflow.db").execute(
            "select name from sqlite_master where type = 'table'")}
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_the_default_store_lock_and_leases_are_ignored_by_git():
    """Run from a checkout, a sweep writes mlflow.db, mlflow.db.lock and mlflow.db.leases/<id>.lease
    beside it; none may be committed by accident (one was, once)."""
    project = Path(__file__).resolve().parents[1]
    if not (project / ".git").exists():
        pytest.skip("not a git checkout")
    store = project / "mlflow.db"
    lease = SweepLease.for_sweep(f"sqlite:///{store}", project / "outputs", "e", "gamma_alpha", "cpu", "h")
    paths = [str(path.relative_to(project)) for path in (store, store.with_name("mlflow.db.lock"), lease.path)]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=project, capture_output=True,
                             text=True)
    assert sorted(ignored.stdout.split()) == sorted(paths)
