"""A sweep on an existing multi-node Ray cluster (cluster.address=...).

Two Ray nodes are started on this machine as separate processes (a head and
a worker node, one CPU each, with their own temp dir and ports so no other
Ray here is touched); the smoke sweep's two trials then run at the same time,
one per node, and the nodes recorded in MLflow are this cluster's.
Teardown ends exactly the processes these nodes started (SIGINT to each
`ray start --block`, then their process groups), not every Ray on the
machine as `ray stop` would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from sweeps.run import main_with

PROJECT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(count: int) -> list[int]:
    """Ports free right now (bound then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_node(temp_dir: str, *args: str) -> subprocess.Popen:
    """`ray start --block` in its own process group, all its ports chosen here."""
    node_manager, object_manager, agent, agent_grpc, runtime_env, metrics = free_ports(6)
    command = [RAY, "start", "--block", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={temp_dir}",
               f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
               "--disable-usage-stats", *args]
    # RAY_AUTH_MODE=disabled: `ray start` turns token authentication on by
    # default, which a plain ray.init(address=...) here would not pass.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def stop_node(process: subprocess.Popen) -> None:
    """SIGINT to `ray start --block` (it then stops the node's processes; it
    ignores SIGTERM), and SIGKILL to its process group if anything lingers."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:  # fall through to SIGKILL
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the expected case: the whole group is gone already
        pass


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    """Until the node's GCS port accepts connections; fail fast if the node died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray head did not open port {port} in {timeout:.0f} s")


def alive_nodes(address: str, expected: int, timeout: float = 90) -> list[dict]:
    """The cluster's alive nodes once `expected` of them have joined."""
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        deadline = time.monotonic() + timeout
        while True:
            nodes = [n for n in ray.nodes() if n["Alive"]]
            if len(nodes) >= expected or time.monotonic() > deadline:
                return nodes
            time.sleep(1)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def two_node_cluster():
    """(head address, node ids) of a head and a worker node on this machine."""
    assert not ray.is_initialized()
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    (gcs,) = free_ports(1)
    address = f"127.0.0.1:{gcs}"
    head = start_node(temp_dir, "--head", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                      "--include-dashboard=false")
    worker = None
    try:
        wait_for_port(gcs, head)
        worker = start_node(temp_dir, f"--address={address}", "--node-ip-address=127.0.0.1")
        nodes = alive_nodes(address, 2)
        assert len(nodes) == 2, (head.poll(), worker.poll())
        yield address, {n["NodeID"] for n in nodes}
    finally:
        for process in (worker, head):
            if process is not None:
                stop_node(process)
        shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's logs and sockets of these two nodes only


def test_sweep_runs_on_the_existing_cluster_one_trial_per_node(two_node_cluster, tmp_path, smoke_cache):
    address, node_ids = two_node_cluster
    store = tmp_path / "mlflow.db"
    outcome = main_with(["+sweep=gamma_alpha", "profile=smoke", f"data.cache_dir={smoke_cache}",
                         f"cluster.address={address}", f"tracking.uri=sqlite:///{store}",
                         "train.iterations=40", f"output_dir={tmp_path}/outputs", f"reports_dir={tmp_path}/reports"],
                        quiet=True)
    assert outcome.counts["finished"] == 2 and not ray.is_initialized()  # connected, then let go
    client = MlflowClient(f"sqlite:///{store}")
    children = client.search_runs([client.get_experiment_by_name("retinanet-sweeps").experiment_id],
                                  "tags.`sweep.role` = 'child'")
    used = {child.data.tags["ray.node_id"] for child in children}
    assert used == node_ids  # both nodes of the existing cluster, no new local one
    assert len(alive_nodes(address, 2)) == 2  # the cluster is still up: the sweep only disconnected
