"""End to end: the five services as processes on a slice of the real bundled Bybit data.

- the pipeline projects into Postgres and the API answers from it;
- determinism: the same input replayed twice into fresh streams yields identical sig.*, llm.*,
  exec.* (and venue.*) payloads, ids included, in the same order per symbol (how two symbols'
  decisions interleave on the log depends on when each verdict came, docs/decisions.md D13);
- restarts: SIGKILL signal, the validator, the executor or the api in the middle of a replay and start
  it again; the log equals the uninterrupted run's (no duplicate, no gap, no other decision).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from nertz_cli import demo
from nertz_common import aio, subjects
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_common.testing.plugin import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

ROWS = 4000  # bars per symbol: enough for warm-up and a few trades, small enough for CI
DECISION_DOMAINS = ("sig", "llm", "exec", "venue")


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """The first ``ROWS`` bars of each bundled CSV, then the bundled WebSocket recording."""
    return demo.slice_input(tmp_path_factory.mktemp("slice"), ROWS)


async def _outputs(nats_url: str) -> dict[str, list[bytes]]:
    """Every decision-path payload on the log, per domain and symbol (``exec.BTCUSDT``), in log order."""
    nc = await nats.connect(nats_url)
    try:
        history = await read_log(nc.jetstream(), filters=[subjects.filter_of(d) for d in DECISION_DOMAINS])
    finally:
        await nc.close()
    out: dict[str, list[bytes]] = {}
    for r in history:
        out.setdefault(f"{subjects.parse(r.subject).domain}.{getattr(r.event, 'symbol', '')}", []).append(r.raw)
    return out


def _domain(outputs: dict[str, list[bytes]], domain: str) -> list[bytes]:
    """Every payload of one domain (all symbols), each symbol in log order."""
    return [p for k, ps in outputs.items() if k.split(".", 1)[0] == domain for p in ps]


async def _probe(nats_url: str, fn: Callable) -> int:  # type: ignore[type-arg]
    nc = await nats.connect(nats_url)
    try:
        return int(await fn(nc.jetstream()))
    finally:
        await nc.close()


async def _floor(js, durable: str) -> int:  # type: ignore[no-untyped-def]
    return (await js.consumer_info(subjects.STREAM, durable)).ack_floor.stream_seq


async def _verdicts(js) -> int:  # type: ignore[no-untyped-def]
    return len(await read_log(js, filters=[subjects.filter_of("llm")]))


#: per service to kill: (what to measure, the value at which to kill it)
KILL_AT: dict[str, tuple[Callable, int]] = {  # type: ignore[type-arg]
    "signal": (lambda js: _floor(js, "signal"), 3000),
    "executor": (lambda js: _floor(js, "executor-market"), 3000),
    "llm-validator": (_verdicts, 8),
    "api": (lambda js: _floor(js, "projector"), 3000),
}


def run_pipeline(
    nats_url: str, database_url: str, data_dir: Path, files: list[list[Path]], services: tuple[str, ...],
    kill: str | None = None,
) -> demo.Stack:  # fmt: skip
    """Run ``services`` on a fresh stream, replay ``files`` and wait until everything settled.

    With ``kill``, that service is SIGKILLed once it has handled part of the log (see :data:`KILL_AT`),
    while the replay is still publishing, and started again. The returned stack's services are stopped.
    """
    asyncio.run(demo.apply_topology(nats_url, fresh=True))
    stack = demo.Stack(data_dir, nats_url, database_url)
    demo.start_services(stack, services)
    try:
        pool = ThreadPoolExecutor(1)
        replaying = pool.submit(lambda: [demo.replay(stack, g, stdout=subprocess.DEVNULL) for g in files])
        if kill is not None:
            # mid-run by construction, not by timing luck: at a fixed position of the log
            measure, at = KILL_AT[kill]
            deadline = time.monotonic() + 120
            value = 0
            while time.monotonic() < deadline and value < at:
                value = asyncio.run(_probe(nats_url, measure))
                time.sleep(0.01)
            assert value >= at, f"expected to kill {kill} mid-run, its progress was {value} < {at}"
            stack.procs[kill].kill()
            stack.procs[kill].wait()
            demo.start_service(stack, kill)
        replaying.result()  # re-raises a failed replay
        pool.shutdown()
        demo.wait_caught_up(stack, timeout_s=300)
    finally:
        stack.stop_services()
    return stack


@pytest.fixture(scope="module")
def baseline(nats_url: str, slice_files, tmp_path_factory) -> dict[str, list[bytes]]:
    """The decision-path output of one uninterrupted run (no api needed)."""
    run_pipeline(nats_url, "", tmp_path_factory.mktemp("run-a"), slice_files, ("signal", "llm-validator", "executor"))
    return aio.run(_outputs(nats_url))


def test_pipeline_replay_twice_yields_identical_decision_payloads(nats_url, slice_files, baseline, tmp_path):
    run_pipeline(nats_url, "", tmp_path, slice_files, ("signal", "llm-validator", "executor"))
    again = aio.run(_outputs(nats_url))
    kinds = Counter(ev.decode(p).__class__.__name__ for d in baseline for p in baseline[d])
    assert kinds["FactorSnapshot"] >= 3 * ROWS
    assert kinds["IntentProposed"] > 0 and kinds["VerdictIssued"] == kinds["IntentProposed"]
    assert kinds["OrderSubmitted"] > 0, f"no order on the slice: {kinds}"
    assert again.keys() == baseline.keys()
    for d in baseline:
        assert again[d] == baseline[d], f"{d} differs between two replays"


@pytest.mark.parametrize("service", ["signal", "llm-validator", "executor"])
def test_sigkill_of_a_service_mid_replay_changes_nothing_in_the_log(nats_url, slice_files, baseline, tmp_path, service):
    run_pipeline(nats_url, "", tmp_path, slice_files, ("signal", "llm-validator", "executor"), kill=service)
    after = aio.run(_outputs(nats_url))
    assert after.keys() == baseline.keys()
    for d in baseline:
        assert len(after[d]) == len(baseline[d]), f"{d}: {len(after[d])} events, uninterrupted {len(baseline[d])}"
        assert after[d] == baseline[d], f"{d} differs after a SIGKILL of {service}"
    execs = [p for d in after if d.startswith("exec.") for p in after[d]]
    orders = [e for e in map(ev.decode, execs) if isinstance(e, ev.OrderSubmitted)]
    assert len({o.order_id for o in orders}) == len(orders), "an order was submitted twice"
    log = (tmp_path / "logs" / f"{service}.log").read_text()
    assert log.count('"component.started"') == 2, "expected the killed service to start twice"


async def _db(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _new_db(database_url: str, name: str) -> str:
    asyncio.run(_db(database_url, f'CREATE DATABASE "{name}"'))
    return with_database(database_url, name)


def test_pipeline_projects_into_postgres_and_api_answers(nats_url, database_url, slice_files, tmp_path):
    db = _new_db(database_url, f"e2e_{int(time.time())}")
    stack = run_pipeline(nats_url, db, tmp_path, slice_files, ("api", "signal", "llm-validator", "executor"))
    # the projector has caught up: every closed bar and every decision is in Postgres
    outputs = aio.run(_outputs(nats_url))
    snapshots = sum(isinstance(ev.decode(p), ev.FactorSnapshot) for p in _domain(outputs, "sig"))
    intents = sum(isinstance(ev.decode(p), ev.IntentProposed) for p in _domain(outputs, "sig"))
    [row] = asyncio.run(_db(db, "SELECT count(*) AS n FROM factor_snapshots"))
    assert row["n"] == snapshots
    [row] = asyncio.run(_db(db, "SELECT count(*) AS n FROM intents"))
    assert row["n"] == intents
    # the API serves it (started again on the projected database, reading Postgres only)
    demo.start_services(stack, ("api",))
    try:
        with httpx.Client(base_url=stack.api_url, timeout=10) as c:
            assert c.get("/health").status_code == 200
            profit = c.get("/profit").json()
            per_symbol = profit.get("symbols", profit)
            assert set(per_symbol) >= {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
            btc = per_symbol["BTCUSDT"]
            assert btc["bars"] >= ROWS
            assert sum(s["intents"] for s in per_symbol.values()) == intents
            candles = c.get("/candles/BTCUSDT/5")
            assert candles.status_code == 200 and len(candles.json()["candles"]) == 5
            assert c.get("/trades/BTCUSDT").status_code == 200
            assert c.get("/decisions/BTCUSDT").status_code == 200
            assert c.get("/status").status_code == 200
            llm = c.get("/llm").json()
            assert {v["policy"] for v in llm["verdicts"]} >= {"rules"} and llm["calls"] == []
            assert c.get("/overrides").status_code == 200 and c.get("/overrides?symbol=BTCUSDT").status_code == 200
            assert c.get("/shadows").json() == {"shadows": []}
            missing = c.get("/candles/XYZUSDT/5")
            assert missing.status_code == 404 and "error" in missing.json()
            assert c.get("/candles/BTCUSDT/0").status_code == 422
    finally:
        stack.stop_services()


def test_sigkill_of_the_api_mid_replay_projects_every_event_once(nats_url, database_url, slice_files, tmp_path):
    db = _new_db(database_url, f"e2e_kill_{int(time.time())}")
    run_pipeline(nats_url, db, tmp_path, slice_files, ("api", "signal", "llm-validator", "executor"), kill="api")
    outputs = aio.run(_outputs(nats_url))
    n_snap = sum(isinstance(ev.decode(p), ev.FactorSnapshot) for p in _domain(outputs, "sig"))
    closed = [e for e in map(ev.decode, _domain(outputs, "exec")) if isinstance(e, ev.PositionClosed)]
    [row] = asyncio.run(_db(db, "SELECT count(*) AS n FROM factor_snapshots"))
    assert row["n"] == n_snap
    [row] = asyncio.run(_db(db, "SELECT count(*) AS n, coalesce(sum(realized_pnl_usdt), 0) AS p FROM round_trips"))
    assert row["n"] == len(closed) and abs(row["p"] - sum(c.realized_pnl_usdt for c in closed)) < 1e-6
    [row] = asyncio.run(_db(db, "SELECT stream_seq FROM projector_tracking WHERE consumer = 'projector'"))
    assert row["stream_seq"] >= len(_domain(outputs, "sig"))
