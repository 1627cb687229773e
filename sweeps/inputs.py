"""Checks of the values that name things outside the config: names that become
folders, files the trials will open, the tracking server. Each failure is a
one-line ConfigError raised on the driver before Ray starts or anything is
written (a trial would otherwise fail the same way N times, after minutes).

What the driver can see is what it checks: the data and the weights of a
cluster of this machine (the default) are on this disk; on an existing
cluster they live on the workers, which the driver cannot look at.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from detector.config import SYNTHETIC_WEIGHTS, ConfigError, TrialConfig
from sweeps.redact import redact

CONNECT_TIMEOUT_S = 3.0  # a tracking server that does not answer within this is reported, not retried for minutes
# the services a sweep connects to by URL, at their usual ports (SQLAlchemy drivers: postgresql+psycopg2)
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306}


def check_name(key: str, value: str) -> None:
    """`value` becomes one folder name (reports/<sweep.name>/, mlruns/<tracking.experiment>/):
    refuse anything that would be a path instead (a "/", "..", empty)."""
    text = str(value)
    if not text.strip() or text in (".", "..") or any(mark in text for mark in ("/", "\\", "\0")) or ".." in text:
        raise ConfigError(f"{key}={text!r} must be a plain name (it names a folder): no '/', '\\' or '..'")


def check_trial_files(configs: Iterable[TrialConfig], local: bool) -> None:
    """model.pretrained must be a keyword or an absolute path (the trials run in other
    folders); on a cluster of this machine, data.root and a weights file must exist."""
    for config in configs:
        _check_pretrained(config.model.pretrained, local)
        if local and config.data.kind == "coco" and config.data.root:
            root = Path(config.data.root).expanduser()
            if not root.is_dir():
                raise ConfigError(f"data.root={config.data.root} does not exist here: give the folder holding "
                                  "COCO's annotations/ and train2017/")


def weight_keywords() -> tuple[str, ...]:
    """The model.pretrained values that name weights rather than files: the detector's
    IMAGENET (detector/backbone.py) and SYNTHETIC_WEIGHTS (detector/sections.py)."""
    from detector.backbone import IMAGENET  # loaded already: validation reads the backbone registry

    return (IMAGENET, SYNTHETIC_WEIGHTS)


def _check_pretrained(pretrained: str | None, local: bool) -> None:
    keywords = weight_keywords()
    if pretrained is None or pretrained in keywords:
        return
    path = Path(pretrained).expanduser()
    choices = " / ".join(keywords)
    if not path.is_absolute():
        raise ConfigError(f"model.pretrained={pretrained} is a relative path, which each trial would read from "
                          f"its own folder: give an absolute path, or {choices}")
    if local and not path.is_file():
        raise ConfigError(f"model.pretrained={pretrained} does not exist here: give a ResNet state-dict file, "
                          f"or {choices}")


def resolve_tracking_uri(uri: str | None) -> str:
    """tracking.uri, or MLflow's own default (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)."""
    if uri:
        return uri
    import mlflow  # slow to import: only when the default is asked for

    return mlflow.get_tracking_uri()


def check_tracking_server(uri: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """An http(s) tracking.uri must accept a connection now: MLflow's client would
    otherwise retry for minutes and end in a traceback. Other stores are opened
    by the driver before Ray starts, which reports them itself."""
    _check_reachable("tracking.uri", uri, "is the MLflow server running, and reachable from here (an SSH tunnel?)",
                     timeout)


def check_study_storage(storage: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """An RDB sweep.storage (postgresql://, mysql://) must accept a connection now: the
    study is opened only after Ray has started, where a dead server is a traceback.
    A journal file or SQLite needs no server."""
    _check_reachable("sweep.storage", storage, "is the database server running, and reachable from here?", timeout)


def _check_reachable(key: str, uri: str | None, hint: str, timeout: float) -> None:
    """A one-line ConfigError unless the server a URL names accepts a TCP connection."""
    if not uri:
        return
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql
    if scheme not in DEFAULT_PORTS or not parsed.hostname:
        return
    port = parsed.port or DEFAULT_PORTS[scheme]
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise ConfigError(f"{key}={redact(uri)}: cannot connect to {parsed.hostname}:{port} ({reason}); "
                          f"{hint}") from None
