"""The sweep ledger: a fence every host sees, held in the tracking store itself.

`sweeps/lease.py`'s flock keeps invocations on one machine apart; two drivers
on two machines against one MLflow server (or one Optuna study) do not share a
file system, so they need a record in the store they share. Here that record
is an MLflow experiment with a reserved name, `.sweep-lease/<digest>`:

- creating an experiment is atomic and its name unique in every MLflow store
  (SQLite, an RDB behind a server): of two drivers creating the same name at
  once, one gets RESOURCE_ALREADY_EXISTS. The holder record (host, pid, a
  random token, since) travels as tags in that same create call;
- the holder renews a `heartbeat` tag from a daemon thread; a lease whose
  heartbeat is older than its expiry is stale (so are leases naming this host
  and a pid that no longer exists: taken over at once);
- release and takeover rename the experiment to a unique name, then delete it
  (a deleted experiment keeps its name, which would block the next create).
  A takeover renames the stale experiment by its id and then creates the name
  anew: of two drivers taking over at once, only one create succeeds.

What it assumes: host clocks agree to well within the expiry (heartbeats carry
the holder's wall clock), and hostnames tell hosts apart (pid liveness is only
judged on the holder's own host). A holder that cannot renew for longer than
the expiry (an outage longer than that, a suspended laptop) may be taken over;
it notices at its next renewal and stops its sweep (`lost`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis.layout import LEASE_PREFIX
from sweeps.lease import SweepBusy, SweepLease, sqlite_path, store_lock

HEARTBEAT_S = 10.0  # how often a holder renews its lease
EXPIRY_S = 60.0  # a lease not renewed for this long is stale (several missed renewals, a short outage survives)

HOST, PID, TOKEN, SINCE, BEAT, KEY = ("lease.host", "lease.pid", "lease.token", "lease.since", "lease.heartbeat",
                                      "lease.key")
NOTE = "mlflow.note.content"  # what the MLflow UI shows as the experiment's description


class LeaseLost(RuntimeError):
    """Another driver took this lease over (ours expired): stop writing."""


# -- keys -----------------------------------------------------------------------
def normalise_uri(uri: str) -> str:
    """One spelling per store: a SQLite or file store by its absolute path, a
    server or database URL without credentials, default port case or trailing
    slash. `sqlite:///mlflow.db` and the same file's absolute URI are one store."""
    db = sqlite_path(uri)
    if db is not None:
        return f"sqlite:///{db}"
    if "://" not in uri:
        return Path(uri).expanduser().resolve().as_uri()
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(parts.path).expanduser().resolve().as_uri()
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port and parts.port != {"http": 80, "https": 443}.get(parts.scheme) else ""
    return urlunsplit((parts.scheme.lower(), host + port, parts.path.rstrip("/"), parts.query, ""))


def sweep_key(uri: str, experiment: str, name: str, profile: str) -> str:
    """What a sweep's parent run is found by (sweeps/tracking.py), in one normalised string.
    The base config is left out on purpose: a `sweep.resume_parent` run and a default
    one may write to one parent, so one sweep name and profile run one at a time."""
    return json.dumps(["sweep", normalise_uri(uri), experiment, name, profile])


def study_key(storage: str, study: str) -> str:
    """An Optuna study's identity: its storage (normalised) and its name."""
    return json.dumps(["study", normalise_uri(storage), study])


def lease_name(key: str) -> str:
    """The reserved experiment name of a key's lease."""
    return LEASE_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


# -- one lease --------------------------------------------------------------------
class StoreLease:
    """One key's lease in one MLflow store; see the module docstring."""

    def __init__(self, client: MlflowClient, key: str, label: str, heartbeat_s: float = HEARTBEAT_S,
                 expiry_s: float = EXPIRY_S, token: Optional[str] = None) -> None:
        self.client, self.key, self.label = client, key, label
        self.name = lease_name(key)
        self.heartbeat_s, self.expiry_s = heartbeat_s, expiry_s
        self.token = token or secrets.token_hex(8)
        self.succeeded: Optional[str] = None  # the token of a stale holder this lease took over from
        self.experiment_id: Optional[str] = None
        self.lost: Optional[LeaseLost] = None
        self.on_lost: Callable[[LeaseLost], None] = lambda error: None
        self.also_beat: list[Callable[[], None]] = []  # renewed with the lease (the search's Optuna trials)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self, wait: bool, notify: Callable[[str], None] = print) -> None:
        """Take the lease, or raise SweepBusy naming the holder (with `wait`: poll
        until it is released or stale, then take it). Starts the heartbeat."""
        said = False
        while not self._try_take():
            held = self._read()
            if held is None:
                time.sleep(0.05)
                continue  # released between our create and our read: try again
            if not wait:
                raise SweepBusy(f"{self.label} is already running ({describe(held)}); wait for it, stop it, "
                                "or add sweep.wait=true to continue it once it ends")
            if not said:
                notify(f"{self.label} is running ({describe(held)}): waiting for it to end, then resuming")
                said = True
            time.sleep(min(self.heartbeat_s, 2.0))
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _try_take(self) -> bool:
        """Create the lease; if one exists and is stale, retire it and create ours. True if ours."""
        if self._create():
            return True
        held = self._read()
        if held is None or not is_stale(held, self.expiry_s):
            return False
        self._retire(held.experiment_id, "expired")
        if not self._create():
            return False
        self.succeeded = held.tags.get(TOKEN)
        return True

    def _create(self) -> bool:
        """The atomic step: create the reserved name with our holder record (False if it exists)."""
        now = time.time()
        tags = {HOST: socket.gethostname(), PID: str(os.getpid()), TOKEN: self.token,
                SINCE: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)), BEAT: f"{now:.3f}",
                KEY: self.key, NOTE: f"internal: the lease of {self.label} (sweeps/ledger.py); not a sweep"}
        try:
            self.experiment_id = self.client.create_experiment(self.name, tags=tags)
            return True
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = self._read()  # a create the client replayed after a lost response finds itself
        if held is not None and held.tags.get(TOKEN) == self.token:
            self.experiment_id = held.experiment_id
            return True
        return False

    def _read(self) -> Optional[Experiment]:
        """The experiment holding this key's name, if any (deleted ones too: one deleted by
        hand in the MLflow UI still holds the name, and is stale)."""
        return self.client.get_experiment_by_name(self.name)

    def _retire(self, experiment_id: str, why: str) -> None:
        """Free the reserved name (rename), then delete the experiment. Either step may
        fail because another driver retired it first: harmless, the create decides."""
        try:
            if self.client.get_experiment(experiment_id).lifecycle_stage != "active":
                self.client.restore_experiment(experiment_id)  # MLflow renames only active experiments
            self.client.rename_experiment(experiment_id, f"{self.name}/{why}-{uuid.uuid4().hex[:12]}")
            self.client.delete_experiment(experiment_id)
        except MlflowException:
            pass

    def _beat(self) -> None:
        """Renew the heartbeat until released; a store that fails is retried at the next beat."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.renew()
            except LeaseLost as error:
                self.lost = error
                self.on_lost(error)
                return
            except Exception:  # noqa: BLE001 - an outage: the lease expires only after EXPIRY_S
                continue
            for beat in list(self.also_beat):
                try:
                    beat()
                except Exception:  # noqa: BLE001 - the same: tried again at the next beat
                    pass

    def renew(self) -> None:
        """One heartbeat; raise LeaseLost if the lease is no longer ours."""
        assert self.experiment_id is not None
        current = self.client.get_experiment(self.experiment_id)
        if current.name != self.name or current.lifecycle_stage != "active" or current.tags.get(TOKEN) != self.token:
            raise LeaseLost(f"the lease of {self.label} was taken over by another driver after it expired "
                            "(this driver could not renew it in time)")
        self.client.set_experiment_tag(self.experiment_id, BEAT, f"{time.time():.3f}")

    def release(self) -> None:
        """Stop the heartbeat and retire the lease (if the store is down, it expires instead)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        if self.experiment_id is not None and self.lost is None:
            try:
                current = self.client.get_experiment(self.experiment_id)
                if current.tags.get(TOKEN) == self.token and current.name == self.name:
                    self._retire(self.experiment_id, "released")
            except Exception:  # noqa: BLE001 - the store is down: the lease expires on its own
                pass
        self.experiment_id = None


def describe(lease: Experiment) -> str:
    """'host H, pid P, since T, last heartbeat N s ago' of a lease."""
    tags = lease.tags
    return (f"host {tags.get(HOST, '?')}, pid {tags.get(PID, '?')}, since {tags.get(SINCE, '?')}, "
            f"last heartbeat {_age(tags):.0f} s ago")


def is_stale(lease: Experiment, expiry_s: float) -> bool:
    """Deleted (by hand), its heartbeat expired, or it names this host and a process that no longer exists."""
    tags = lease.tags
    if lease.lifecycle_stage != "active" or _age(tags) > expiry_s:
        return True
    return tags.get(HOST) == socket.gethostname() and not _pid_alive(tags.get(PID, ""))


def _age(tags: dict[str, str]) -> float:
    try:
        return max(time.time() - float(tags.get(BEAT, "0")), 0.0)
    except ValueError:
        return float("inf")


def _pid_alive(pid: str) -> bool:
    """Whether process `pid` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # exists, someone else's
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): it exists
    return state != "Z"


# -- what a driver holds -----------------------------------------------------------
class SweepLedger:
    """Everything one invocation holds while it runs a sweep: the local flock
    (released by the kernel the instant its holder dies) and the store leases of
    its parent run and, for a search, its Optuna study."""

    def __init__(self, uri: str, output_dir: Path, experiment: str, name: str, profile: str, base_hash: str,
                 study: Optional[tuple[str, str]] = None, heartbeat_s: float = HEARTBEAT_S,
                 expiry_s: float = EXPIRY_S) -> None:
        self.local = SweepLease.for_sweep(uri, output_dir, experiment, name, profile, base_hash)
        with store_lock(uri):  # the first use of a SQLite store creates it: one process at a time
            client = MlflowClient(tracking_uri=uri)
        self.token = secrets.token_hex(8)  # one for all its leases: it also marks the Optuna trials it owns
        label = f"sweep {name} ({profile})"
        self.leases = [StoreLease(client, sweep_key(uri, experiment, name, profile), label, heartbeat_s, expiry_s,
                                  self.token)]
        if study is not None:
            storage, study_name = study
            self.leases.append(StoreLease(client, study_key(storage, study_name), f"study '{study_name}'",
                                          heartbeat_s, expiry_s, self.token))

    @property
    def dead_owners(self) -> set[str]:
        """Tokens of stale holders this invocation took over from: their drivers are gone
        (a dead pid here, or an expired heartbeat), so their RUNNING trials are too."""
        return {lease.succeeded for lease in self.leases if lease.succeeded}

    def acquire(self, wait: bool, notify: Callable[[str], None] = print) -> None:
        """The flock first (instant on one host), then each store lease; all or none."""
        self.local.acquire(wait=wait, notify=notify)
        taken: list[StoreLease] = []
        try:
            for lease in self.leases:
                lease.acquire(wait=wait, notify=notify)
                taken.append(lease)
        except BaseException:
            for lease in taken:
                lease.release()
            self.local.release()
            raise

    def on_lost(self, handler: Callable[[LeaseLost], None]) -> None:
        """Call `handler` (from the heartbeat thread) if a lease is taken over under us."""
        for lease in self.leases:
            lease.on_lost = handler

    def beat_also(self, beat: Callable[[], None]) -> None:
        """Call `beat` at each heartbeat while the lease is held (Optuna's trial heartbeats)."""
        self.leases[0].also_beat.append(beat)

    def release(self) -> None:
        for lease in self.leases:
            lease.release()
        self.local.release()

    def __enter__(self) -> "SweepLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
