"""``nertz chaos``: the services as processes on real NATS and Postgres, faults injected, each run
compared with an uninterrupted run of the same input.

A *run* is the pipeline of :mod:`nertz_cli.demo` on its own embedded NATS JetStream and PostgreSQL:
the api (projector + HTTP), signal, the validator and the executor as processes, and market-ingest
replaying a slice of the bundled Bybit data (``rows`` 1m bars per symbol, then the WebSocket
recording). The *baseline* is one uninterrupted run; every fault then runs the same input on a fresh
stream and a fresh database while the fault is injected, waits until the pipeline settles, and is
compared with the baseline (:func:`compare`):

- **lost**: events of the baseline's log (market data and decisions, by id) missing from the run,
  plus projected rows missing from Postgres;
- **duplicated**: events stored more than once, plus projected rows the baseline does not have;
- **divergent**: events of the run the baseline does not have, events with the same id and another
  payload, and events in another order within their producer's symbol;
- **stalled**: the run did not settle within its time limit, or a service exited on its own;
- **errors**: server errors (5xx other than a 503 with a reason) and leaked secrets of the API
  fuzzer, and API answers during an outage that were not JSON 503s.

Every count must be 0. Positions are taken from the log (a consumer's ack floor), not from timing, so
a fault lands mid-run by construction. The random kills are seeded (``--seed``).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import nats

from nertz_cli import demo
from nertz_common import bus, infra, subjects, topology
from nertz_common import events as ev

T = TypeVar("T")

#: the tables whose row counts a run must share with the baseline (key decisions and market data)
TABLES = (
    "candles", "factor_snapshots", "intents", "verdicts", "verdicts_awaited", "suppressed", "orders", "fills",
    "round_trips", "lock_history",
)  # fmt: skip
#: services that can be killed, with the durable consumer whose ack floor says how far each got
PROGRESS = {"signal": "signal", "llm-validator": "llm-validator", "executor": "executor-market", "api": "projector"}
CONSUMERS = ("api", "signal", "llm-validator", "executor")
#: the API's admin token in every run: a sentinel the fuzzer looks for in every answer
ADMIN_TOKEN = "chaos-sentinel-admin-token-3f9c"
#: the log's domains compared with the baseline (``sys`` holds dead letters and commands: not compared)
COMPARED = ("md", "sig", "llm", "exec", "venue")


@dataclass
class Outcome:
    """What one fault did to the pipeline, against the baseline (every count must be 0)."""

    fault: str
    describe: str = ""
    lost: int = 0
    duplicated: int = 0
    divergent: int = 0
    stalled: int = 0
    errors: int = 0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.divergent or self.stalled or self.errors)


@dataclass
class Snapshot:
    """What a run left behind: the compared part of the log, in log order, and the projected counts.

    ``log`` holds ``(key, event_id, payload)`` where ``key`` is ``<domain>.<symbol>`` (each producer's
    output per symbol keeps its order; how symbols interleave depends on timing, docs/decisions.md D13).
    """

    log: list[tuple[str, str, bytes]]
    rows: dict[str, int]
    dead_letters: dict[int, set[str]] = field(default_factory=dict)  # stream seq -> services that refused it


def compare(base: Snapshot, run: Snapshot, outcome: Outcome) -> Outcome:
    """Count what ``run`` lost, duplicated or changed against ``base`` into ``outcome`` (and return it)."""
    ids = Counter(i for _, i, _ in run.log)
    outcome.duplicated += sum(n - 1 for n in ids.values())
    base_payload = {i: p for _, i, p in base.log}
    run_payload: dict[str, bytes] = {}
    for _, i, p in run.log:
        run_payload.setdefault(i, p)
    outcome.lost += sum(1 for i in base_payload if i not in run_payload)
    outcome.divergent += sum(1 for i in run_payload if i not in base_payload)
    outcome.divergent += sum(1 for i, p in run_payload.items() if i in base_payload and base_payload[i] != p)
    outcome.divergent += _misordered(base.log, run.log, run_payload.keys() & base_payload.keys())
    for table, n in base.rows.items():
        got = run.rows.get(table, 0)
        outcome.lost += max(0, n - got)
        outcome.duplicated += max(0, got - n)
    return outcome


def _misordered(base: Sequence[tuple[str, str, bytes]], run: Sequence[tuple[str, str, bytes]], common: set[str]) -> int:
    """Events (of ``common``) at another place in their key's sequence than in the baseline."""

    def seqs(log: Sequence[tuple[str, str, bytes]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        seen: set[str] = set()
        for key, i, _ in log:
            if i in common and i not in seen:
                seen.add(i)
                out.setdefault(key, []).append(i)
        return out

    a, b = seqs(base), seqs(run)
    return sum(x != y for key in a.keys() | b.keys() for x, y in zip(a.get(key, []), b.get(key, []), strict=False))


# --- the stack --------------------------------------------------------------------------------------


@dataclass
class Lab:
    """The servers of a chaos session (owned: NATS can be killed, Postgres paused) and the input."""

    data_dir: Path
    nats: infra.EmbeddedNats
    pg: infra.EmbeddedPostgres
    files: list[list[Path]]
    say: Callable[[str], None]
    runs: int = 0

    def stop(self) -> None:
        self.nats.stop()
        self.pg.stop()


def open_lab(data_dir: Path, rows: int, say: Callable[[str], None] = print) -> Lab:
    """Start NATS and Postgres under ``data_dir`` (wiped first) and cut the input slice.

    Raises
    ------
    RuntimeError
        If a server does not start.
    """
    if data_dir.exists():
        shutil.rmtree(data_dir)
    (data_dir / "logs").mkdir(parents=True)
    n = infra.start_nats(data_dir / "nats", infra.free_port(), data_dir / "logs" / "nats.log")
    try:
        pg = infra.start_postgres(data_dir / "pg")
    except BaseException:
        n.stop()
        raise
    return Lab(data_dir, n, pg, demo.slice_input(data_dir / "input", rows), say)


class Run:
    """One pipeline run on a fresh stream and database, with what a fault needs to act on it."""

    def __init__(self, lab: Lab, name: str, ends: dict[str, int] | None = None, expected_md: int = 1) -> None:
        self.lab = lab
        self.name = name
        self.ends = ends or {}  # per service, how far its consumer got in the baseline (stream seq)
        self.expected_md = max(1, expected_md)
        lab.runs += 1
        db = f"chaos_{lab.runs}_{name.replace('-', '_')}"
        asyncio.run(_sql(lab.pg.url, f'CREATE DATABASE "{db}"'))
        self.database_url = _with_database(lab.pg.url, db)
        self.stack = demo.Stack(lab.data_dir / name, lab.nats.url, self.database_url)
        self.stack.env["NERTZ_API__TOKEN"] = ADMIN_TOKEN  # a sentinel: it must never appear in an answer
        self.killed: Counter[str] = Counter()
        self._killed_pids: set[int] = set()  # processes this run killed (their exit is no failure)
        self.exits: list[str] = []
        self.errors = 0
        self.notes: list[str] = []
        self.corpus: dict[int, str] = {}  # stream seq of each malformed message -> what it was
        self.replay_done = threading.Event()
        self._replay_error: BaseException | None = None
        self._replay_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        asyncio.run(demo.apply_topology(self.lab.nats.url, fresh=True))
        demo.start_services(self.stack, CONSUMERS)
        self._replay_thread = threading.Thread(target=self._replay, name="replay", daemon=True)
        self._replay_thread.start()

    def _replay(self) -> None:
        """Replay the input; a replay killed by the fault is started again (it resumes from the log)."""
        try:
            for group in self.lab.files:
                while True:
                    with (self.stack.data_dir / "logs" / "market-ingest.log").open("ab") as log:
                        with self._lock:
                            proc = demo.start_replay(self.stack, group, stdout=log, stderr=log)
                            self.stack.procs["market-ingest"] = proc
                        rc = proc.wait()
                    with self._lock:
                        self.stack.procs.pop("market-ingest", None)
                    if rc == 0:
                        break
                    if proc.pid not in self._killed_pids:
                        self.exits.append(f"market-ingest replay exited {rc}")
        except BaseException as e:
            self._replay_error = e
        finally:
            self.replay_done.set()

    def settle(self, timeout_s: float) -> bool:
        """Wait for the replay and for every consumer to catch up; restart a service that died on its own.

        Returns False when the run did not settle within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        if not self.replay_done.wait(max(0.0, deadline - time.monotonic())):
            self.notes.append("the replay did not finish")
            return False
        if self._replay_error is not None:
            self.notes.append(f"the replay failed: {self._replay_error!r}")
            return False
        while time.monotonic() < deadline:
            try:
                demo.wait_caught_up(self.stack, timeout_s=max(1.0, deadline - time.monotonic()))
                return True
            except RuntimeError as e:
                dead = [n for n, p in self.stack.procs.items() if p.poll() is not None]
                if not dead:
                    self.notes.append(f"{e}: {asyncio.run(_backlog(self.lab.nats.url))}")
                    return False
                for name in dead:
                    self.exits.append(f"{name} exited {self.stack.procs[name].returncode}")
                    demo.start_service(self.stack, name)
        return False

    def stop(self) -> None:
        self.stack.stop_services()

    # --- what faults do -----------------------------------------------------------------------------

    def progress(self, service: str) -> float:
        """How far ``service`` got, as a fraction of where its consumer ended in the baseline
        (market-ingest: of the market data) — 0 while the bus is down."""
        try:
            if service == "market-ingest":
                return stored(self.lab.nats.url, "md") / self.expected_md
            floor = _consumer(self.lab.nats.url, PROGRESS[service]).ack_floor.stream_seq
            return int(floor) / max(1, self.ends.get(service, 1))
        except Exception:
            return 0.0

    def wait_progress(self, service: str, at: float, timeout_s: float = 120) -> bool:
        """Wait until ``service`` got to ``at`` (a fraction of the log); False if it never did (its
        consumer drained short of it: a log of this run may end a little earlier than the baseline's)."""
        deadline = time.monotonic() + timeout_s
        last, since = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            if service == "market-ingest" and self.replay_done.is_set():
                return False
            now = self.progress(service)
            if now >= at:
                return True
            if now != last:
                last, since = now, time.monotonic()
            elif self.replay_done.is_set() and time.monotonic() - since > 3 and self._drained(service):
                self.notes.append(f"{service} drained at {now:.2f} of the baseline, short of {at:.2f}")
                return False
            time.sleep(0.01)
        return False

    def _drained(self, service: str) -> bool:
        try:
            ci = _consumer(self.lab.nats.url, PROGRESS[service])
            return bool(ci.num_pending == 0 and ci.num_ack_pending == 0)
        except Exception:
            return False

    def kill(self, service: str, restart_after_s: float = 0.0) -> bool:
        """SIGKILL ``service`` and start it again (the replay is restarted by its own loop)."""
        with self._lock:
            proc = self.stack.procs.get(service)
            if proc is None or proc.poll() is not None:
                return False
            self._killed_pids.add(proc.pid)
            proc.kill()
            proc.wait()
        self.killed[service] += 1
        if service != "market-ingest":
            time.sleep(restart_after_s)
            demo.start_service(self.stack, service)
        return True

    def probe_api(self) -> None:
        """One read of the API: a JSON answer (200, or a 503 with a reason) is fine, anything else an error."""
        try:
            r = httpx.get(f"{self.stack.api_url}/status", timeout=2)
        except httpx.HTTPError as e:
            self.errors += 1
            self.notes.append(f"the API did not answer: {e!r}"[:200])
            return
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        if r.status_code == 200 or (r.status_code == 503 and isinstance(body, dict) and body.get("reason")):
            return
        self.errors += 1
        self.notes.append(f"the API answered {r.status_code}: {r.text[:120]!r}")

    # --- what it left ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return snapshot(self.lab.nats.url, self.database_url)


async def probe(url: str, read: Callable[[Any], Awaitable[T]]) -> T:
    """``read(js)`` on a connection of its own that fails fast (a probe while the bus may be down)."""
    nc = await nats.connect(bus.servers(url), connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False)
    try:
        return await read(nc.jetstream(timeout=1))
    finally:
        await nc.close()


def _consumer(url: str, durable: str) -> Any:
    """The ``ConsumerInfo`` of ``durable`` (ack floor, pending, unacknowledged)."""
    return asyncio.run(probe(url, lambda js: js.consumer_info(subjects.STREAM, durable)))


def stored(url: str, domain: str | None = None) -> int:
    """How many messages the stream holds (of ``domain`` only, when given); the last sequence for all."""

    async def read(js: Any) -> int:
        if domain is None:
            return int((await js.stream_info(subjects.STREAM)).state.last_seq)
        info = await js.stream_info(subjects.STREAM, subjects_filter=subjects.filter_of(domain))
        return sum((info.state.subjects or {}).values())

    return asyncio.run(probe(url, read))


async def _backlog(url: str) -> str:
    """Each consumer's pending and unacknowledged messages, and its ack floor (why a run did not settle)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        parts = []
        for spec in topology.CONSUMERS:
            ci = await js.consumer_info(subjects.STREAM, spec.durable)
            if ci.num_pending or ci.num_ack_pending:
                parts.append(
                    f"{spec.durable}: {ci.num_pending} pending, {ci.num_ack_pending} unacked, "
                    f"ack floor {ci.ack_floor.stream_seq}, delivered {ci.delivered.stream_seq}"
                )
        return "; ".join(parts) or "no backlog"
    finally:
        await nc.close()


async def _sql(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    from nertz_common.testing.plugin import with_database

    return with_database(url, name)


def snapshot(nats_url: str, database_url: str) -> Snapshot:
    """What a run left on the log at ``nats_url`` (one server or a cluster's, comma-separated) and in
    the database at ``database_url``, to :func:`compare` with another run's."""
    return asyncio.run(_snapshot(nats_url, database_url))


async def _snapshot(nats_url: str, database_url: str) -> Snapshot:
    from nertz_common.node.log import read_log

    nc = await nats.connect(bus.servers(nats_url))
    try:
        records = await read_log(nc.jetstream(timeout=10), filters=[subjects.filter_of(d) for d in COMPARED])
        dlq = await read_log(nc.jetstream(timeout=10), filters=[subjects.filter_of("sys")])
    finally:
        await nc.close()
    log = [
        (f"{subjects.parse(r.subject).domain}.{getattr(r.event, 'symbol', '')}", r.event.event_id, r.raw)
        for r in records
    ]
    conn = await asyncpg.connect(database_url)
    try:
        rows = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
    finally:
        await conn.close()
    dead: dict[int, set[str]] = {}
    for r in dlq:
        if isinstance(r.event, ev.DeadLettered) and r.event.stream_seq is not None:
            dead.setdefault(r.event.stream_seq, set()).add(r.event.service)
    return Snapshot(log, rows, dead)


def replays_identically(nats_url: str, timeout_s: float = 300) -> str | None:
    """Run ``nertz replay`` over the whole log at ``nats_url``; None when it re-derives every decision
    identically, else what it printed (the run's own log must replay to itself, faults and all)."""
    cmd = [str(Path(sys.executable).with_name("nertz")), "replay", "--nats-url", nats_url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    return None if done.returncode == 0 else (done.stdout + done.stderr)[-400:]


# --- faults -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A named fault: ``inject(run)`` runs while the replay publishes and returns when it is over."""

    name: str
    describe: str
    inject: Callable[[Run], None]


def sigkills(n: int, seed: int, services: Sequence[str]) -> Fault:
    """``n`` SIGKILLs at seeded random log positions, each of a seeded random one of ``services``."""

    def inject(run: Run) -> None:
        rng = random.Random(seed)
        who = list(services)
        rng.shuffle(who)  # each service at least once when n allows, then at random
        who = (who + [rng.choice(list(services)) for _ in range(max(0, n - len(who)))])[:n]
        plan = sorted((rng.uniform(0.03, 0.9), service, rng.uniform(0, 0.5)) for service in who)

        def kill_in_turn(steps: list[tuple[float, str, float]]) -> None:
            for at, service, pause_s in steps:
                if not run.wait_progress(service, at) and service == "market-ingest":
                    run.notes.append(f"the replay finished before {at:.2f} of its market data: not killed")
                    continue
                if not run.kill(service, restart_after_s=pause_s):
                    run.notes.append(f"{service} was not running at {at:.2f}")

        # the replay's progress runs ahead of the consumers': its kills go in turn on their own thread
        feeder = threading.Thread(target=kill_in_turn, args=([p for p in plan if p[1] == "market-ingest"],))
        feeder.start()
        kill_in_turn([p for p in plan if p[1] != "market-ingest"])
        feeder.join()
        run.notes.append("killed " + ", ".join(f"{s} ×{k}" for s, k in sorted(run.killed.items())))

    who = "/".join(services)
    short = "all" if len(services) >= 5 else "+".join(s.removeprefix("llm-") for s in services)
    return Fault(f"sigkill×{n}-{short}", f"{n} random SIGKILLs of {who}, each restarted", inject)


def nats_down(sig: int, down_s: float, times: int = 1, at: float = 0.3) -> Fault:
    """NATS stopped with ``sig`` at ``at`` of the log for ``down_s`` seconds, ``times`` times over."""
    how = signal.Signals(sig).name

    def inject(run: Run) -> None:
        step = (0.85 - at) / max(1, times)
        for k in range(times):
            run.wait_progress("executor", at + k * step)
            run.lab.nats.kill(sig)
            time.sleep(down_s)  # the outage itself: its length is the fault
            run.lab.nats.restart()

    label = f"NATS {how} {down_s:g} s" if times == 1 else f"NATS {how}, {times} × {down_s:g} s"
    name = f"nats-{how.lower()}-{down_s:g}s" if times == 1 else f"nats-{how.lower()}-{times}x{down_s:g}s"
    return Fault(name, label, inject)


def postgres_down(down_s: float, at: float = 0.3) -> Fault:
    """Postgres stopped at ``at`` of the log for ``down_s`` seconds while the API is read."""

    def inject(run: Run) -> None:
        run.wait_progress("api", at)
        run.lab.pg.pause()
        try:
            end = time.monotonic() + down_s
            while time.monotonic() < end:  # the outage: read the API all along
                run.probe_api()
                time.sleep(0.5)
        finally:
            run.lab.pg.resume()
        if run.stack.procs["api"].poll() is not None:
            run.exits.append("api exited during the Postgres outage")

    return Fault(f"postgres-down-{down_s:g}s", f"Postgres down {down_s:g} s", inject)


#: malformed messages published straight onto subjects the services read: (subject, payload, what it is)
CORPUS: tuple[tuple[str, bytes, str], ...] = (
    ("md.bar.bybit.linear.BTCUSDT", b"not json at all", "not JSON"),
    ("md.bar.bybit.linear.ETHUSDT", b'{"type":"Bar","event_id":"chaos-bar"}', "a Bar without its fields"),
    ("md.book.bybit.linear.SOLUSDT", b'{"type":"NoSuchEvent","event_id":"chaos-x"}', "an unknown event type"),
    ("md.trade.bybit.linear.BTCUSDT", b'{"type":"Bar",', "truncated JSON"),
    ("md.ticker.bybit.linear.ETHUSDT", b"", "an empty payload"),
    ("sig.factor.bybit.linear.BTCUSDT", b"\x00\xff\xfe\x80", "bytes that are not UTF-8"),
    ("sig.intent.bybit.linear.ETHUSDT", b'{"type":"IntentProposed","event_id":7}', "an intent of the wrong types"),
    (
        "llm.verdict.bybit.linear.SOLUSDT",
        b'{"type":"VerdictIssued","event_id":"v","decision":"maybe"}',
        "a bad verdict",
    ),
    ("md.bar.bybit.linear.SOLUSDT", b"[" * 50_000, "50,000 nested brackets"),
)


def malformed(at: float = 0.4) -> Fault:
    """:data:`CORPUS` published mid-run: each must be dead-lettered and change nothing else."""

    def inject(run: Run) -> None:
        run.wait_progress("executor", at)

        async def publish() -> None:
            nc = await nats.connect(run.lab.nats.url)
            try:
                js = nc.jetstream(timeout=5)
                for i, (subject, payload, what) in enumerate(CORPUS):
                    ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": f"chaos-{run.name}-{i}"})
                    run.corpus[ack.seq] = what
            finally:
                await nc.close()

        asyncio.run(publish())

    return Fault("malformed", f"{len(CORPUS)} malformed messages on the services' subjects", inject)


def api_fuzz(examples: int = 10, at: float = 0.2) -> Fault:
    """The schema-driven API fuzzer (:func:`nertz_api.fuzz.fuzz`) against the running API, mid-run.

    Without the admin token (a fuzzed ``POST /stop`` with it would change the run's decisions), so it
    also checks that every mutating endpoint refuses; the token is a sentinel no answer may contain.
    """

    def inject(run: Run) -> None:
        from nertz_api.fuzz import fuzz

        run.wait_progress("api", at)
        report = fuzz(run.stack.api_url, secrets=(ADMIN_TOKEN,), examples=examples, seed=7)
        bad = report.server_errors + report.schema_violations + report.auth_failures + report.secrets_leaked
        run.errors += bad
        run.notes.append(
            f"API fuzzer: {report.requests:,} requests over {report.operations} operations, {report.server_errors} "
            f"server errors, {report.schema_violations} schema violations, {report.auth_failures} auth failures, "
            f"{report.secrets_leaked} secrets leaked"
        )
        run.notes.extend(report.findings[:5])

    return Fault("api-fuzz", f"the schema-driven API fuzzer ({examples} examples per operation) mid-run", inject)


def combined(name: str, faults: Iterable[Fault]) -> Fault:
    """Every fault of ``faults`` one after the other in one run named ``name`` (the short suite)."""
    fs = list(faults)

    def inject(run: Run) -> None:
        for f in fs:
            f.inject(run)

    return Fault(name, " then ".join(f.describe for f in fs) + " (" + ", ".join(f.name for f in fs) + ")", inject)


def full_suite(seed: int, kills: int = 20, outage_s: float = 30.0) -> list[Fault]:
    """The faults of issue 11's table (the long ``make chaos``)."""
    every = ("signal", "llm-validator", "executor", "api", "market-ingest")
    return [
        Fault("control", "no fault (a second uninterrupted run)", lambda run: None),
        sigkills(12, seed, ("llm-validator", "executor", "api")),
        sigkills(3, seed + 1, ("signal",)),
        sigkills(kills, seed + 2, every),
        nats_down(signal.SIGTERM, 5),
        nats_down(signal.SIGKILL, 5),
        nats_down(signal.SIGKILL, outage_s),
        nats_down(signal.SIGKILL, 3, times=10, at=0.1),
        postgres_down(outage_s),
        malformed(),
        api_fuzz(examples=100),
    ]


def short_suite(seed: int) -> list[Fault]:
    """One run with a little of everything (inside ``make test``)."""
    every = ("signal", "llm-validator", "executor", "api", "market-ingest")
    return [
        combined(
            "short",
            [
                sigkills(6, seed, every),
                nats_down(signal.SIGKILL, 2, at=0.5),
                postgres_down(4, at=0.6),
                malformed(at=0.7),
                api_fuzz(examples=5, at=0.75),
            ],
        )
    ]


def run_suite(lab: Lab, faults: Sequence[Fault], timeout_s: float = 600) -> tuple[Snapshot, list[Outcome]]:
    """Run the baseline, then each fault; return the baseline and one outcome per fault."""
    t0 = time.monotonic()
    base_run = Run(lab, "baseline")
    base_run.start()
    try:
        if not base_run.settle(timeout_s):
            raise RuntimeError(f"the baseline did not settle: {'; '.join(base_run.notes)}")
    finally:
        base_run.stop()
    base = base_run.snapshot()
    expected = stored(lab.nats.url)
    ends = {svc: int(_consumer(lab.nats.url, durable).ack_floor.stream_seq) for svc, durable in PROGRESS.items()}
    lab.say(f"baseline: {len(base.log):,} events compared, {expected:,} on the log, in {time.monotonic() - t0:.1f} s")
    outcomes = []
    for fault in faults:
        outcomes.append(run_fault(lab, fault, base, ends, timeout_s))
        o = outcomes[-1]
        lab.say(
            f"{fault.describe}: lost {o.lost}, duplicated {o.duplicated}, divergent {o.divergent}, "
            f"stalled {o.stalled}, errors {o.errors} ({o.wall_s:.1f} s){'' if o.ok else '  <-- FAILED'}"
        )
    return base, outcomes


def run_fault(lab: Lab, fault: Fault, base: Snapshot, ends: dict[str, int], timeout_s: float = 600) -> Outcome:
    """Run the input with ``fault`` injected and compare with ``base`` (``ends``: where each service's
    consumer ended in the baseline, the scale of a fault's position)."""
    t0 = time.monotonic()
    md = sum(1 for key, _, _ in base.log if key.startswith("md."))
    run = Run(lab, fault.name.replace("×", "x").replace("+", "_")[:40], ends, md)
    outcome = Outcome(fault.name, fault.describe)
    run.start()
    try:
        fault.inject(run)
        settled = run.settle(timeout_s)
    finally:
        run.stop()
    outcome.wall_s = time.monotonic() - t0
    if not settled:
        outcome.stalled += 1
    outcome.stalled += len(run.exits)
    outcome.errors += run.errors
    outcome.notes = run.notes + run.exits
    if lab.nats.proc.poll() is not None:  # a fault that ended with the bus down
        lab.nats.restart()
    snap = run.snapshot()
    replayed = replays_identically(lab.nats.url)
    if replayed is not None:
        outcome.divergent += 1
        outcome.notes.append(f"nertz replay of the run's own log diverged: {replayed}")
    else:
        outcome.notes.append("nertz replay of the run's own log: identical")
    for seq, what in sorted(run.corpus.items()):
        if seq not in snap.dead_letters:
            outcome.errors += 1
            outcome.notes.append(f"malformed message {seq} ({what}) was not dead-lettered")
    if run.corpus:
        refused = sum(len(v) for k, v in snap.dead_letters.items() if k in run.corpus)
        outcome.notes.append(f"{len(run.corpus)} malformed messages: {refused} dead letters by their consumers")
    compare(base, snap, outcome)
    return outcome


def print_outcomes(outcomes: Sequence[Outcome], out: Any) -> None:
    """Print the outcome table (rich ``Console`` ``out``) and each failed fault's notes."""
    from rich.table import Table

    table = Table(
        title="chaos: every count must be 0 against the uninterrupted run",
        caption="lost, duplicated, divergent, stalled, errors; wall time in s",
    )
    table.add_column("fault", justify="left", no_wrap=True)
    for col in ("lost", "dup", "div", "stall", "err", "s"):
        table.add_column(col, justify="right")
    for o in outcomes:
        style = None if o.ok else "red"
        cells = (o.lost, o.duplicated, o.divergent, o.stalled, o.errors)
        table.add_row(o.fault, *map(str, cells), f"{o.wall_s:.1f}", style=style)
    out.print(table)
    for o in outcomes:
        out.print(f"{o.fault}: {o.describe}")
        for note in o.notes if not o.ok else o.notes[:2]:
            out.print(f"    {note}")
