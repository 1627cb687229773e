"""Secrets stay secret (issue 24, item 5): a password in a store's URI is
redacted in everything the sweep prints, logs to MLflow, or leaves pickled
in Tune's storage; the cluster files are secure by default.

The sweep here is a real one (in-process, a local Ray cluster, trial
functions that train nothing) whose MLflow store and Optuna study are SQLite
URLs carrying `?password=`: both stores accept the argument (and ignore it),
so the secret travels every path a PostgreSQL password would.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from sweeps.cluster import quiet_ray
from sweeps.redact import conceal, redact, reveal
from sweeps.run import main
from sweeps.search import optuna_storage

SECRET = "s3cret-Pw"
ROOT = Path(__file__).resolve().parents[1]


# -- redact ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("postgresql://optuna:s3cret@db.internal:5432/optuna", "postgresql://optuna:***@db.internal:5432/optuna"),
    ("postgresql+psycopg2://u:p@ss/w:rd@db:5432/x", "postgresql+psycopg2://u:***@db:5432/x"),  # "@", "/" in it
    ("http://alice:pw@mlflow.internal:5000", "http://alice:***@mlflow.internal:5000"),
    ("postgresql://u@db/optuna?sslmode=require&password=s3cret", "postgresql://u@db/optuna?sslmode=require&password=***"),
    ("https://u:pw@host/x?token=abc&page=2", "https://u:***@host/x?token=***&page=2"),
    ("storage: postgresql://o:s3cret@db/optuna\nuri: http://a:b@h:5000  # ask bob@example.com",
     "storage: postgresql://o:***@db/optuna\nuri: http://a:***@h:5000  # ask bob@example.com"),
    ("error: could not connect to postgresql://o:s3cret@db/optuna: timeout",
     "error: could not connect to postgresql://o:***@db/optuna: timeout"),
])
def test_redact_masks_the_password_of_every_uri_in_a_text(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "sqlite:///mlflow.db", "sqlite:////abs/path/mlflow.db", "http://mlflow.internal:5000", "s3://bucket/ray-results",
    "ray://head:10001", "postgresql://optuna@db/optuna", "mysql://root:@localhost/db", "user@example.com",
])
def test_redact_leaves_uris_without_a_password_alone(text):
    assert redact(text) == text


def test_conceal_hides_a_password_that_reveal_gives_back_in_this_process_only():
    uri = "postgresql://optuna:s3cret@db.internal/optuna"
    assert conceal(uri) == "postgresql://optuna:***@db.internal/optuna" and reveal(conceal(uri)) == uri
    assert reveal("postgresql://other:***@db/x") == "postgresql://other:***@db/x"  # never concealed here


def test_the_optuna_storage_pickles_without_its_password_and_reconnects_here(tmp_path):
    storage = optuna_storage(f"sqlite:///{tmp_path}/optuna.db?password={SECRET}")
    data = pickle.dumps(storage)
    assert SECRET.encode() not in data
    assert pickle.loads(data).get_all_studies() == []  # the copy connects with the original URL


# -- a sweep with passwords in both store URIs -----------------------------------------------
@pytest.fixture(scope="module")
def secret_sweep(tmp_path_factory):
    """A two-trial search whose tracking URI and Optuna storage carry SECRET; Tune's
    copies are kept (normally removed at the end) so their pickles can be read."""
    root = tmp_path_factory.mktemp("secret")
    quiet_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    patch = pytest.MonkeyPatch()
    patch.setattr("sweeps.driver._remove_tune_copies", lambda results: None)
    out, err = io.StringIO(), io.StringIO()
    args = ["+sweep=search", "profile=smoke", "sweep.num_samples=2", "sweep.eval_every=10", "train.iterations=20",
            "trial.function=tests.fake_trials:ap_from_alpha",
            f"tracking.uri='sqlite:///{root}/mlflow.db?password={SECRET}'",  # quoted: Hydra reads "=" in it
            f"sweep.storage='sqlite:///{root}/optuna.db?password={SECRET}'",
            f"cluster.storage_path={root}/ray_results", f"output_dir={root}/outputs", f"reports_dir={root}/reports"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
    finally:
        patch.undo()
        ray.shutdown()
    return root, code, out.getvalue(), err.getvalue()


def test_the_sweep_ran_and_printed_its_stores_without_the_password(secret_sweep):
    _, code, out, err = secret_sweep
    assert code == 0, err
    assert SECRET not in out and SECRET not in err
    assert "password=***" in out  # the summary names the stores, redacted
    assert "2 finished, 0 failed" in out


def test_the_parent_runs_config_params_and_tags_hold_no_password(secret_sweep):
    root = secret_sweep[0]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("retinanet-sweeps")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
    config = yaml.safe_load(Path(client.download_artifacts(parent.info.run_id, "config.yaml", str(root))).read_text())
    assert config["sweep"]["storage"] == f"sqlite:///{root}/optuna.db?password=***"
    assert config["tracking"]["uri"] == f"sqlite:///{root}/mlflow.db?password=***"
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if SECRET in v], run.info.run_id


def test_tunes_pickled_state_holds_no_password(secret_sweep):
    root = secret_sweep[0]
    files = [path for path in (root / "ray_results").rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert "tuner.pkl" in names and any(name.startswith("searcher-state") for name in names)  # what was read
    assert not [path for path in files if SECRET.encode() in path.read_bytes()]


# -- the cluster files -----------------------------------------------------------------------
def cluster_file(name: str) -> dict:
    return yaml.safe_load((ROOT / "docs" / "cluster" / name).read_text())


def test_the_aws_cluster_binds_the_dashboard_to_localhost_with_token_auth():
    cfg = cluster_file("ray-aws.yaml")
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    for commands in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start
    assert "~/.ray/auth_token" in cfg["file_mounts"]  # the token reaches every node


def test_the_kuberay_cluster_pins_its_image_and_turns_token_auth_on():
    spec = cluster_file("kuberay-raycluster.yaml")["spec"]
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0],
                  *(g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"])]
    for container in containers:
        image = container["image"]
        assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # from a Secret, not written in the file
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    dockerfile = (ROOT / "docs" / "cluster" / "Dockerfile").read_text()
    assert "retinanet-sweeps:latest" not in dockerfile and "FROM rayproject/ray:2.60.0-" in dockerfile


def test_the_cluster_doc_binds_mlflow_to_localhost_and_tunnels_to_it():
    text = (ROOT / "docs" / "CLUSTER.md").read_text()
    assert "--host 0.0.0.0" not in text and "mlflow server --host 127.0.0.1" in text
    assert "ssh -N -L 5000:127.0.0.1:5000" in text
    assert "RAY_AUTH_MODE=token" in text and "retinanet-sweeps:latest" not in text
