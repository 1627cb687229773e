"""A throwaway PostgreSQL cluster and an MLflow tracking server on it, for tests of
what several hosts share (tests/test_ledger_server.py).

PostgreSQL is Debian's `postgresql` package (`.ci/run` installs it where it can):
`initdb`/`pg_ctl` from /usr/lib/postgresql/<version>/bin, run as the `postgres`
user when we are root (PostgreSQL refuses to run as root), else as ourselves.
It listens on 127.0.0.1 and a free port, trusts local connections, and lives in
a temp folder removed afterwards. Without the package, or without psycopg,
`unavailable()` says why in one line and the tests skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional


def free_port() -> int:
    """A local port free right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin() -> Optional[Path]:
    """The newest installed PostgreSQL's bin folder, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable() -> Optional[str]:
    """Why these tests cannot run here (one line), or None."""
    if pg_bin() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it as root)"
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2.1's driver for postgresql:// (MLflow's and Optuna's)
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as another user"
    return None


class Postgres:
    """One cluster in a temp folder; `start`/`stop` may be called again (an outage)."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        assert self.bin is not None
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_user, str(self.bin / tool), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.root)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        try:
            self.stop(mode="immediate")  # thrown away: no checkpoint needed
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on a PostgreSQL database, 127.0.0.1 and a free port; `stop`
    and `start` again keep its port (an outage the clients ride out or not)."""

    def __init__(self, backend: str, artifacts: Path) -> None:
        self.backend, self.artifacts = backend, artifacts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 180.0) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
                   "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout:.0f} s")

    def stop(self, graceful: bool = True) -> None:
        """Stop it and every process it started (its workers)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
