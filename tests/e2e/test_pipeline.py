"""End to end: the five services as processes on a slice of the real bundled Bybit data.

- the pipeline projects into Postgres and the API answers from it;
- determinism: the same input replayed twice into fresh streams yields identical sig.*, llm.*,
  exec.* (and venue.*) payloads, ids included;
- restart: SIGKILL the executor in the middle of a replay and start it again; its events (state and
  orders) equal those of the uninterrupted run, and no order is submitted twice.
"""

from __future__ import annotations

import asyncio
import lzma
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from nertz_cli import demo
from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.testing.plugin import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

ROWS = 4000  # bars per symbol: enough for warm-up and a few trades, small enough for CI
KILL_AT = 3000  # log position the executor has handled when the restart test kills it
DECISION_DOMAINS = ("sig", "llm", "exec", "venue")


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """The first ``ROWS`` bars of each bundled CSV, then the bundled WebSocket recording."""
    d = tmp_path_factory.mktemp("slice")
    csvs = []
    for src in demo.KLINE_FILES:
        with lzma.open(src, "rt") as f:
            lines = [next(f) for _ in range(ROWS + 1)]
        out = d / src.name.removesuffix(".xz")
        out.write_text("".join(lines))
        csvs.append(out)
    return [csvs, [demo.RECORDING]]


async def _fresh_stream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await topology.recreate(nc.jetstream())
    finally:
        await nc.close()


async def _outputs(nats_url: str) -> dict[str, list[bytes]]:
    """Every decision-path payload on the log, per domain, in log order."""
    nc = await nats.connect(nats_url)
    try:
        history = await bus.read_history(nc.jetstream(), [subjects.filter_of(d) for d in DECISION_DOMAINS])
    finally:
        await nc.close()
    out: dict[str, list[bytes]] = {d: [] for d in DECISION_DOMAINS}
    for r in history:
        out[subjects.parse(r.subject).domain].append(ev.encode(r.event))
    return out


async def _consumer_floor(nats_url: str, durable: str) -> tuple[int, int]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        ci = await js.consumer_info(subjects.STREAM, durable)
        return ci.ack_floor.stream_seq, (await js.stream_info(subjects.STREAM)).state.last_seq
    finally:
        await nc.close()


def run_pipeline(
    nats_url: str, database_url: str, data_dir: Path, files: list[list[Path]], services: tuple[str, ...],
    kill_executor: bool = False,
) -> demo.Stack:  # fmt: skip
    """Run ``services`` on a fresh stream, replay ``files`` and wait until everything settled.

    With ``kill_executor``, the executor is SIGKILLed once it has handled part of the market data and
    started again. The returned stack's services are stopped.
    """
    asyncio.run(_fresh_stream(nats_url))
    stack = demo.Stack(data_dir, nats_url, database_url)
    demo.start_services(stack, services)
    try:
        pool = ThreadPoolExecutor(1)
        replaying = pool.submit(lambda: [demo.replay(stack, g, stdout=subprocess.DEVNULL) for g in files])
        if kill_executor:
            # SIGKILL once the executor has handled the first KILL_AT messages of the log, while the
            # replay is still publishing: it is mid-run by construction, not by timing luck
            deadline = time.monotonic() + 120
            floor = 0
            while time.monotonic() < deadline and floor < KILL_AT:
                floor, _ = asyncio.run(_consumer_floor(nats_url, "executor-market"))
                time.sleep(0.01)
            assert KILL_AT <= floor < 3 * ROWS, f"expected to kill the executor mid-run, its floor was {floor}"
            stack.procs["executor"].kill()
            stack.procs["executor"].wait()
            demo.start_service(stack, "executor")
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
    return asyncio.run(_outputs(nats_url))


def test_pipeline_replay_twice_yields_identical_decision_payloads(nats_url, slice_files, baseline, tmp_path):
    run_pipeline(nats_url, "", tmp_path, slice_files, ("signal", "llm-validator", "executor"))
    again = asyncio.run(_outputs(nats_url))
    kinds = Counter(ev.decode(p).__class__.__name__ for d in DECISION_DOMAINS for p in baseline[d])
    assert kinds["FactorSnapshot"] >= 3 * ROWS
    assert kinds["IntentProposed"] > 0 and kinds["VerdictIssued"] == kinds["IntentProposed"]
    assert kinds["OrderSubmitted"] > 0, f"no order on the slice: {kinds}"
    for d in DECISION_DOMAINS:
        assert again[d] == baseline[d], f"{d}.* differs between two replays"


def test_executor_sigkill_mid_replay_rebuilds_same_state_and_orders(nats_url, slice_files, baseline, tmp_path):
    run_pipeline(nats_url, "", tmp_path, slice_files, ("signal", "llm-validator", "executor"), kill_executor=True)
    after = asyncio.run(_outputs(nats_url))
    assert after["exec"] == baseline["exec"]
    assert after["venue"] == baseline["venue"]
    assert after["llm"] == baseline["llm"]
    orders = [e for e in map(ev.decode, after["exec"]) if isinstance(e, ev.OrderSubmitted)]
    assert len({o.order_id for o in orders}) == len(orders), "an order was submitted twice"


async def _db(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def test_pipeline_projects_into_postgres_and_api_answers(nats_url, database_url, slice_files, tmp_path):
    name = f"e2e_{int(time.time())}"
    asyncio.run(_db(database_url, f'CREATE DATABASE "{name}"'))
    db = with_database(database_url, name)
    stack = run_pipeline(nats_url, db, tmp_path, slice_files, ("api", "signal", "llm-validator", "executor"))
    # the projector has caught up: every closed bar and every decision is in Postgres
    outputs = asyncio.run(_outputs(nats_url))
    snapshots = sum(isinstance(ev.decode(p), ev.FactorSnapshot) for p in outputs["sig"])
    intents = sum(isinstance(ev.decode(p), ev.IntentProposed) for p in outputs["sig"])
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
            missing = c.get("/candles/XYZUSDT/5")
            assert missing.status_code == 404 and "error" in missing.json()
            assert c.get("/candles/BTCUSDT/0").status_code == 422
    finally:
        stack.stop_services()
