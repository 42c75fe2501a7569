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

Live faults
-----------
A *live* fault (:func:`live_kills`, :func:`live_control`) runs market-ingest as ``python -m nertz_ingest
live`` (real pybit, WebSocket + REST) against the fake Bybit on 127.0.0.1, which plays a scripted,
deterministic market (:class:`~nertz_common.testing.fake_bybit.MarketScript`: per minute and symbol,
order book deltas, trades, open-kline updates and a ticker, then the closed 1m kline; REST serves the
same klines, ``warmup_bars`` of them before the script for the start-up backfill). The script starts
once the first backfill is on the log and then goes at the exchange's pace (``pace_s`` per minute)
whether ingest is connected or not. Its baseline is an uninterrupted live run of the same script,
checked to hold all of it (:func:`check_baseline`). Kills land where the log is (the open time of its
latest BTCUSDT bar), at seeded script minutes; each restarted ingest backfills from the log's end.

Live data cannot all be identical: what the exchange sent while ingest was down was never received
(order book frames, trades, tickers, open-kline updates; a restart's fresh book and ticker snapshots
are the current state, not the missed frames), the closed bars the socket missed come from the
restart's REST backfill marked ``warmup`` (docs/decisions.md D19: signal folds them and proposes
nothing on them), and every event's ``ts_init`` of a WebSocket frame is its receive time. So
:func:`compare_live` counts, against the uninterrupted live run:

- **lost**: a closed bar of the script missing; a factor snapshot of a closed bar missing; an intent
  of the baseline missing whose bar the run did not get from REST; a decision before the first kill
  missing; market data missing outside a restart's window (from the log's position at the kill,
  less a minute, to the restart's backfill; overlapping windows merged); projected rows fewer than the
  run's own log makes (:func:`projected`, the api's own row builder);
- **duplicated**: an event stored twice, a closed bar twice, more projected rows than the log makes;
- **divergent**: a closed bar with other prices, volume or times, out of order in its series, or
  ``warmup`` where the run's copy did not come from REST; any other market event of the run the
  baseline does not have identically (``ts_init`` aside) or in another order of its subject; a factor
  snapshot that is not byte-identical (of a REST-filled bar: its bar-derived values,
  :data:`BAR_FIELDS`, must be; its book factors read the book held before the kill); an intent the
  baseline lacks or has otherwise; a decision before the first kill that differs; the run's own log not
  replaying to itself (``nertz replay``, with the services' settings);
- **stalled**, **errors** as above; an ingest dead letter (a refused bar or frame) is an error.

Decisions after the first kill may follow from what was missed (an intent not proposed on a filled
bar changes the executor's lock from there on; a missed book moves a paper fill): they are not
compared with the baseline but must be exactly what the components derive from the run's own log
(the replay) and what the projector wrote. The notes give the bars filled, what was missed by kind
and in how many holes, the FeedGap/FeedResynced/FeedStale counts and how many decisions after the
first kill are still the baseline's. ``live-control`` (a second uninterrupted live run) must match
the baseline in everything, decisions included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import lzma
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import nats
import nats.js.errors

from nertz_cli import demo
from nertz_common import bus, infra, subjects, topology
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import Record
from nertz_common.testing.fake_bybit import FakeBybit, KlineStore, MarketScript, load_instruments

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

    nc = bus.fast_headers(await nats.connect(bus.servers(nats_url)))
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


def replays_identically(nats_url: str, timeout_s: float = 300, env: dict[str, str] | None = None) -> str | None:
    """Run ``nertz replay`` over the whole log at ``nats_url`` (with the services' settings ``env`` on top
    of this process' environment); None when it re-derives every decision identically, else what it
    printed (the run's own log must replay to itself, faults and all)."""
    cmd = [str(Path(sys.executable).with_name("nertz")), "replay", "--nats-url", nats_url]
    full = {**os.environ, **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=full)
    return None if done.returncode == 0 else (done.stdout + done.stderr)[-400:]


# --- faults -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A named fault: ``inject(run)`` runs while the replay publishes and returns when it is over.

    ``live``: the fault runs on the live ingest playing this script (a :class:`LiveRun`), compared
    with an uninterrupted live run of it; None = on the replay, compared with the replay's baseline.
    """

    name: str
    describe: str
    inject: Callable[[Run], None]
    live: LiveScript | None = None


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


# --- the live feed ----------------------------------------------------------------------------------

#: the executor's holding limits in live runs (s of event time): a position left after 30 min within 1 % of its
#: entry is closed (stale exit), so that round trips, cooldowns and new entries happen within a script
LIVE_ENV = {"NERTZ_EXECUTOR__MIN_HOLD_S": "600", "NERTZ_EXECUTOR__MAX_HOLD_S": "1800"}
#: the live faults' symbols (the bundled data's)
LIVE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: market-data events whose absence in a faulted live run is legitimate: received while ingest was down
_STATUS = (ev.FeedGap, ev.FeedResynced, ev.FeedStale)
#: FactorSnapshot fields that are functions of the bar series alone (not of a book, a ticker or the warm-up flag)
BAR_FIELDS = ("symbol", "interval", "bar_id", "ts_event", "close", "egm", "pio", "ema_fast", "ema_mid", "ema_slow",
              "trend", "atr", "regime", "stop_atr")  # fmt: skip
MINUTE_MS = 60_000
#: market-ingest's service name (its dead letters' ``service``)
SERVICE = "market-ingest"


@dataclass(frozen=True)
class LiveScript:
    """The scripted market of a live fault: which bars of the bundled month, and how fast.

    Attributes
    ----------
    minutes : int
        Scripted 1m bars per symbol, sent live.
    warmup_bars : int
        Closed bars before the script that the fake's REST serves and ingest backfills at start
        (``--backfill``; the signal's indicators and its 4 h stop ATR need ~1,500).
    pace_s : float
        Wall seconds per scripted minute (the exchange's pace; a restart takes ~1-3 s, so a kill
        misses tens of bars, which the restart's backfill must fill).
    skip_bars : int
        Bars of the bundled month left out before the warm-up (where in the month the script plays).
    """

    minutes: int = 360
    warmup_bars: int = 2000
    pace_s: float = 0.08
    skip_bars: int = 0

    def build(self) -> tuple[KlineStore, list[dict[str, Any]], MarketScript]:
        """The fake's kline store (warm-up + script), its instruments and a fresh :class:`MarketScript`."""
        klines = KlineStore()
        need = self.skip_bars + self.warmup_bars + self.minutes + 5
        for path in demo.KLINE_FILES:
            symbol = path.name.partition("_")[0]
            rows = []
            with lzma.open(path, "rt") as f:
                next(f)
                for line in itertools.islice(f, need):
                    ts, o, h, lo, c, v = line.strip().split(",")
                    start = int(datetime.fromisoformat(ts).timestamp() * 1000)
                    rows.append([str(start), o, h, lo, c, v, f"{float(v) * float(c):.4f}"])
            klines.add_rows(symbol, rows)
        first = max(klines.series(s, "1")[0][0] for s in LIVE_SYMBOLS)  # every symbol has bars from here on
        start_ms = first + (self.skip_bars + self.warmup_bars) * MINUTE_MS
        instruments = load_instruments(demo.DATA / "bybit_instruments_linear.json")
        market = MarketScript(klines, instruments, LIVE_SYMBOLS, start_ms=start_ms, minutes=self.minutes)
        return klines, instruments, market


@dataclass(frozen=True)
class Kill:
    """One SIGKILL of the live ingest: where the log was (``log_ms``: open time of its latest bar, ms),
    the exchange clock at the kill (``clock_ms``) and how many REST calls the fake had answered."""

    log_ms: int
    clock_ms: int
    calls: int


class LiveRun(Run):
    """A run whose market data comes from ``python -m nertz_ingest live`` against the fake Bybit on
    127.0.0.1 (REST + WebSocket, real pybit), the fake playing :class:`LiveScript`'s market in a
    thread of its own."""

    def __init__(self, lab: Lab, name: str, script: LiveScript) -> None:
        super().__init__(lab, name)
        self.script = script
        self.stack.env.update(LIVE_ENV)
        self.klines, instruments, self.market = script.build()
        self.fake = FakeBybit(instruments=instruments, klines=self.klines, now_ms=self.market.start_ms)
        self.kills: list[Kill] = []
        self.frames = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"fake-bybit-{name}", daemon=True)
        self._go = asyncio.Event()
        self._played: Any = None
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        asyncio.run(demo.apply_topology(self.lab.nats.url, fresh=True))
        demo.start_services(self.stack, CONSUMERS)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(30)
        self._played = asyncio.run_coroutine_threadsafe(
            self.market.play(self.fake, pace_s=self.script.pace_s, start=self._go), self._loop
        )
        with self._lock:
            self._start_ingest()
        self._replay_thread = threading.Thread(target=self._drive, name="live", daemon=True)
        self._replay_thread.start()

    def _start_ingest(self) -> None:
        args = (
            "live", "--symbols", ",".join(LIVE_SYMBOLS), "--depth", "50", "--intervals", "1",
            "--backfill", str(self.script.warmup_bars), "--ws-url", self.fake.ws_url, "--rest-url", self.fake.base_url,
        )  # fmt: skip
        demo.start_service(self.stack, "market-ingest", module="nertz_ingest", args=args, NERTZ_LOG_LEVEL="INFO")

    def _drive(self) -> None:
        """Start the script once the first backfill is on the log; restart an ingest that died on its own;
        stop ingest (SIGTERM) once the script is played and the log holds its last bar of every symbol."""
        try:
            first, last = self.market.start_ms - MINUTE_MS, self.market.start_ms + (self.script.minutes - 1) * MINUTE_MS
            if not self._wait_log(lambda bars: all(bars.get(s, (0, False)) >= (first, True) for s in LIVE_SYMBOLS)):
                raise RuntimeError("the live ingest's first backfill did not reach the log")
            self._loop.call_soon_threadsafe(self._go.set)
            if not self._wait_log(
                lambda bars: self._played.done() and all(bars.get(s, (0, False)) >= (last, True) for s in LIVE_SYMBOLS),
                timeout_s=self.script.minutes * self.script.pace_s + 300,
            ):
                raise RuntimeError("the log did not get the script's last bars")
            self.frames = self._played.result()
            with self._lock:
                self._stopping = True
                proc = self.stack.procs.pop("market-ingest")
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(30)
            if rc != 0:
                self.exits.append(f"market-ingest live exited {rc} on SIGTERM")
        except BaseException as e:
            self._replay_error = e
        finally:
            self.replay_done.set()

    def _wait_log(self, done: Callable[[dict[str, tuple[int, bool]]], bool], timeout_s: float = 180) -> bool:
        """Poll the log's last bar of each symbol (open time ms, closed) until ``done`` says so; meanwhile
        restart an ingest that exited without being killed (counted in :attr:`exits`)."""

        async def go() -> bool:
            nc = await nats.connect(bus.servers(self.lab.nats.url))
            try:
                js = nc.jetstream(timeout=5)
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if done(await last_bars(js)):
                        return True
                    with self._lock:
                        proc = self.stack.procs.get("market-ingest")
                        if proc is not None and proc.poll() is not None and proc.pid not in self._killed_pids:
                            self.exits.append(f"market-ingest live exited {proc.returncode}")
                            self._start_ingest()
                    await asyncio.sleep(0.02)
                return False
            finally:
                await nc.close()

        return asyncio.run(go())

    def stop(self) -> None:
        try:
            self.stack.stop_services()
        finally:
            if self._played is not None:
                self._played.cancel()
            if self._thread.is_alive():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(30)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)

    # --- the fault ----------------------------------------------------------------------------------

    def kill_ingest(self, at_ms: int, pause_s: float) -> bool:
        """SIGKILL the live ingest once the log's latest BTCUSDT bar opens at or after ``at_ms`` (the
        script's exchange time, ms), wait ``pause_s`` (the outage) and start it again; False when the
        log never got there."""

        def reached(bars: dict[str, tuple[int, bool]]) -> bool:
            return self.replay_done.is_set() or bars.get(LIVE_SYMBOLS[0], (0, False))[0] >= at_ms

        if not self._wait_log(reached) or self.replay_done.is_set():
            return False
        with self._lock:
            proc = self.stack.procs.get("market-ingest")
            if proc is None or proc.poll() is not None or self._stopping:
                return False
            log_ms = asyncio.run(probe(self.lab.nats.url, last_bars))[LIVE_SYMBOLS[0]][0]
            self._killed_pids.add(proc.pid)
            proc.kill()
            proc.wait()
            self.kills.append(Kill(log_ms, self.fake.clock_ms(), len(self.fake.calls)))
        self.killed["market-ingest"] += 1
        time.sleep(pause_s)  # the outage: how long ingest stays down is the fault
        with self._lock:
            self._start_ingest()
        return True

    def windows(self) -> list[tuple[int, int]]:
        """The exchange-time windows (ms) in which market data may be missing: per kill, from the log's
        position at the kill (less a minute) to the restart's backfill (the REST time of its last kline
        call; a restart killed before its backfill extends the window to the next one's), overlapping
        windows merged (a kill landing before the previous restart had caught up)."""
        calls = list(self.fake.calls)
        bounds = [k.calls for k in self.kills] + [len(calls)]
        ends: list[int | None] = []
        for a, b in itertools.pairwise(bounds):
            times = [c.time_ms for c in calls[a:b] if c.path == "/v5/market/kline"]
            ends.append(max(times) if times else None)
        out: list[tuple[int, int]] = []
        later = self.market.end_ms
        for k, end in reversed(list(zip(self.kills, ends, strict=True))):
            later = end if end is not None else later
            out.append((k.log_ms - MINUTE_MS, later))
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(out):  # a kill before the last restart's backfill: one outage
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged


async def last_bars(js: Any) -> dict[str, tuple[int, bool]]:
    """Per live symbol, the open time (ms) and closed flag of its last ``Bar`` on the log (absent: none yet)."""
    out: dict[str, tuple[int, bool]] = {}
    for s in LIVE_SYMBOLS:
        try:
            msg = await js.get_last_msg(subjects.STREAM, subjects.instrument("md", "bar", "bybit", "linear", s))
        except nats.js.errors.NotFoundError:
            continue
        bar = ev.decode(msg.data)
        if isinstance(bar, ev.Bar):
            out[s] = (bar.open_time_ns // 1_000_000, bar.closed)
    return out


@dataclass
class LiveLog:
    """What a live run left behind: its whole log in order and the projected row counts."""

    records: list[Record]
    rows: dict[str, int]

    def of(self, *domains: str) -> list[Record]:
        """The records of these subject domains, in log order."""
        return [r for r in self.records if r.subject.partition(".")[0] in domains]


def live_log(nats_url: str, database_url: str) -> LiveLog:
    """Read a live run's log and projected row counts."""

    async def go() -> LiveLog:
        from nertz_common.node.log import read_log

        nc = bus.fast_headers(await nats.connect(bus.servers(nats_url)))
        try:
            records = await read_log(nc.jetstream(timeout=10))
        finally:
            await nc.close()
        conn = await asyncpg.connect(database_url)
        try:
            rows = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
        finally:
            await conn.close()
        return LiveLog(records, rows)

    return asyncio.run(go())


def projected(records: Iterable[Record]) -> dict[str, int]:
    """The rows of :data:`TABLES` the api's projector writes for ``records`` (its own pure row builder)."""
    from nertz_api.projector import Writes

    w = Writes(set())
    for r in records:
        w.add(r.event, r.seq)
    return {t: len(w.rows.get(t, [])) + len(w.keyed.get(t, {})) for t in TABLES}


def _same(a: ev.Event, b: ev.Event) -> bool:
    """Equal but for ``ts_init`` (a receive time, wall clock) and a bar's ``warmup`` flag."""

    def norm(e: ev.Event) -> bytes:
        e = msgspec.structs.replace(e, ts_init=0)
        if type(e) is ev.Bar:
            e = msgspec.structs.replace(e, warmup=False)
        return ev.encode(e)

    return norm(a) == norm(b)


def check_baseline(base: LiveLog, script: LiveScript, market: MarketScript) -> str:
    """Check that an uninterrupted live run got the whole script; return a line saying what it holds.

    Raises
    ------
    RuntimeError
        If a scripted bar is missing or repeated, a scripted frame did not become its event, a
        status event or an ingest dead letter is on the log, or the projection is not the log's.
    """
    md = base.of("md")
    bars = Counter(
        (e.symbol, e.open_time_ns // 1_000_000) for e in (r.event for r in md) if type(e) is ev.Bar and e.closed
    )
    want = {
        (s, market.start_ms + k * MINUTE_MS) for s in LIVE_SYMBOLS for k in range(-script.warmup_bars, script.minutes)
    }
    problems = []
    if set(bars) != want or any(n != 1 for n in bars.values()):
        problems.append(f"{len(want - set(bars))} scripted bars missing, {sum(n - 1 for n in bars.values())} repeated")
    kinds = Counter(type(r.event).__name__ for r in md)
    per_minute = len(LIVE_SYMBOLS) * market.steps * script.minutes
    expect = {"BookSnapshot": per_minute, "TradeBatch": per_minute, "Ticker": len(LIVE_SYMBOLS) * script.minutes}
    for kind, n in expect.items():
        if kinds[kind] != n:
            problems.append(f"{kinds[kind]} {kind} events for {n} scripted frames")
    status = [type(r.event).__name__ for r in md if isinstance(r.event, _STATUS)]
    if status:
        problems.append(f"status events {Counter(status)}")
    dead = [e for e in (r.event for r in base.of("sys")) if isinstance(e, ev.DeadLettered) and e.service == SERVICE]
    if dead:
        problems.append(f"{len(dead)} ingest dead letters")
    if projected(base.records) != base.rows:
        problems.append(f"projected rows {base.rows} are not the log's {projected(base.records)}")
    if problems:
        raise RuntimeError("the uninterrupted live run is not the script: " + "; ".join(problems))
    made = Counter(type(r.event).__name__ for r in base.of("sig", "llm", "exec", "venue"))
    return (
        f"{len(bars):,} closed bars, {kinds['BookSnapshot']:,} books, {kinds['TradeBatch']:,} trade batches, "
        f"{kinds['Ticker']:,} tickers; {made['IntentProposed']} intents, {made['OrderFilled']} fills, "
        f"{made['PositionClosed']} round trips"
    )


def compare_live(base: LiveLog, run: LiveLog, windows: Sequence[tuple[int, int]], outcome: Outcome) -> Outcome:
    """Count what a live run lost, duplicated or changed against the uninterrupted live run ``base``
    into ``outcome`` and note what it missed (see the module docstring); ``windows``: per restart, the
    exchange-time window (ms) in which the run may lack market data."""
    ids = Counter(r.event.event_id for r in run.records)
    outcome.duplicated += sum(k - 1 for k in ids.values())
    filled, bars = _compare_bars(base, run, outcome)
    missed, status, holes = _compare_market(base, run, set(ids), windows, outcome)
    decisions = _compare_decisions(base, run, filled, windows, outcome)
    expected = projected(run.records)
    for table, k in expected.items():
        got = run.rows.get(table, 0)
        outcome.lost += max(0, k - got)
        outcome.duplicated += max(0, got - k)
    dead = [e for e in (r.event for r in run.of("sys")) if isinstance(e, ev.DeadLettered) and e.service == SERVICE]
    if dead:
        outcome.errors += len(dead)
        outcome.notes.append(f"ingest dead-lettered {len(dead)}: {dead[0].reason[:160]}")
    outcome.notes.insert(0, (
        f"bars: {bars:,} closed, each once and in order; {len(filled)} the socket missed, filled by the "
        f"restarts' REST backfill (warmup); missed while down (in {holes} holes, each inside a restart's "
        "window): " + (", ".join(f"{k} {v}" for k, v in sorted(missed.items())) or "nothing")
        + f"; FeedGap {status['FeedGap']}, FeedResynced {status['FeedResynced']}, FeedStale {status['FeedStale']}"
    ))  # fmt: skip
    outcome.notes.insert(1, decisions + "; projections = the run's own log's")
    return outcome


def _compare_bars(base: LiveLog, run: LiveLog, outcome: Outcome) -> tuple[set[str], int]:
    """Closed bars: each of the baseline's once, in order, the same bar (``warmup`` only where REST
    served the run's copy); return the ids of the bars the run got from REST only, and its closed bars."""
    base_bars = {(e.symbol, e.open_time_ns): e for e in _bars(base.of("md"))}
    seen: Counter[tuple[str, int]] = Counter()
    last_open: dict[str, int] = {}
    filled: set[str] = set()
    for bar in _bars(run.of("md")):
        key = (bar.symbol, bar.open_time_ns)
        seen[key] += 1
        known = base_bars.get(key)
        from_rest = bar.ts_init == bar.ts_event  # a WebSocket bar's ts_init is its receive time
        if known is None or not _same(known, bar) or (bar.warmup != known.warmup and not (bar.warmup and from_rest)):
            outcome.divergent += 1
            outcome.notes.append(f"bar {bar.symbol} {bar.open_time_ns} differs from the uninterrupted run's")
        elif bar.warmup and not known.warmup:
            filled.add(bar.event_id)
        if bar.open_time_ns <= last_open.get(bar.symbol, -1):
            outcome.divergent += 1
            outcome.notes.append(f"bar {bar.symbol} {bar.open_time_ns} after one opening at {last_open[bar.symbol]}")
        last_open[bar.symbol] = max(last_open.get(bar.symbol, -1), bar.open_time_ns)
    lost = sorted(k for k in base_bars if k not in seen)
    outcome.lost += len(lost)
    for symbol, open_ns in lost[:10]:  # where, to find out why: against the kills' windows (exchange ms)
        outcome.notes.append(f"closed bar {symbol} opening at {open_ns // 1_000_000} (exchange ms) not on the log")
    outcome.duplicated += sum(k - 1 for k in seen.values())  # two events of one bar (their ids would differ)
    return filled, sum(seen.values())


def _bars(records: Iterable[Record]) -> Iterator[ev.Bar]:
    for r in records:
        if type(r.event) is ev.Bar and r.event.closed:
            yield r.event


def _compare_market(
    base: LiveLog, run: LiveLog, present: set[str], windows: Sequence[tuple[int, int]], outcome: Outcome
) -> tuple[Counter[str], Counter[str], int]:
    """The rest of the market data: each of the run's events the baseline's (``ts_init`` aside), in its
    order per subject; the baseline's the run lacks only in runs ("holes") inside a restart's window.
    Return what was missed by kind, the run's status events by type, and the number of holes."""
    base_md = base.of("md")
    known = {r.event.event_id: (i, r.event) for i, r in enumerate(base_md)}
    status: Counter[str] = Counter()
    order: dict[str, list[int]] = {}
    for r in run.of("md"):
        e = r.event
        if isinstance(e, _STATUS):
            status[type(e).__name__] += 1
            continue
        if type(e) is ev.Bar and e.closed:
            continue
        at = known.get(e.event_id)
        if at is None or not _same(at[1], e):
            outcome.divergent += 1
            outcome.notes.append(f"{type(e).__name__} {e.event_id} is not the uninterrupted run's")
            continue
        order.setdefault(r.subject, []).append(at[0])
    outcome.divergent += sum(sum(1 for x, y in itertools.pairwise(p) if y < x) for p in order.values())
    missed: Counter[str] = Counter()
    holes: list[tuple[int, int]] = []  # (first, last) exchange time, ms, of each run of a subject's missing events
    open_holes: dict[str, list[int]] = {}
    for r in base_md:
        e = r.event
        if (type(e) is ev.Bar and e.closed) or isinstance(e, _STATUS):
            continue
        hole = open_holes.get(r.subject)
        if e.event_id in present:
            if hole is not None:
                holes.append((hole[0], hole[1]))
                del open_holes[r.subject]
            continue
        missed["open-bar update" if type(e) is ev.Bar else type(e).__name__] += 1
        ms = e.ts_event // 1_000_000
        if hole is None:
            open_holes[r.subject] = [ms, ms]
        else:
            hole[1] = ms
    holes.extend((h[0], h[1]) for h in open_holes.values())
    for first, last in holes:
        if not any(lo <= first and last <= hi for lo, hi in windows):
            outcome.lost += 1
            outcome.notes.append(f"market data missing from {first} to {last} (exchange ms), outside every restart")
    return missed, status, len(holes)


def _compare_decisions(
    base: LiveLog, run: LiveLog, filled: set[str], windows: Sequence[tuple[int, int]], outcome: Outcome
) -> str:
    """Decisions: one factor snapshot per closed bar, identical (of a filled bar: its bar-derived
    values); the run's intents the baseline's, and a baseline intent the run lacks only on a filled bar
    (vetoed ``warmup``); every decision before the first kill identical. Return the summary line."""
    base_dec = {r.event.event_id: r for r in base.of("sig", "llm", "exec", "venue")}
    run_dec = {r.event.event_id: r for r in run.of("sig", "llm", "exec", "venue")}
    filled_fs = {derive_id("FactorSnapshot", i) for i in filled}
    snaps = same = vetoed = 0
    for i, r in base_dec.items():
        e = r.event
        got = run_dec.get(i)
        if isinstance(e, ev.FactorSnapshot):
            snaps += 1
            if got is None:
                outcome.lost += 1
                outcome.notes.append(f"no FactorSnapshot of bar {e.bar_id}")
            elif i in filled_fs:
                if any(getattr(e, f) != getattr(got.event, f) for f in BAR_FIELDS):
                    outcome.divergent += 1
                    outcome.notes.append(f"FactorSnapshot {i} of a filled bar differs in its bar-derived values")
            elif got.raw != r.raw:
                outcome.divergent += 1
                outcome.notes.append(f"FactorSnapshot {i} differs from the uninterrupted run's")
            else:
                same += 1
        elif isinstance(e, ev.IntentProposed):
            if got is not None:
                outcome.divergent += got.raw != r.raw
                continue
            if derive_id("FactorSnapshot", e.causation_id or "") in filled_fs:
                vetoed += 1  # its bar came from REST (warmup): no intent, whatever the score
            else:
                outcome.lost += 1
                outcome.notes.append(f"intent {i} of the uninterrupted run missing, its bar not filled by REST")
    for i, r in run_dec.items():
        if isinstance(r.event, ev.IntentProposed) and i not in base_dec:
            outcome.divergent += 1
            outcome.notes.append(f"intent {i} the uninterrupted run did not propose")
    first = min((lo for lo, _ in windows), default=None)

    def early(r: Record) -> bool:
        return first is None or r.event.ts_event // 1_000_000 < first

    before = [r for r in base_dec.values() if early(r)]
    for r in before:
        got = run_dec.get(r.event.event_id)
        if got is None:
            outcome.lost += 1
            outcome.notes.append(f"{type(r.event).__name__} {r.event.event_id} before the first kill missing")
        elif got.raw != r.raw:
            outcome.divergent += 1
    outcome.divergent += sum(1 for i, r in run_dec.items() if i not in base_dec and early(r))
    later = [r for r in base_dec.values() if not early(r) and not isinstance(r.event, ev.FactorSnapshot)]
    kept = sum(1 for r in later if (got := run_dec.get(r.event.event_id)) is not None and got.raw == r.raw)
    return (
        f"decisions: {same:,} of {snaps:,} factor snapshots identical, the {len(filled_fs)} of filled bars equal "
        f"on their bar-derived values; {vetoed} intents not proposed (their bar came from REST: warmup); "
        + (
            f"all {len(before):,} decisions identical"
            if first is None
            else f"all {len(before):,} decisions before the first kill identical; after it {kept:,} of "
            f"{len(later):,} others as in the uninterrupted run"
        )
    )


def live_kills(n: int, seed: int, script: LiveScript) -> Fault:
    """``n`` SIGKILLs of the live ingest at seeded random points of the script (taken from the log:
    the open time of its latest bar), each down for a seeded 0-0.5 s, then started again."""

    def inject(run: Run) -> None:
        assert isinstance(run, LiveRun)
        rng = random.Random(seed)
        points = sorted(rng.sample(range(int(script.minutes * 0.05), int(script.minutes * 0.85)), n))
        for minute in points:
            if not run.kill_ingest(run.market.start_ms + minute * MINUTE_MS, rng.uniform(0.0, 0.5)):
                run.notes.append(f"the log never reached minute {minute} of the script: not killed")
        run.notes.append("killed " + ", ".join(f"{s} ×{k}" for s, k in sorted(run.killed.items())))

    return Fault(
        f"live-sigkill×{n}",
        f"{n} random SIGKILLs of market-ingest live (fake Bybit WS + REST), each restarted",
        inject,
        live=script,
    )


def live_control(script: LiveScript) -> Fault:
    """A second uninterrupted live run on the same script: everything identical, decisions included."""
    return Fault("live-control", "no fault (a second uninterrupted live run)", lambda run: None, live=script)


def run_live_baseline(lab: Lab, script: LiveScript, timeout_s: float = 600) -> LiveLog:
    """Run ``script`` through the pipeline with the live ingest uninterrupted and check it got all of it."""
    t0 = time.monotonic()
    run = LiveRun(lab, "live-baseline", script)
    run.start()
    try:
        if not run.settle(timeout_s) or run.exits:
            raise RuntimeError(f"the live baseline did not settle: {'; '.join(run.notes + run.exits)}")
    finally:
        run.stop()
    base = live_log(lab.nats.url, run.database_url)
    what = check_baseline(base, script, run.market)
    lab.say(f"live baseline: {what}; {run.frames:,} frames played, in {time.monotonic() - t0:.1f} s")
    return base


def run_live_fault(lab: Lab, fault: Fault, base: LiveLog, timeout_s: float = 600) -> Outcome:
    """Run ``fault.live`` with ``fault`` injected and compare with the uninterrupted live run ``base``."""
    assert fault.live is not None
    t0 = time.monotonic()
    run = LiveRun(lab, fault.name.replace("×", "x")[:40], fault.live)
    outcome = _injected(run, fault, timeout_s, t0)
    got = live_log(lab.nats.url, run.database_url)
    windows = run.windows()
    compare_live(base, got, windows, outcome)
    start = run.market.start_ms
    outcome.notes.append(
        f"outages (script minutes from {start} exchange ms, from the log's position at the kill to the restart's "
        "backfill): "
        + (", ".join(f"{(lo - start) / MINUTE_MS:.0f}-{(hi - start) / MINUTE_MS:.0f}" for lo, hi in windows) or "none")
    )
    outcome.notes.extend(run.notes + run.exits)
    _replayed(lab, outcome, LIVE_ENV)
    return outcome


def _injected(run: Run, fault: Fault, timeout_s: float, t0: float) -> Outcome:
    """Start ``run``, inject ``fault``, wait for it to settle and stop it; the outcome so far (wall time
    since ``t0``, stalls, the API's errors)."""
    outcome = Outcome(fault.name, fault.describe)
    run.start()
    try:
        fault.inject(run)
        settled = run.settle(timeout_s)
    finally:
        run.stop()
    outcome.wall_s = time.monotonic() - t0
    outcome.stalled += (not settled) + len(run.exits)
    outcome.errors += run.errors
    return outcome


def _replayed(lab: Lab, outcome: Outcome, env: dict[str, str] | None = None) -> None:
    """``nertz replay`` of the run's log on the lab's server: a divergence is one more divergent."""
    replayed = replays_identically(lab.nats.url, env=env)
    if replayed is not None:
        outcome.divergent += 1
        outcome.notes.append(f"nertz replay of the run's own log diverged: {replayed}")
    else:
        outcome.notes.append("nertz replay of the run's own log: identical")


#: the live faults' scripts: the long suite's (360 bars × 3 symbols, ~18 s of play) and the short one's
LIVE_FULL = LiveScript(minutes=360)
LIVE_SHORT = LiveScript(minutes=150)


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
        live_control(LIVE_FULL),
        live_kills(6, seed + 3, LIVE_FULL),
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
        ),
        live_kills(2, seed + 3, LIVE_SHORT),
    ]


def run_suite(lab: Lab, faults: Sequence[Fault], timeout_s: float = 600) -> tuple[Snapshot, list[Outcome]]:
    """Run the baselines the faults need (the replay's; an uninterrupted live run per live script), then
    each fault; return the replay's baseline (the live one's log when only live faults run) and one
    outcome per fault, in the order given."""
    base: Snapshot | None = None
    ends: dict[str, int] = {}
    if any(f.live is None for f in faults):
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
        lab.say(
            f"baseline: {len(base.log):,} events compared, {expected:,} on the log, in {time.monotonic() - t0:.1f} s"
        )
    live_bases: dict[LiveScript, LiveLog] = {}
    outcomes = []
    for fault in faults:
        if fault.live is None:
            assert base is not None
            o = run_fault(lab, fault, base, ends, timeout_s)
        else:
            if fault.live not in live_bases:
                live_bases[fault.live] = run_live_baseline(lab, fault.live, timeout_s)
            o = run_live_fault(lab, fault, live_bases[fault.live], timeout_s)
        outcomes.append(o)
        lab.say(
            f"{fault.describe}: lost {o.lost}, duplicated {o.duplicated}, divergent {o.divergent}, "
            f"stalled {o.stalled}, errors {o.errors} ({o.wall_s:.1f} s){'' if o.ok else '  <-- FAILED'}"
        )
    if base is None:
        first = next(iter(live_bases.values()))
        base = Snapshot(
            [(f"{subjects.parse(r.subject).domain}.{getattr(r.event, 'symbol', '')}", r.event.event_id, r.raw)
             for r in first.records if subjects.parse(r.subject).domain in COMPARED],
            first.rows,
        )  # fmt: skip
    return base, outcomes


def run_fault(lab: Lab, fault: Fault, base: Snapshot, ends: dict[str, int], timeout_s: float = 600) -> Outcome:
    """Run the input with ``fault`` injected and compare with ``base`` (``ends``: where each service's
    consumer ended in the baseline, the scale of a fault's position)."""
    t0 = time.monotonic()
    md = sum(1 for key, _, _ in base.log if key.startswith("md."))
    run = Run(lab, fault.name.replace("×", "x").replace("+", "_")[:40], ends, md)
    outcome = _injected(run, fault, timeout_s, t0)
    outcome.notes = run.notes + run.exits
    if lab.nats.proc.poll() is not None:  # a fault that ended with the bus down
        lab.nats.restart()
    snap = run.snapshot()
    _replayed(lab, outcome)
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
