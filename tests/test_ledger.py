"""The sweep ledger's lease in the tracking store (sweeps/ledger.py), on a SQLite store:
one holder per key, a one-line refusal naming it, takeover only of a stale lease
(expired heartbeat, or a dead pid on this host), one winner when two take over at once.
The same code against an MLflow server on PostgreSQL: tests/test_ledger_server.py."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from analysis.layout import LEASE_PREFIX
from sweeps.ledger import (BEAT, HOST, PID, TOKEN, LeaseLost, StoreLease, lease_name, normalise_uri, study_key,
                           sweep_key)
from sweeps.lease import SweepBusy, store_lock


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> MlflowClient:
    """One store for the module (creating one takes seconds); each test leases keys of its own."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'mlflow.db'}"
    with store_lock(uri):
        return MlflowClient(tracking_uri=uri)


@pytest.fixture
def key(request) -> str:
    return request.node.name


def _lease(client: MlflowClient, key: str, **kwargs) -> StoreLease:
    return StoreLease(client, key, "sweep demo (smoke)", **kwargs)


def test_one_store_is_one_key_however_its_uri_is_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalise_uri("sqlite:///mlflow.db") == normalise_uri(f"sqlite:///{tmp_path}/mlflow.db")
    assert sweep_key("sqlite:///mlflow.db", "e", "s", "smoke") == sweep_key(f"sqlite:///{tmp_path}/mlflow.db",
                                                                          "e", "s", "smoke")
    assert normalise_uri("http://alice:pw@Host:5000/") == normalise_uri("http://host:5000") == "http://host:5000"
    assert normalise_uri("https://host:443/mlflow/") == "https://host/mlflow"
    assert study_key("postgresql://u:secret@db:5432/optuna", "s") == study_key("postgresql://db:5432/optuna", "s")
    assert "secret" not in study_key("postgresql://u:secret@db:5432/optuna", "s")
    assert sweep_key("http://h:1", "e", "a", "smoke") != sweep_key("http://h:1", "e", "a", "cpu")


def test_a_held_lease_refuses_in_one_line_and_others_are_free(client, key):
    first = _lease(client, key)
    first.acquire(wait=False)
    try:
        with pytest.raises(SweepBusy) as error:
            _lease(client, key).acquire(wait=False)
        message = str(error.value)
        assert message.startswith("sweep demo (smoke) is already running (host ") and "\n" not in message
        assert "since " in message and "last heartbeat " in message
        other = _lease(client, key + "-another")
        other.acquire(wait=False)
        other.release()
    finally:
        first.release()
    again = _lease(client, key)
    again.acquire(wait=False)  # a released lease frees its name at once
    again.release()
    names = [e.name for e in client.search_experiments()]
    assert lease_name(key) not in names and lease_name(key + "-another") not in names  # nothing left listed
    assert lease_name(key).startswith(LEASE_PREFIX)


def _forge(client: MlflowClient, key: str, host: str, pid: str, beat: float) -> str:
    """A lease written as another driver would have written it."""
    return client.create_experiment(lease_name(key), tags={HOST: host, PID: pid, BEAT: f"{beat:.3f}",
                                                           TOKEN: "theirs"})


def test_another_hosts_lease_is_taken_over_only_once_its_heartbeat_expired(client, key):
    _forge(client, key, "elsewhere", "1", time.time())
    with pytest.raises(SweepBusy, match="host elsewhere, pid 1"):
        _lease(client, key, expiry_s=60).acquire(wait=False)
    client.set_experiment_tag(client.get_experiment_by_name(lease_name(key)).experiment_id, BEAT,
                              f"{time.time() - 61:.3f}")
    lease = _lease(client, key, expiry_s=60)
    lease.acquire(wait=False)
    assert client.get_experiment_by_name(lease_name(key)).experiment_id == lease.experiment_id
    assert lease.succeeded == "theirs"  # their search's trials are known dead (sweeps/search.py)
    lease.release()


def test_a_lease_deleted_by_hand_in_the_mlflow_ui_does_not_block_its_sweep(client, key):
    client.delete_experiment(_forge(client, key, "elsewhere", "1", time.time()))  # it keeps its name
    lease = _lease(client, key)
    lease.acquire(wait=False)
    assert client.get_experiment_by_name(lease_name(key)).experiment_id == lease.experiment_id
    lease.release()


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(client, key):
    """Even one killed and not yet reaped by its parent (a zombie, as a test's Popen leaves it)."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{gone.pid}/stat")
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    _forge(client, key, socket.gethostname(), str(gone.pid), time.time())
    lease = _lease(client, key)
    lease.acquire(wait=False)
    lease.release()
    gone.wait()


def test_two_drivers_taking_over_one_expired_lease_at_once_one_wins(client, key):
    for _ in range(5):
        _forge(client, key, "elsewhere", "1", time.time() - 120)
        racers = [_lease(client, key, expiry_s=60) for _ in range(3)]
        start = threading.Barrier(len(racers))
        results: list[str] = []

        def race(lease: StoreLease) -> None:
            start.wait()
            try:
                lease.acquire(wait=False)
                results.append("won")
            except SweepBusy:
                results.append("refused")

        threads = [threading.Thread(target=race, args=(lease,)) for lease in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["refused", "refused", "won"]
        for lease in racers:
            lease.release()


def test_a_holder_whose_lease_was_taken_over_knows_it(client, key):
    held = _lease(client, key, expiry_s=60)
    held.acquire(wait=False)
    client.set_experiment_tag(held.experiment_id, HOST, "elsewhere")  # as if it ran elsewhere and stalled
    client.set_experiment_tag(held.experiment_id, BEAT, f"{time.time() - 61:.3f}")
    usurper = _lease(client, key, expiry_s=60)
    usurper.acquire(wait=False)
    with pytest.raises(LeaseLost):
        held.renew()
    held.release()  # leaves the usurper's lease alone
    assert client.get_experiment_by_name(lease_name(key)).experiment_id == usurper.experiment_id
    usurper.release()


def test_waiting_takes_the_lease_once_the_holder_releases(client, key):
    holder = _lease(client, key)
    holder.acquire(wait=False)
    lines: list[str] = []
    threading.Timer(0.5, holder.release).start()
    waiter = _lease(client, key)
    waiter.acquire(wait=True, notify=lines.append)
    assert len(lines) == 1 and "waiting for it to end" in lines[0]
    waiter.release()
