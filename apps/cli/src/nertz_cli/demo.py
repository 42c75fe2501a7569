"""``nertz demo``: the whole pipeline on the bundled real Bybit data, on one machine, no Docker.

Starts embedded NATS and Postgres under a local data folder, applies the topology, starts the five
services as separate processes, replays the bundled data at full speed, waits until every consumer
(and so the projector) has caught up, and prints a per-symbol summary served by the API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
import nats
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from nertz_cli.console import cli_console
from nertz_common import bus, infra, subjects, topology

if TYPE_CHECKING:
    from nertz_cli.verify import LogRead

ROOT = Path(__file__).resolve().parents[4]
DATA = ROOT / "data"
KLINE_FILES = [DATA / "bybit_kline_1m" / f"{s}_1m.csv.xz" for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
RECORDING = DATA / "cryptofeed" / "BYBIT.linear.jsonl.xz"
SUMMARY_KEYS = ("bars", "intents", "approved", "rejected", "suppressed", "round_trips", "win_rate", "pnl_usdt",
                "max_drawdown")  # fmt: skip

HEADERS = {"bars": "bars", "intents": "intents", "approved": "approved", "rejected": "rejected",
           "suppressed": "locked out", "round_trips": "trips", "win_rate": "win rate", "pnl_usdt": "P&L USDT",
           "max_drawdown": "max DD USDT"}  # fmt: skip

#: (service, python module, preferred /metrics port); the api serves /metrics on its own port
SERVICES = (
    ("api", "nertz_api", 8081),
    ("signal", "nertz_signal", 9102),
    ("llm-validator", "nertz_validator", 9103),
    ("executor", "nertz_executor", 9104),
)
SERVICE_NAMES = tuple(name for name, _, _ in SERVICES)
INGEST_METRICS_PORT = 9101
#: the durable consumers each service reads
DURABLES = {
    "api": ("projector",),
    "signal": ("signal",),
    "llm-validator": ("llm-validator",),
    "executor": ("executor-market", "executor-decisions", "executor-verdicts"),
    # acks an event once its posts are sent and recorded: caught up means every post is on the log
    "notifier": ("notifier",),
}

console = cli_console(stderr=True)

#: how long a replicated stream's consumers must stay caught up before :func:`wait_caught_up` says so, s
REPLICATED_QUIET_S = 1.5


@dataclass
class Stack:
    """Everything the demo (or a test) started, so that stopping it stops every process.

    ``nats_url``/``database_url`` point at servers the stack may own (``owned``) or borrow.
    """

    data_dir: Path
    nats_url: str
    database_url: str
    owned: list[infra.EmbeddedNats | infra.EmbeddedPostgres] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 8081
    env: dict[str, str] = field(default_factory=dict)
    #: take any free port rather than the well-known ones (8081, 9101-9104: only the demo's own stack
    #: wants them), so that stacks run side by side (tests, chaos) never race for a port
    any_port: bool = True

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop_services(self) -> None:
        """Stop the services (SIGTERM, then SIGKILL after 10 s)."""
        procs = list(self.procs.items())  # (a fault thread may start or forget one meanwhile)
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in 10 s: killing it[/]")
                p.kill()
                p.wait()
        self.procs.clear()

    def stop(self) -> None:
        """Stop the services, then the servers this stack owns."""
        self.stop_services()
        for server in reversed(self.owned):
            server.stop()


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return infra.free_port()


def _service_env(stack: Stack, metrics_port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NATS_URL=stack.nats_url,
        DATABASE_URL=stack.database_url,
        NERTZ_METRICS_PORT=str(metrics_port),
        PYTHONUNBUFFERED="1",
        **stack.env,
        **extra,
    )
    return env


def start_infra(data_dir: Path, fresh: bool = True) -> Stack:
    """Start embedded NATS and Postgres under ``data_dir`` and apply the topology.

    Postgres (``initdb`` and start, ~1.2 s) comes up in a thread while NATS starts and the topology is
    applied (~0.1 s).

    Raises
    ------
    RuntimeError
        If a server fails to start; what started is stopped again.
    """
    return start_stack(data_dir, (), fresh=fresh)


def start_stack(
    data_dir: Path,
    names: tuple[str, ...] = SERVICE_NAMES,
    *,
    fresh: bool = True,
    env: dict[str, str] | None = None,
    on_bus: Callable[[Stack], None] | None = None,
) -> Stack:
    """Start embedded NATS and Postgres, apply the topology and start the services ``names`` (with the
    extra ``env``) as processes, without waiting for them (:func:`wait_api` waits for the API).

    The services that need no database start as soon as the topology is applied, while Postgres is
    still coming up in a thread; the api starts once it is up. The durable consumers keep the log for
    them, so a replay may start at once (:func:`replay`; ``on_bus`` is called then, with the stack
    whose ``database_url`` is still empty): what a service reads does not depend on when it started.

    Raises
    ------
    RuntimeError
        If a server fails to start; what started is stopped again.
    """
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    owned: list[infra.EmbeddedNats | infra.EmbeddedPostgres] = []
    stack: Stack | None = None
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="postgres") as pool:
        starting_pg = pool.submit(infra.start_postgres, data_dir / "pg")
        try:
            with console.status("starting NATS JetStream and PostgreSQL"):
                n = infra.start_nats(data_dir / "nats", _port(4222), data_dir / "logs" / "nats.log")
                owned.append(n)
                changes = asyncio.run(apply_topology(n.url))
                stack = Stack(data_dir, n.url, "", owned, any_port=False, env=dict(env or {}))
                for name in names:
                    if name != "api":
                        start_service(stack, name)
                if on_bus is not None:
                    on_bus(stack)
                pg = starting_pg.result()
                owned.append(pg)
                stack.database_url = pg.url
                if "api" in names:
                    start_service(stack, "api")
        except BaseException:
            if stack is not None:
                stack.stop_services()
            if not any(isinstance(server, infra.EmbeddedPostgres) for server in owned):
                with contextlib.suppress(Exception):  # still starting: wait for it, to stop it too
                    owned.append(starting_pg.result())
            for server in reversed(owned):
                server.stop()
            raise
    assert stack is not None
    console.print(f"NATS {n.url}, Postgres under {data_dir / 'pg'}; topology: {len(changes)} items applied")
    if names:
        console.print(f"services starting: {', '.join(names)} (logs in {data_dir / 'logs'})")
    return stack


def start_replaying(
    data_dir: Path,
    files: list[Path],
    speed: str = "max",
    *,
    stdout: int | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Stack, float]:
    """:func:`start_stack` with market-ingest's replay of ``files`` (one process, the files merged in
    time order) started as soon as the bus is up, while Postgres still comes up (ingest needs none);
    return the stack and the ``time.monotonic()`` at which the replay started (:func:`wait_replay`
    waits for it).

    Raises
    ------
    RuntimeError
        If a server fails to start; what started is stopped again.
    """
    started = time.monotonic()

    def start_ingest(stack: Stack) -> None:
        nonlocal started
        started = time.monotonic()
        stack.procs["market-ingest"] = start_replay(stack, files, speed, stdout)

    return start_stack(data_dir, env=env, on_bus=start_ingest), started


def start_service(
    stack: Stack, name: str, *, module: str | None = None, args: tuple[str, ...] = (), **env: str
) -> None:
    """Start one service (a name of ``SERVICES``, or any ``name`` with its ``module``) as its own
    process with ``args`` and extra ``env``, logging to ``logs/<name>.log``."""
    preferred = infra.free_port()
    if module is None:
        module, preferred = next((m, p) for n, m, p in SERVICES if n == name)
    port = _port(preferred) if stack.procs.get(name) is None and not stack.any_port else infra.free_port()
    extra: dict[str, str] = dict(env)
    if name == "api":
        stack.api_port = port
        extra["NERTZ_API__PORT"] = str(port)
    (stack.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = open(stack.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    stack.procs[name] = subprocess.Popen(
        [sys.executable, "-m", module, *args], env=_service_env(stack, port, **extra), stdout=log, stderr=log
    )


def start_services(stack: Stack, names: tuple[str, ...] = SERVICE_NAMES) -> None:
    """Start the consumer services (ingest runs later, as the replay) and wait for the API if started."""
    try:
        for name in names:
            start_service(stack, name)
        if "api" in names:
            wait_api(stack)
    except BaseException:
        stack.stop_services()
        raise
    console.print(f"services up: {', '.join(names)} (logs in {stack.data_dir / 'logs'})")


async def apply_topology(url: str, fresh: bool = False) -> list[str]:
    """Apply the stream and consumers on the server at ``url`` (``fresh``: an empty log first)."""
    nc = await nats.connect(bus.servers(url))
    try:
        js = nc.jetstream()
        return await (topology.recreate(js) if fresh else topology.apply(js))
    finally:
        await nc.close()


def wait_api(stack: Stack, timeout_s: float = 60) -> None:
    """Wait until the API answers ``/health`` (polled every 0.1 s, at most ``timeout_s`` seconds).

    Raises
    ------
    RuntimeError
        If a service exited meanwhile, or the API did not answer in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_alive(stack)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{stack.api_url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the API did not answer /health within {timeout_s:.0f} s; see {stack.data_dir}/logs/api.log")


def _check_alive(stack: Stack) -> None:
    for name, p in stack.procs.items():
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode}; see {stack.data_dir}/logs/{name}.log")


def slice_input(d: Path, rows: int) -> list[list[Path]]:
    """Cut the first ``rows`` bars of each bundled CSV into ``d``; return the replay groups: those
    CSVs (one replay), then the bundled WebSocket recording (another)."""
    d.mkdir(parents=True, exist_ok=True)
    csvs = []
    for src in KLINE_FILES:
        out = d / src.name.removesuffix(".xz")
        with lzma.open(src, "rt") as f, out.open("w") as w:
            for n, line in enumerate(f):
                if n > rows:  # the header, then ``rows`` bars
                    break
                w.write(line)
        csvs.append(out)
    return [csvs, [RECORDING]]


def start_replay(
    stack: Stack, files: list[Path], speed: str = "max", stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start market-ingest's replay of ``files`` as its own process (it resumes where the log ends);
    with ``stdout`` None it shows a progress bar."""
    progress = ["--progress"] if stdout is None else []
    cmd = [sys.executable, "-m", "nertz_ingest", "replay", "--speed", speed, *progress, *map(str, files)]
    port = infra.free_port() if stack.any_port else _port(INGEST_METRICS_PORT)
    env = _service_env(stack, port, NERTZ_LOG_LEVEL="WARNING")
    return subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)


def replay(stack: Stack, files: list[Path], speed: str = "max", stdout: int | None = None) -> float:
    """Run market-ingest's replay of ``files`` as its own process; return its wall time (s).

    Raises
    ------
    RuntimeError
        If the replay exits non-zero.
    """
    t0 = time.monotonic()
    stack.procs["market-ingest"] = start_replay(stack, files, speed, stdout)
    wait_replay(stack)
    return time.monotonic() - t0


def wait_replay(stack: Stack) -> None:
    """Wait for the replay started as ``stack.procs["market-ingest"]`` to exit.

    Raises
    ------
    RuntimeError
        If it exits non-zero.
    """
    rc = stack.procs["market-ingest"].wait()
    del stack.procs["market-ingest"]
    if rc != 0:
        raise RuntimeError(f"market-ingest replay exited with {rc}")


def wait_caught_up(
    stack: Stack, timeout_s: float = 600, poll_s: float = 0.1, skip: frozenset[str] = frozenset()
) -> int:
    """Wait until every consumer has handled the whole log (projector included, unless ``skip`` names
    it: durables in ``skip`` are not waited for); return the log size.

    Shows the projector's progress (that of ``executor-market`` without it). Polled every ``poll_s``
    seconds, the log is caught up when no consumer of a running service has pending or unacknowledged
    messages and the log did not grow
    meanwhile (its last sequence read before and after the consumers): a service acknowledges an input
    only once its outputs are stored, so every output of every input is then on the log, and read.
    On a replicated stream a consumer's leader may count against a replica that lags the stream's
    leader, so there that must hold for :data:`REPLICATED_QUIET_S` seconds.
    A bus that does not answer a poll (a cluster electing a leader, a node restarting) is asked again.

    Raises
    ------
    RuntimeError
        If a service died or the pipeline did not settle within ``timeout_s`` (s).
    """
    return asyncio.run(_wait_caught_up(stack, timeout_s, poll_s, skip))


async def _wait_caught_up(stack: Stack, timeout_s: float, poll_s: float, skip: frozenset[str]) -> int:
    nc = await nats.connect(bus.servers(stack.nats_url))
    js = nc.jetstream()
    deadline = time.monotonic() + timeout_s
    bar = _events_bar("pipeline")
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            _check_alive(stack)
            try:
                info = await js.stream_info(subjects.STREAM)
                last = info.state.last_seq
                busy = 0
                durables = [d for name in stack.procs for d in _durables(name) if d not in skip]
                shown = "projector" if "projector" in durables else "executor-market"
                for durable in durables:
                    ci = await js.consumer_info(subjects.STREAM, durable)
                    busy += ci.num_pending + ci.num_ack_pending
                    if durable == shown:
                        bar.total = last
                        bar.update(ci.ack_floor.stream_seq - bar.n)
                        bar.set_description(f"{durable} caught up", refresh=False)
                grown = (await js.stream_info(subjects.STREAM)).state.last_seq != last
            except bus.OUTAGE:  # a cluster electing a leader, a node restarting: not caught up, ask again
                quiet_since = None
                await asyncio.sleep(poll_s)
                continue
            if busy == 0 and not grown:
                quiet_since = quiet_since or time.monotonic()
                if (info.config.num_replicas or 1) == 1 or time.monotonic() - quiet_since >= REPLICATED_QUIET_S:
                    bar.update(last - bar.n)  # all of the log is handled (a lane's ack floor is its last message)
                    return last
            else:
                quiet_since = None
            await asyncio.sleep(poll_s)
        raise RuntimeError(f"the pipeline did not settle within {timeout_s:.0f} s")
    finally:
        bar.close()
        await nc.close()


def _events_bar(desc: str) -> tqdm[Any]:
    """A progress bar of events on stderr (redrawn every 0.2 s on a terminal, every 15 s in a log)."""
    tty = sys.stderr.isatty()
    return tqdm(desc=desc, unit="ev", file=sys.stderr, dynamic_ncols=tty, mininterval=0.2 if tty else 15)


def read_log_to_verify(stack: Stack, desc: str | None = None) -> LogRead:
    """The log as :func:`nertz_cli.verify.read_for_checks` reads it (the records the
    checks and the validator's figures read, and the event ids of the rest); with ``desc``, a progress
    bar so named shows the read (~3 s for the demo's 263k events)."""
    from nertz_cli import verify as checks

    async def go() -> checks.LogRead:
        nc = bus.fast_headers(await nats.connect(bus.servers(stack.nats_url)))
        bar = _events_bar(desc) if desc is not None else None

        def progress(seq: int, last: int) -> None:
            if bar is not None:
                bar.total = last
                bar.update(seq - bar.n)

        try:
            return await checks.read_for_checks(nc.jetstream(timeout=10), progress=progress)
        finally:
            if bar is not None:
                bar.close()
            await nc.close()

    return asyncio.run(go())


def _durables(service: str) -> tuple[str, ...]:
    """The durable consumers a running service reads (a shadow validator's is named like it)."""
    if service.startswith(topology.shadow_name("")):
        return (service,)
    return DURABLES.get(service, ())


def verify_log(stack: Stack, read: LogRead | None = None) -> list[str]:
    """Run ``nertz verify``'s checks over the whole log (``read``: as :func:`read_log_to_verify` returns
    it); return one line per check."""
    from nertz_cli import verify as checks

    got = read if read is not None else read_log_to_verify(stack)
    return [c.line() for c in checks.verify(got.records, got.ids)]


def validator_line(records: list[Any]) -> str:
    """Who decided the verdicts, and what the model calls cost (one line for the summary)."""
    from statistics import median

    from nertz_common import events as ev

    policies: Counter[str] = Counter()
    reviews: Counter[str] = Counter()
    calls: list[ev.ModelCall] = []
    failed = 0
    for r in records:
        e = r.event
        if isinstance(e, ev.VerdictIssued):
            policies[e.policy] += 1
            failed += e.failure is not None
            calls += e.calls
        elif isinstance(e, ev.RiskOverrideIssued):
            reviews[e.policy] += 1
            calls += [e.call] if e.call is not None else []
    line = "verdicts by policy: " + (", ".join(f"{k} {v:,}" for k, v in policies.most_common()) or "none")
    if reviews:
        line += "; breaker reviews: " + ", ".join(f"{k} {v:,}" for k, v in reviews.most_common())
    if calls:
        line += (
            f"; model calls {len(calls):,}, median {median(c.latency_ms for c in calls):,.0f} ms, tokens "
            f"{sum(c.tokens_in for c in calls):,} in / {sum(c.tokens_out for c in calls):,} out, cost "
            f"{sum(c.cost_usd for c in calls):,.4f} USD, fail-closed rejects {failed:,}"
        )
    return line


def fetch_summary(stack: Stack) -> dict[str, dict[str, float]]:
    """Return the per-symbol summary from the API's ``/profit`` (read from Postgres)."""
    r = httpx.get(f"{stack.api_url}/profit", timeout=10)
    r.raise_for_status()
    body = r.json()
    per_symbol = body.get("symbols", body)
    return {sym: {k: row[k] for k in SUMMARY_KEYS} for sym, row in per_symbol.items()}


def print_summary(summary: dict[str, dict[str, float]], figures: dict[str, float], validator: str = "rules") -> None:
    """Print the per-symbol table and the run's figures."""
    table = Table(title=f"Nertz demo — paper trading on real Bybit data ({validator} validator)")
    table.add_column("symbol")
    for key in SUMMARY_KEYS:
        table.add_column(HEADERS[key], justify="right")
    for sym, row in sorted(summary.items()):
        table.add_row(
            sym,
            *(
                f"{row[k]:.1%}" if k == "win_rate" else f"{row[k]:,.2f}" if isinstance(row[k], float) else str(row[k])
                for k in SUMMARY_KEYS
            ),
        )
    out = Console(width=None if sys.stdout.isatty() else 120)
    out.print(table)
    out.print(
        "figures: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, even when SIGINT was inherited as ignored
    (as it is for a background job of a non-interactive shell)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def run_demo(
    data_dir: Path,
    exit_after: bool,
    summary_file: Path | None,
    speed: str = "max",
    qwen_latency_s: float | None = None,
) -> None:
    """Run the demo end to end (see the module docstring).

    With ``qwen_latency_s``, the validator asks Qwen — a fake DashScope on 127.0.0.1 answering after
    that many seconds, deterministically per prompt — through the real dashscope SDK.
    """
    missing = [p for p in [*KLINE_FILES, RECORDING] if not p.exists()]
    if missing:
        raise FileNotFoundError(f"expected the bundled data files, missing: {', '.join(map(str, missing))}")
    t_start = time.monotonic()
    with _stop_on_signals(), contextlib.ExitStack() as extras:
        validator = "rules"
        env: dict[str, str] = {}
        if qwen_latency_s is not None:
            from nertz_common.testing.fake_dashscope import FakeDashScope

            fake = extras.enter_context(FakeDashScope(latency_s=qwen_latency_s).in_thread())
            env.update(DASHSCOPE_API_KEY="sk-demo-fake-key", DASHSCOPE_HTTP_BASE_URL=fake.base_url)
            validator = "Qwen (fake DashScope)"
            console.print(f"Qwen: a fake DashScope at {fake.base_url}, answering in {qwen_latency_s:g} s")
        try:
            # the services and the replay (one process, the files merged in time order: the klines,
            # then the recording a year later) start while Postgres comes up: each service reads its
            # durable consumer from the log's start, whenever it is ready
            stack, t0 = start_replaying(data_dir, [*KLINE_FILES, RECORDING], speed, env=env)
            extras.callback(stack.stop)
            wait_replay(stack)
            replay_s = time.monotonic() - t0
            # once every service that publishes to the log has read all of it, the log is complete (the
            # projector only reads it): it is read to be verified while the projector catches up
            wait_caught_up(stack, skip=frozenset({"projector"}))
            reading = extras.enter_context(concurrent.futures.ThreadPoolExecutor(1, "verify"))
            read_early = reading.submit(read_log_to_verify, stack)
            log_size = wait_caught_up(stack)
            pipeline_s = time.monotonic() - t0
            read = read_early.result()  # first: the read holds the GIL, which would slow the summary's request
            wait_api(stack)
            summary = fetch_summary(stack)
            figures = {
                "log events": log_size,
                "ingest replay s": replay_s,
                "pipeline s": pipeline_s,
                "end-to-end events/s": log_size / pipeline_s,
                "demo wall s": time.monotonic() - t_start,
            }
            print_summary(summary, figures, validator)
            if exit_after:  # nothing needs them now: they stop (a snapshot each) meanwhile
                stopping = threading.Thread(target=stack.stop_services, name="stop-services")
                stopping.start()
                extras.callback(stopping.join)
            if read.last_seq < log_size:  # the projector dead-lettered a row meanwhile
                read = read_log_to_verify(stack, desc="reading the log to verify it")
            console.print(validator_line(read.records))
            for line in verify_log(stack, read):
                console.print(("[green]" if line.startswith("ok") else "[red]") + f"verify {line}[/]")
            if summary_file:
                summary_file.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
                console.print(f"summary written to {summary_file}")
            if not exit_after:
                console.print(f"the API stays up on {stack.api_url} (try /profit, /status, /docs); Ctrl-C stops all")
                while True:
                    _check_alive(stack)
                    time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
