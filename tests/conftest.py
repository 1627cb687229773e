"""Shared fixtures: the composed Hydra config of a profile, as a TrialConfig."""

from __future__ import annotations

import pytest

from detector.config import TrialConfig
from sweeps.compose import trial_config


def compose_trial(overrides: list[str]) -> TrialConfig:
    """TrialConfig of conf/ with Hydra `overrides` (e.g. ["profile=smoke"])."""
    return trial_config(overrides)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> str:
    """One synthetic-data cache shared by the session's smoke runs."""
    return str(tmp_path_factory.mktemp("synthetic-cache"))


@pytest.fixture(scope="module")
def local_ray():
    """A quiet 2-CPU local Ray cluster for a test module's sweeps (they reuse it), shut down after the module."""
    import logging

    import ray

    from sweeps.cluster import quiet_ray

    quiet_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (tests/pg.py) for the session; skips, saying why, without one."""
    from tests import pg

    reason = pg.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = pg.Postgres()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """An MLflow tracking server on a fresh PostgreSQL database, for a test module."""
    import uuid

    from tests import pg

    backend = postgres.create_database(f"mlflow_{uuid.uuid4().hex[:8]}")
    server = pg.MlflowServer(backend, tmp_path_factory.mktemp("mlartifacts"))
    server.start()
    yield server
    server.stop(graceful=False)  # thrown away with its database
