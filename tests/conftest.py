"""Shared fixtures: the composed Hydra config of a profile, as a TrialConfig; clusters and stores."""

from __future__ import annotations

import os
import sqlite3

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


@pytest.fixture(scope="session", autouse=True)
def migrated_sqlite_template(tmp_path_factory):
    """Fresh SQLite MLflow stores start as a copy of one store migrated in this session.

    MLflow migrates every new SQLite file through its ~60 Alembic revisions (2-5 s on
    2 cores), and the suite makes dozens of them. Here the first one is migrated by
    MLflow itself and each later empty file gets its tables by SQLite's backup API:
    the same schema and revision, in milliseconds. Only this test process's stores are
    affected (not Ray workers' or subprocesses'); a store that is not an empty SQLite
    file is migrated as before. The copy holds no experiment: the store then makes its
    own Default one, with its own artifact root.
    """
    import sqlalchemy
    from mlflow.store.db import utils

    migrate = utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-template") / "migrated.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{template}")
    migrate(engine)
    engine.dispose()

    def from_template(engine) -> None:
        path = engine.url.database
        if engine.url.get_backend_name() != "sqlite" or not path or path == ":memory:" \
                or not os.path.isfile(path) or not utils._is_empty_database(engine):
            return migrate(engine)
        with sqlite3.connect(template) as source, sqlite3.connect(path) as target:
            source.backup(target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_initialize_tables", from_template)
        yield template
