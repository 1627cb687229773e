"""File locks that keep concurrent invocations apart.

- `store_lock(uri)`: creating or upgrading a local SQLite MLflow store (its
  schema migration) is not safe from two processes at once; the first use of
  a store happens under this lock.
- `SweepLease`: one invocation at a time runs a given sweep (experiment, name,
  profile, base config). A second one refuses in one line naming the holder
  (host, pid, since when), or waits for it and then resumes.

Both are `fcntl.flock` locks: the kernel releases them when the holder dies,
even by SIGKILL, so a stale lease is taken over by the next invocation with
no clean-up. Optuna's journal lock is not (a symlink): `clear_stale_journal_lock`
removes one a killed process left, before Ray starts. The lease files live beside a SQLite store (every writer of that
store sees them) or, for a tracking server, under `output_dir/leases/`:
invocations on one machine (or sharing that folder) are kept apart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional
from urllib.parse import urlparse

from detector.config import ConfigError


JOURNAL_LOCK_SUFFIX = ".lock"  # Optuna's JournalFileSymlinkLock: the symlink <journal>.lock -> <journal>
STALE_JOURNAL_LOCK_S = 10.0  # Optuna holds it for one append (milliseconds); far older, nobody will release it


class SweepBusy(ConfigError):
    """The sweep is being run by another invocation (a one-line user error)."""


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///` URI, else None."""
    if urlparse(uri).scheme != "sqlite" or not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve()


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive while the store at `uri` is first opened (a no-op for servers);
    a SQLite store that does not exist yet is created whole, or not at all."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with _locked(db.with_name(db.name + ".lock"), wait=True):
        if not db.exists():
            create_store(db)
        yield


def create_store(db: Path) -> None:
    """Create MLflow's SQLite store at `db` atomically.

    MLflow builds a new store's schema in a few dozen migration steps; a
    Ctrl-C half-way leaves a file no later run can open ("duplicate column
    name"). So the schema is built under a temporary name, then renamed into
    place: an interrupted creation leaves only the temporary file."""
    from mlflow.tracking import MlflowClient

    for stale in db.parent.glob(f".{db.name}.*.tmp"):  # an interrupted creation's (we hold the lock)
        stale.unlink(missing_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # runs the migrations
    os.replace(tmp, db)


@contextmanager
def _locked(path: Path, wait: bool) -> Iterator[Optional[IO[str]]]:
    """The open, flock-ed file (None when `wait` is False and another process holds it)."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()  # closing releases the lock


class SweepLease:
    """Held while one invocation runs one sweep; see the module docstring."""

    def __init__(self, folder: Path, identity: str, label: str) -> None:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.path = folder / f"{digest}.lease"
        self.label = label  # e.g. "gamma_alpha (cpu)", for messages
        self._context = None
        self._handle: Optional[IO[str]] = None

    @classmethod
    def for_sweep(cls, uri: str, output_dir: Path, experiment: str, name: str, profile: str,
                  base_hash: str) -> "SweepLease":
        """The lease of a sweep in the store at `uri` (its folder chosen as the module says)."""
        db = sqlite_path(uri)
        folder = db.with_name(db.name + ".leases") if db is not None else output_dir / "leases"
        identity = json.dumps([uri, experiment, name, profile, base_hash])
        return cls(folder, identity, f"{name} ({profile})")

    def acquire(self, wait: bool, notify=print) -> None:
        """Take the lease; raise SweepBusy (or, with `wait`, block until it is free)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._context = _locked(self.path, wait=False)
        handle = self._context.__enter__()
        if handle is None:
            self._context.__exit__(None, None, None)
            holder = self.holder()
            if not wait:
                raise SweepBusy(f"sweep {self.label} is already running ({holder}); wait for it, stop it, "
                                "or add sweep.wait=true to continue it once it ends")
            notify(f"sweep {self.label} is running ({holder}): waiting for it to end, then resuming")
            self._context = _locked(self.path, wait=True)
            handle = self._context.__enter__()
        self._handle = handle
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()

    def holder(self) -> str:
        """"host H, pid P, since T" of the current holder, as it wrote itself."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            data = {}
        return f"host {data.get('host', '?')}, pid {data.get('pid', '?')}, since {data.get('since', '?')}"

    def release(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = self._handle = None

    def __enter__(self) -> "SweepLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_stale_journal_lock(journal: Path, say: Callable[[str], None],
                             stale_after: float = STALE_JOURNAL_LOCK_S, poll: float = 0.05) -> bool:
    """Remove the lock of Optuna's journal file if a killed process left it; True if removed.

    Optuna locks the journal with a symlink for each append and removes it after.
    A process killed during an append leaves the link, and every later process
    waits on it with nothing said (older Optuna forever, Optuna 5 for its grace
    period), after Ray has started. The link names no owner to ask, so its age
    decides: one that nobody released within `stale_after` seconds of its
    creation is stale; a younger one is waited for (a live append ends in
    milliseconds). Called before Ray starts; says one line when it removes one."""
    lock = journal.with_name(journal.name + JOURNAL_LOCK_SUFFIX)
    while True:
        try:
            made = os.lstat(lock).st_mtime  # the link's own time, not its target's
        except FileNotFoundError:
            return False  # none, or released meanwhile
        age = time.time() - made
        if age >= stale_after:
            break
        time.sleep(min(poll, stale_after - age))
    lock.unlink(missing_ok=True)
    say(f"removed a stale lock of the Optuna journal: {lock} (left {age:.0f} s ago by a process "
        "killed while writing to it)")
    return True
