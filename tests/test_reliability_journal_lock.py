"""Optuna's journal lock left by a process killed during an append (issue 24,
item 4): found before Ray starts and removed with one line, instead of every
later search waiting on it with nothing said.

Optuna locks the journal with a symlink `<journal>.lock` per append; these
tests make that link as a killed process leaves it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from sweeps.lease import clear_stale_journal_lock
from tests.test_reliability_failures import run_main, sweep_runs


def left_lock(journal: Path, age_s: float) -> Path:
    """The lock a process killed `age_s` seconds ago during an append left behind."""
    journal.touch()
    lock = journal.with_name(journal.name + ".lock")
    os.symlink(journal, lock)
    then = time.time() - age_s
    os.utime(lock, (then, then), follow_symlinks=False)  # the link's own time, not the journal's
    return lock


def test_an_old_lock_is_removed_with_one_line(tmp_path):
    lock = left_lock(tmp_path / "journal.log", age_s=3600)
    said: list[str] = []
    assert clear_stale_journal_lock(tmp_path / "journal.log", said.append) is True
    assert not os.path.lexists(lock) and (tmp_path / "journal.log").is_file()  # the journal itself is kept
    assert said == [f"removed a stale lock of the Optuna journal: {lock} (left 3600 s ago by a process "
                    "killed while writing to it)"]


def test_a_lock_its_owner_releases_is_waited_for_and_left_alone(tmp_path):
    lock = left_lock(tmp_path / "journal.log", age_s=0)
    releaser = threading.Timer(0.3, os.unlink, [lock])  # a live append ends
    releaser.start()
    said: list[str] = []
    start = time.monotonic()
    assert clear_stale_journal_lock(tmp_path / "journal.log", said.append, stale_after=30) is False
    releaser.join()
    assert 0.2 < time.monotonic() - start < 10 and said == []


def test_a_young_lock_nobody_releases_is_removed_once_stale(tmp_path):
    lock = left_lock(tmp_path / "journal.log", age_s=0)
    said: list[str] = []
    start = time.monotonic()
    assert clear_stale_journal_lock(tmp_path / "journal.log", said.append, stale_after=0.5) is True
    assert time.monotonic() - start >= 0.4 and not os.path.lexists(lock) and len(said) == 1


def test_no_lock_nothing_said(tmp_path):
    said: list[str] = []
    assert clear_stale_journal_lock(tmp_path / "journal.log", said.append) is False and said == []


def test_a_search_on_a_journal_with_a_stale_lock_says_so_and_runs(tmp_path, capsys, local_ray):
    journal = tmp_path / "journal.log"
    lock = left_lock(journal, age_s=600)
    code = run_main(["+sweep=search", "profile=smoke", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                     f"output_dir={tmp_path}/outputs", f"reports_dir={tmp_path}/reports",
                     "trial.function=tests.fake_trials:ap_from_alpha", f"sweep.storage={journal}",
                     "sweep.num_samples=2", "sweep.eval_every=10", "train.iterations=20", "train.log_every=10"])
    out, err = capsys.readouterr()
    assert code == 0, err
    said = " ".join(out.split())  # rich wraps long lines without a terminal
    assert re.search(rf"removed a stale lock of the Optuna journal: {re.escape(str(lock))} \(left 6\d\d s ago by a "
                     r"process killed while writing to it\)", said)
    assert said.index("removed a stale lock") < said.index("2 trials on a local Ray cluster")  # before Ray
    assert not os.path.lexists(lock)
    children = sweep_runs(tmp_path)[1]
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
