"""Ray for one sweep: a local cluster started for the run (the default), or an
existing one (`cluster.address=auto` or `ray://host:port`), set up quietly.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlparse

from detector.config import ConfigError
from sweeps.inputs import resolve_tracking_uri

# Set before Tune runs; local Ray workers inherit the driver's environment.
QUIET_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV / JSON / TensorBoard files per trial: MLflow has it all
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # training reports carry no AP; only evaluations do
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage-stats notice on start
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0 the legacy reporter prints nothing at all
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # MLflow's download bar, once per model in the quiet timing phase (analysis.runs.CLIENT_ENV: the same off)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "ray.air", "filelock")
TRIAL_PROCESS_PREFIX = b"ray::ImplicitFunc"  # how Ray names a process running a Tune function trainable


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a sweep runs on."""

    address: str  # the GCS address
    local: bool  # a cluster of this machine only (no cluster.address): trials share this disk
    client: bool  # joined through Ray Client (ray://): Tune itself runs on the cluster
    cpus: float
    gpus: float
    nodes: int
    max_node_cpus: float  # a trial runs on one node: its resources must fit one
    max_node_gpus: float
    machines: int  # distinct node addresses


def check_resources(cluster: dict[str, Any]) -> None:
    """One-line errors for impossible per-trial resources (before anything starts)."""
    cpus, gpus, num_cpus = cluster.get("cpus_per_trial"), cluster.get("gpus_per_trial") or 0, cluster.get("num_cpus")
    if not isinstance(cpus, (int, float)) or cpus <= 0:
        raise ConfigError(f"cluster.cpus_per_trial={cpus:g} must be > 0")
    if not isinstance(gpus, (int, float)) or gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError(f"cluster.gpus_per_trial={gpus:g} must be >= 0 (a fraction below 1, or whole GPUs)")
    if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < cpus):
        raise ConfigError(f"cluster.num_cpus={num_cpus!r} must be an integer >= cluster.cpus_per_trial={cpus:g}")


def quiet_ray() -> None:
    """No Ray, Tune or MLflow chatter in the terminal: our progress display says what matters."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL if name == "ray.tune" else logging.ERROR)


@contextmanager
def ray_cluster(cluster: dict[str, Any], say: Callable[[str], None] = print) -> Iterator[ClusterInfo]:
    """Ray initialised for the sweep; shut down afterwards if this call started
    or connected it. A Ray already initialised in this process (tests) is reused.
    `say` gets the "waiting for workers" line of a cluster that scales from zero."""
    import ray

    quiet_ray()
    owned = not ray.is_initialized()
    try:
        if owned:  # inside the try: a Ctrl-C during ray.init left a half-started Ray that crashed the exit (SIGSEGV)
            _init(ray, cluster.get("address"), cluster.get("num_cpus"))
        info = _describe(ray, cluster.get("address"))
        waiting = _check_fits(info, cluster)
        _check_storage(info, cluster, scaling=waiting is not None)
        if waiting:
            say(waiting)
        yield info
    finally:
        if owned:
            ray.shutdown()


def _init(ray: Any, address: Optional[str], num_cpus: Optional[int]) -> None:
    """Start a fresh local cluster ("local": never attach to some other Ray
    found on this machine) or connect to `address`."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if not address:
        ray.init(address="local", num_cpus=num_cpus or len(os.sched_getaffinity(0)), **quiet)
        return
    try:
        _connect(ray, address, {k: v for k, v in quiet.items() if k != "include_dashboard"})
    except ConnectionError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cluster.address={address}: cannot connect to a Ray cluster ({first}); is it "
                          "running, and if it uses token authentication, is RAY_AUTH_MODE=token set here?") from None


def _connect(ray: Any, address: str, options: dict[str, Any]) -> None:
    """ray.init(address). The Ray Client server starts a process per client; on
    a busy head that start can fail once with an empty message, so ray:// gets
    a second attempt (any other failure, or a second one, is raised)."""
    try:
        ray.init(address=address, **options)
    except ConnectionAbortedError:
        if not is_client_address(address):
            raise
        time.sleep(2.0)
        ray.init(address=address, **options)


def _describe(ray: Any, address: Optional[str]) -> ClusterInfo:
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    resources = [node.get("Resources", {}) for node in nodes]
    return ClusterInfo(
        address=address or ray.get_runtime_context().gcs_address, local=not address,
        client=is_client_address(address),
        cpus=sum(float(r.get("CPU", 0)) for r in resources), gpus=sum(float(r.get("GPU", 0)) for r in resources),
        nodes=len(nodes), max_node_cpus=max((float(r.get("CPU", 0)) for r in resources), default=0.0),
        max_node_gpus=max((float(r.get("GPU", 0)) for r in resources), default=0.0),
        machines=len({node.get("NodeManagerAddress") for node in nodes}))


def _check_fits(info: ClusterInfo, cluster: dict[str, Any]) -> Optional[str]:
    """Whether one trial fits one node as the cluster stands.

    A local cluster is all there will be: a trial needing more than any node has
    would wait forever, so that is a one-line error. An existing cluster may scale
    up from zero (both files in docs/cluster/ start with no GPU worker): its trials
    wait for the autoscaler, and the returned line says so (None: it fits now)."""
    cpus, gpus = cluster["cpus_per_trial"], cluster.get("gpus_per_trial") or 0
    short = [(f"cluster.{key}={need:g}", f"{most:g} {kind}")
             for key, need, most, kind in (("cpus_per_trial", cpus, info.max_node_cpus, "CPUs"),
                                           ("gpus_per_trial", gpus, info.max_node_gpus, "GPUs")) if need > most]
    if not short:
        return None
    if info.local:
        setting, most = short[0]
        raise ConfigError(f"{setting} but no Ray node has more than {most}")
    return (f"waiting for workers: no Ray node fits {' and '.join(s for s, _ in short)} yet "
            f"({info.nodes} node(s) now); the trials start as the autoscaler adds nodes (Ctrl-C stops)")


def _check_storage(info: ClusterInfo, cluster: dict[str, Any], scaling: bool = False) -> None:
    """Trials on other machines hand their checkpoint to Tune's storage, which
    they must all reach (Ray refuses a path only one machine has). A cluster
    `scaling` up for the trials will run them on machines not there yet."""
    if (info.machines > 1 or scaling) and not cluster.get("storage_path"):
        where = "will add machines for the trials" if scaling else f"spans {info.machines} machines"
        raise ConfigError(f"the Ray cluster {where}: set cluster.storage_path to storage "
                          "they all reach (s3://bucket/path, gs://..., or a shared NFS folder)")


def is_client_address(address: Optional[str]) -> bool:
    return bool(address) and str(address).startswith("ray://")


def check_client(address: Optional[str], tracking_uri: Optional[str]) -> None:
    """Ray Client (ray://) needs its extra installed, and runs Tune (so the
    MLflow writer) on the cluster: the store must be a server, not a file here."""
    if not is_client_address(address):
        return
    tracking_uri = resolve_tracking_uri(tracking_uri)
    if importlib.util.find_spec("grpc") is None:
        raise ConfigError(f"cluster.address={address} needs Ray Client: pip install 'ray[client]' "
                          "(or run the sweep on the head node with cluster.address=auto)")
    if urlparse(tracking_uri).scheme not in ("http", "https", "databricks"):
        raise ConfigError(f"cluster.address={address} runs the trials' bookkeeping on the cluster, which cannot "
                          f"write {tracking_uri}: set tracking.uri=http://<mlflow server>")


def trial_worker_pids(root: int) -> list[int]:
    """Pids of the processes running a Tune function trainable that descend from
    process `root` (a local cluster's raylet is a child of the driver that started
    it, and the trial workers are the raylet's children), never another sweep's,
    even one started from the same terminal session. Linux (/proc) only: the
    fault-injection test and benchmark use it to kill a trial's worker."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # /proc/<pid>/stat: "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return [pid for pid, command in commands.items()
            if command.startswith(TRIAL_PROCESS_PREFIX) and _descends_from(pid, root, parents)]


def _descends_from(pid: int, root: int, parents: dict[int, int]) -> bool:
    """Whether `root` is an ancestor of `pid` in the parent map (pid -> ppid)."""
    seen = set()
    while pid in parents and pid not in seen:
        seen.add(pid)
        pid = parents[pid]
        if pid == root:
            return True
    return False
