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

import importlib.util
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


HAS_RAY_CLIENT = importlib.util.find_spec("grpc") is not None  # the `ray[client]` extra


@pytest.fixture(scope="module")
def two_node_cluster():
    """(head address, node ids, Ray Client address or None) of a head and a
    worker node on this machine."""
    assert not ray.is_initialized()
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, client_port = free_ports(2)
    address = f"127.0.0.1:{gcs}"
    client = [f"--ray-client-server-port={client_port}"] if HAS_RAY_CLIENT else []
    head = start_node(temp_dir, "--head", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                      "--include-dashboard=false", *client)
    worker = None
    try:
        wait_for_port(gcs, head)
        worker = start_node(temp_dir, f"--address={address}", "--node-ip-address=127.0.0.1")
        nodes = alive_nodes(address, 2)
        assert len(nodes) == 2, (head.poll(), worker.poll())
        yield address, {n["NodeID"] for n in nodes}, (f"ray://127.0.0.1:{client_port}" if client else None)
    finally:
        for process in (worker, head):
            if process is not None:
                stop_node(process)
        shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's logs and sockets of these two nodes only


def test_sweep_runs_on_the_existing_cluster_one_trial_per_node(two_node_cluster, tmp_path, smoke_cache):
    # The sweep runs as the CLI, as a user would. RAY_AUTH_MODE=disabled, as for
    # the nodes: an earlier local ray.init() in this process left "token" here.
    address, node_ids, _ = two_node_cluster
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]),
           "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "sweeps.run", "+sweep=gamma_alpha", "profile=smoke",
               f"data.cache_dir={smoke_cache}", f"cluster.address={address}", "train.iterations=40"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stdout.split())  # rich wraps the title at 80 columns without a terminal
    assert f"2 trials on the Ray cluster at {address} (2 node(s), 2 CPUs" in said  # joined, not started
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = client.search_runs([client.get_experiment_by_name("retinanet-sweeps").experiment_id],
                                  "tags.`sweep.role` = 'child'")
    assert len(children) == 2 and all(child.info.status == "FINISHED" for child in children)
    used = {child.data.tags["ray.node_id"] for child in children}
    assert used == node_ids  # one trial on each node of the existing cluster
    assert len(alive_nodes(address, 2)) == 2  # the cluster is still up: the sweep only disconnected


@pytest.fixture
def mlflow_server(tmp_path):
    """An MLflow tracking server on this machine (Ray Client sweeps need one)."""
    (port,) = free_ports(1)
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts")]
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for_port(port, server, timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.skipif(not HAS_RAY_CLIENT, reason="Ray Client needs the ray[client] extra (grpcio)")
def test_ray_client_sweep_records_to_a_tracking_server(two_node_cluster, mlflow_server, tmp_path, smoke_cache):
    _, node_ids, client_address = two_node_cluster
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]),
           "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "sweeps.run", "+sweep=gamma_alpha", "profile=smoke",
               f"data.cache_dir={smoke_cache}", f"cluster.address={client_address}", "train.iterations=40",
               f"tracking.uri={mlflow_server}"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 done, 0 running, 0 failed" in done.stdout  # the display followed the trials through MLflow
    client = MlflowClient(mlflow_server)
    children = client.search_runs([client.get_experiment_by_name("retinanet-sweeps").experiment_id],
                                  "tags.`sweep.role` = 'child'")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["ray.node_id"] for c in children} <= node_ids
    assert all("AP" in c.data.metrics and "ms_per_image" in c.data.metrics for c in children)
    assert [a.path for a in client.list_artifacts(children[0].info.run_id, "checkpoint")] == ["checkpoint/model.pt"]


def test_descends_from_follows_parents_to_the_root_only():
    from sweeps.cluster import _descends_from
    parents = {10: 1, 11: 10, 12: 11, 20: 1, 21: 20}  # two drivers (10, 20) under init, a worker each
    assert _descends_from(12, 10, parents) and _descends_from(11, 10, parents)
    assert not _descends_from(21, 10, parents)  # the other driver's worker
    assert not _descends_from(10, 10, parents)  # a process is not its own descendant
    assert not _descends_from(12, 99, {12: 13, 13: 12})  # a cycle (pids reused while reading) ends
