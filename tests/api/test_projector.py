"""The projector against real NATS JetStream and real Postgres."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import nats.js.errors
import pytest

from nertz_api.projector import ProjectionMismatch, Projector, Writes
from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.errors import TransientError
from nertz_common.testing import factories as f

pytestmark = pytest.mark.integration

TABLES = (
    "candles", "last_bars", "tickers", "book_tops", "trades", "instruments", "feed_status", "factor_snapshots",
    "intents", "verdicts", "verdicts_awaited", "suppressed", "orders", "fills", "positions", "round_trips", "locks",
    "lock_history", "control", "dead_letters", "symbols", "projector_tracking", "venue_positions",
    "reconciled_positions", "venue_wallet", "venue_wallet_history", "funding", "venue_mismatches",
)  # fmt: skip


async def dump(pool: asyncpg.Pool) -> dict[str, list[tuple]]:
    """Every row of every projection, sorted (generated and wall-clock columns left out)."""
    out = {}
    async with pool.acquire() as c:
        for t in TABLES:
            rows = await c.fetch(f"SELECT * FROM {t}")
            out[t] = sorted(tuple(str(v) for k, v in r.items() if k != "updated_at") for r in rows)
    return out


async def count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    return int(await pool.fetchval(sql, *args))


async def until_tracked(projector: Projector, seq: int, timeout_s: float = 20.0) -> None:
    """Poll until ``projector`` has committed ``seq`` (fails after ``timeout_s`` seconds)."""
    async with asyncio.timeout(timeout_s):
        while await projector.tracked_seq() < seq:
            await asyncio.sleep(0.02)


async def reset_consumer(js) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(subjects.STREAM, "projector")
    await topology.apply(js)


async def test_projector_scenario_projects_every_table(js_fresh, pool, publisher, project, scenario):
    await publisher.publish_many(scenario)
    p = await project()
    assert p.stats.tracked_seq == (await js_fresh.stream_info(subjects.STREAM)).state.last_seq == len(scenario)
    assert p.stats.projected == len(scenario) and p.stats.rejected == 0

    # candles: 31 BTC (bar 30: closed wins over the late open update), 5 ETH, 3 SOL
    assert await count(pool, "SELECT count(*) FROM candles") == 39
    bar30 = await pool.fetchrow("SELECT * FROM candles WHERE symbol = 'BTCUSDT' ORDER BY open_time_ns DESC LIMIT 1")
    assert bar30["closed"] and bar30["close"] == 133.0 and bar30["open_time_ns"] == f.T0_NS + 30 * f.MINUTE_NS
    assert bar30["open_time"].timestamp() == pytest.approx((f.T0_NS + 30 * f.MINUTE_NS) / 1e9)
    last = await pool.fetchrow("SELECT * FROM last_bars WHERE symbol = 'BTCUSDT'")
    assert last["open_time_ns"] == bar30["open_time_ns"] and last["closed"] and last["close"] == 133.0
    # latest-state tables keep the last event in log order
    tick = await pool.fetchrow("SELECT * FROM tickers WHERE symbol = 'BTCUSDT'")
    assert tick["last_price"] == 133.0 and tick["funding_rate"] == 0.0001
    book = await pool.fetchrow("SELECT * FROM book_tops WHERE symbol = 'BTCUSDT'")
    assert book["mid"] == pytest.approx(133.0) and book["spread"] == pytest.approx(0.2)
    assert book["best_bid"] == pytest.approx(132.9) and book["spread_bps"] == pytest.approx(0.2 / 133 * 1e4)
    # facts
    expected = {
        "factor_snapshots": 35, "intents": 7, "verdicts": 7, "verdicts_awaited": 2, "suppressed": 2, "orders": 6,
        "fills": 4, "positions": 2, "round_trips": 2, "trades": 2, "instruments": 1, "feed_status": 2, "control": 3,
        "dead_letters": 1, "symbols": 3,
    }  # fmt: skip
    for table, n in expected.items():
        assert await count(pool, f"SELECT count(*) FROM {table}") == n, table
    assert await count(pool, "SELECT count(*) FROM positions WHERE status = 'closed'") == 2
    pnl = [r["realized_pnl_usdt"] for r in await pool.fetch("SELECT * FROM round_trips ORDER BY closed_ns")]
    assert pnl == [30.0, -12.0]
    kinds = {r["kind"]: r["n"] for r in await pool.fetch("SELECT kind, count(*) AS n FROM suppressed GROUP BY kind")}
    assert kinds == {"signal_suppressed": 1, "risk_denied": 1}
    # the Hard Lock: BTC went FLAT after its cooldown; SOL's entry was rejected, then another expired
    locks = {r["symbol"]: r["state"] for r in await pool.fetch("SELECT symbol, state FROM locks")}
    assert locks == {"BTCUSDT": "FLAT", "SOLUSDT": "FLAT"}
    states = [r["state"] for r in await pool.fetch("SELECT state FROM lock_history WHERE symbol = 'BTCUSDT' "
                                                     "ORDER BY stream_seq")]  # fmt: skip
    assert states == ["ENTRY_PENDING", "LOCKED", "COOLDOWN", "FLAT"] * 2  # the lock's table: moves only
    sol = [r["state"] for r in await pool.fetch("SELECT state FROM lock_history WHERE symbol = 'SOLUSDT' "
                                                  "ORDER BY stream_seq")]  # fmt: skip
    assert sol == ["ENTRY_PENDING", "FLAT", "ENTRY_PENDING", "FLAT"]
    assert await pool.fetchval("SELECT stream_seq FROM projector_tracking WHERE consumer = 'projector'") == len(
        scenario
    )


async def test_projector_redelivered_batch_changes_nothing(js_fresh, pool, publisher, scenario, deliveries_of):
    await publisher.publish_many(scenario)
    deliveries = await deliveries_of(js_fresh, len(scenario))
    projector = Projector(pool, js_fresh, publisher)
    await projector.handle(deliveries)
    before = await dump(pool)
    await projector.handle(deliveries)  # the same batch again (a redelivery after a lost ack)
    await projector.handle(deliveries[10:20])
    assert await dump(pool) == before
    assert projector.stats.projected == len(scenario) and projector.stats.skipped == len(scenario) + 10


async def test_projector_reset_consumer_reprojects_nothing(js_fresh, pool, publisher, project, scenario):
    await publisher.publish_many(scenario)
    await project()
    before = await dump(pool)
    await reset_consumer(js_fresh)  # a new consumer would deliver the whole log again ...
    again = await project()
    assert again.stats.projected == 0 and again.stats.skipped == 0  # ... the runner starts after the tracked seq
    assert await dump(pool) == before


async def test_projector_replay_ignoring_tracking_rewrites_identical_rows(js_fresh, pool, publisher, project, scenario):
    await publisher.publish_many(scenario)
    await project(batch=7)
    before = await dump(pool)
    await pool.execute("UPDATE projector_tracking SET stream_seq = 0")
    await reset_consumer(js_fresh)
    again = await project(batch=50)  # other batch boundaries: the rows do not depend on them
    assert again.stats.projected == len(scenario)
    assert await dump(pool) == before


async def test_projector_facts_copied_again_over_their_rows_are_staged_and_skipped(
    js_fresh, pool, publisher, project, build, caplog
):
    """A batch's facts are copied straight into their table; where a row is there already (a replay that
    ignores the tracking row), the copy is undone and the rows go through the staged ``DO NOTHING``."""
    bars = [f.bar(i) for i in range(60)]
    await publisher.publish_many([e for b in bars for e in (b, build.snapshot(b, combined=b.close))])
    await project(batch=40)  # 20 snapshots a batch: copied
    before = await dump(pool)
    await pool.execute("DELETE FROM factor_snapshots WHERE ts_event_ns > $1", bars[29].ts_event)
    await pool.execute("UPDATE projector_tracking SET stream_seq = 0")
    await reset_consumer(js_fresh)
    again = await project(batch=120)  # the first batch meets 30 rows it wrote before, the second none
    assert again.stats.projected == 120 and again.stats.rejected == 0
    assert "projector.batch_rejected" not in caplog.text  # no fallback to one message at a time
    assert await dump(pool) == before


async def test_projector_restart_resumes_after_tracked_seq(js_fresh, pool, publisher, project):
    first = [f.bar(i) for i in range(40)]
    rest = [f.bar(i) for i in range(40, 100)]
    await publisher.publish_many(first)
    p1 = await project(batch=16)
    assert p1.stats.tracked_seq == 40
    await publisher.publish_many(rest)
    p2 = await project(batch=16)  # a new process: new projector, same durable consumer
    assert p2.stats.projected == 60 and p2.stats.skipped == 0 and p2.stats.tracked_seq == 100
    assert await count(pool, "SELECT count(*) FROM candles") == 100


async def test_projector_unacked_batch_of_crashed_process_comes_again_at_once_in_order(
    js_fresh, pool, publisher, project, deliveries_of
):
    await publisher.publish_many([f.bar(i) for i in range(100)])
    held = await deliveries_of(js_fresh, 40)  # fetched, never acked: JetStream would redeliver after ack_wait
    assert [d.stream_seq for d in held] == list(range(1, 41))
    p = await project(batch=25)  # the runner resets the lane to the tracked sequence: no gap to fill
    assert p.stats.gap_filled == 0 and p.stats.projected == 100 and p.stats.tracked_seq == 100
    assert await count(pool, "SELECT count(*) FROM candles") == 100


async def test_projector_row_rejected_by_postgres_is_dead_lettered_alone(js_fresh, pool, publisher, project, build):
    bars = [f.bar(i) for i in range(3)]
    i = build.intent(bars[0])
    v = build.verdict(i)
    bad = build.correlated(ev.SignalSuppressed, i, v, bars[0].ts_event, reason="nul\x00byte", lock_state="LOCKED",
                           decision="approve")  # fmt: skip
    await publisher.publish_many([bars[0], i, v, bad, bars[1], bars[2]])
    p = await project()
    assert p.stats.rejected == 1 and list(p.stats.rejected_seqs) == [4]
    assert await count(pool, "SELECT count(*) FROM candles") == 3
    assert await count(pool, "SELECT count(*) FROM intents") == 1
    assert await count(pool, "SELECT count(*) FROM suppressed") == 0
    dl = await pool.fetchrow("SELECT * FROM dead_letters")
    assert dl["service"] == "api" and dl["failed_stream_seq"] == 4 and dl["reason"].startswith("rejected")
    assert "SignalSuppressed" in dl["raw"] and dl["subject"] == "exec.suppressed.bybit.linear.BTCUSDT"
    msg = await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("api"))
    assert isinstance(ev.decode(msg.data), ev.DeadLettered)


async def test_projector_rejected_rows_of_a_copied_batch_are_dead_lettered_alone(js_fresh, pool, publisher, project):
    """A batch's statement of many rows is copied: a value Postgres refuses (a NUL byte) and one asyncpg cannot
    encode (beyond bigint) among them are dead-lettered alone, and the rest of the batch is projected."""
    t = f.T0_NS
    gaps = [ev.FeedGap(event_id=f"gap-{i}", ts_event=t + i, ts_init=t + i, symbol="BTCUSDT",
                       reason="nul\x00byte" if i == 5 else "u gap") for i in range(20)]  # fmt: skip
    bars = [f.bar(i) for i in range(20)]
    bars[9] = f.bar(9, ts_event=2**63 + 1, ts_init=2**63 + 1)
    await publisher.publish_many([*gaps, *bars])
    p = await project(batch=64)
    assert p.stats.rejected == 2 and sorted(p.stats.rejected_seqs) == [6, 30]
    assert await count(pool, "SELECT count(*) FROM feed_status") == 19
    assert await count(pool, "SELECT count(*) FROM candles") == 19
    assert await count(pool, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'rejected%'") == 2
    assert await count(pool, "SELECT count(*) FROM candles WHERE open_time_ns = $1", f.T0_NS + 9 * f.MINUTE_NS) == 0


async def test_projector_batch_after_a_rejected_copy_stages_its_rows_again(js_fresh, pool, publisher, project):
    """A rejected copy rolls back to its savepoint, the staging table made in it included: the next batch on
    the same connection makes it again instead of copying into a table that is gone."""
    bars = [f.bar(i) for i in range(40)]
    bars[9] = f.bar(9, ts_event=2**63 + 1, ts_init=2**63 + 1)  # beyond bigint: the first batch's copy fails
    await publisher.publish_many(bars)
    p = await project(batch=20)  # two batches of 20 candles, each copied through the staging table
    assert p.stats.rejected == 1 and list(p.stats.rejected_seqs) == [10]
    assert p.stats.tracked_seq == 41  # the 40 bars and the dead letter of bar 9
    assert await count(pool, "SELECT count(*) FROM candles") == 39


async def test_projector_dead_letter_of_bytes_with_nul_is_projected_escaped(js_fresh, pool, publisher, project):
    """A malformed message may hold NUL bytes, which Postgres text refuses: its dead letter still shows."""
    record = bus.dead_letter_record("signal", "undecodable: \x00", "md.bar.bybit.linear.BTCUSDT", 7, b"\x00\xff{")
    await publisher.publish_many([f.bar(0), record])
    p = await project()
    assert p.stats.rejected == 0 and p.stats.projected == 2
    dl = await pool.fetchrow("SELECT * FROM dead_letters")
    assert dl["raw"] == "\\x00\ufffd{" and dl["reason"] == "undecodable: \\x00" and dl["failed_stream_seq"] == 7


async def test_projector_connection_lost_is_transient_then_recovers(js_fresh, pool, publisher, deliveries_of):
    await publisher.publish_many([f.bar(i) for i in range(5)])
    deliveries = await deliveries_of(js_fresh, 5)
    # the backend kills its own connection in the middle of the batch's transaction
    await pool.execute(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;"
        "CREATE TRIGGER die BEFORE INSERT ON candles FOR EACH ROW EXECUTE FUNCTION die();"
    )
    projector = Projector(pool, js_fresh, publisher)
    with pytest.raises(TransientError, match="unavailable"):
        await projector.handle(deliveries)
    assert await projector.tracked_seq() == 0
    await pool.execute("DROP TRIGGER die ON candles")
    await projector.handle(deliveries)  # the retried batch lands on a new connection
    assert await projector.tracked_seq() == 5
    assert await count(pool, "SELECT count(*) FROM candles") == 5


async def test_projector_database_unreachable_is_transient(js_fresh, publisher, tmp_path, deliveries_of):
    await publisher.publish(f.bar(0))
    deliveries = await deliveries_of(js_fresh, 1)
    nowhere = await asyncpg.create_pool(f"postgresql://postgres@/x?host={tmp_path}", min_size=0, max_size=1)
    try:
        with pytest.raises(TransientError):
            await Projector(nowhere, js_fresh, publisher).handle(deliveries)
    finally:
        await nowhere.close()


async def test_projector_second_instance_waits_for_the_lock(js_fresh, pool, publisher):
    from prometheus_client import CollectorRegistry

    from nertz_common.metrics import BusMetrics

    await publisher.publish_many([f.bar(i) for i in range(10)])
    holder = Projector(pool, js_fresh, publisher)
    second = Projector(pool, js_fresh, publisher)
    registry, stop = CollectorRegistry(), asyncio.Event()
    runner = second.runner(js_fresh, publisher, BusMetrics("t", registry), registry, stop)
    async with pool.acquire() as c:
        await c.execute("SELECT pg_advisory_lock($1)", holder.lock_key)
        waiting = asyncio.create_task(second.run(runner, lock_poll_s=0.05))
        async with asyncio.timeout(10):
            while not second.waiting_for_lock:  # it tried, and waits for the lock
                await asyncio.sleep(0.01)
        assert await holder.tracked_seq() == 0 and not runner.started.is_set()
        await c.execute("SELECT pg_advisory_unlock($1)", holder.lock_key)
    await until_tracked(second, 10)
    stop.set()
    await asyncio.wait_for(waiting, 10)
    assert second.stats.tracked_seq == 10 and not second.waiting_for_lock


async def test_projector_database_of_another_stream_is_refused(js_fresh, pool, publisher):
    await pool.execute("INSERT INTO projector_tracking (consumer, stream_seq) VALUES ('projector', 500)")
    with pytest.raises(ProjectionMismatch, match="another log"):
        await Projector(pool, js_fresh, publisher).check_stream(12)
    await Projector(pool, js_fresh, publisher).check_stream(500)


def test_writes_open_update_after_close_keeps_closed_bar():
    w = Writes(set())
    w.add(f.bar(0, close=1.0, closed=False, event_id="o1"), 1)
    w.add(f.bar(0, close=2.0), 2)
    w.add(f.bar(0, close=3.0, closed=False, event_id="o2"), 3)
    w.add(f.bar(1, close=4.0, closed=False, event_id="o3"), 4)
    rows = list(w.keyed["candles"].values())
    assert rows[0][6] == 2.0 and rows[0][9] is True  # close, closed
    [last] = w.keyed["last_bars"].values()
    assert last[3] == 4.0 and last[4] is False  # the open bar 1 is later than the closed bar 0
    assert [r[0] for r in w.rows["symbols"]] == ["BTCUSDT"]


async def test_projector_lock_lost_to_another_instance_goes_back_to_standby(js_fresh, pool, publisher):
    from prometheus_client import CollectorRegistry

    from nertz_common.metrics import BusMetrics

    await publisher.publish_many([f.bar(i) for i in range(10)])
    p = Projector(pool, js_fresh, publisher)
    registry, stop = CollectorRegistry(), asyncio.Event()
    task = asyncio.create_task(p.run(p.runner(js_fresh, publisher, BusMetrics("t", registry), registry, stop),
                                     lock_poll_s=0.05))  # fmt: skip
    await until_tracked(p, 10)
    async with pool.acquire() as c:
        pid = await c.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        await c.execute("SELECT pg_terminate_backend($1)", pid)  # the lock dies with its connection ...
        async with asyncio.timeout(10):
            while not await c.fetchval("SELECT pg_try_advisory_lock($1)", p.lock_key):  # ... another takes it
                await asyncio.sleep(0.02)
        await publisher.publish_many([f.bar(i) for i in range(10, 20)])
        async with asyncio.timeout(20):
            while not p.waiting_for_lock:  # the projector found out at its next batch and waits as a standby
                assert not task.done()
                await asyncio.sleep(0.02)
        assert await p.tracked_seq() == 10
        await c.execute("SELECT pg_advisory_unlock($1)", p.lock_key)
    await until_tracked(p, 20)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert await count(pool, "SELECT count(*) FROM candles") == 20 and p.stats.tracked_seq == 20


async def test_projector_commits_lost_in_a_postgres_crash_are_projected_again(js_fresh, pool, publisher):
    """The lock's connection commits asynchronously: a crash of Postgres may lose the last commits, each
    whole with its tracking row. The view falls back to an earlier consistent state, and what was lost
    (a new symbol's first row included) is projected again from the stream."""
    from prometheus_client import CollectorRegistry

    from nertz_common.metrics import BusMetrics

    await publisher.publish_many([f.bar(i) for i in range(10)])
    p = Projector(pool, js_fresh, publisher)
    registry, stop = CollectorRegistry(), asyncio.Event()
    task = asyncio.create_task(p.run(p.runner(js_fresh, publisher, BusMetrics("t", registry), registry, stop)))
    await until_tracked(p, 10)
    await publisher.publish_many([f.bar(i, symbol="ETHUSDT") for i in range(10)])
    await until_tracked(p, 20)
    async with pool.acquire() as c:  # what a crash that lost the commits of sequences 11..20 leaves
        pid = await c.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        async with c.transaction():
            await c.execute("DELETE FROM candles WHERE stream_seq > 10")
            await c.execute("DELETE FROM last_bars WHERE stream_seq > 10")
            await c.execute("DELETE FROM symbols WHERE first_stream_seq > 10")
            await c.execute("UPDATE projector_tracking SET stream_seq = 10")
        await c.execute("SELECT pg_terminate_backend($1)", pid)
    await publisher.publish_many([f.bar(i, symbol="ETHUSDT") for i in range(10, 15)])
    await until_tracked(p, 25)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert p.stats.gap_filled == 10  # sequences 11..20, read from the stream before the new batch
    assert await count(pool, "SELECT count(*) FROM candles WHERE symbol = 'ETHUSDT'") == 15
    assert sorted(r[0] for r in await pool.fetch("SELECT symbol FROM symbols")) == ["BTCUSDT", "ETHUSDT"]
    assert await count(pool, "SELECT count(*) FROM last_bars") == 2


# --- what a real venue reports (migration 0004) ------------------------------------------------------


async def test_projector_venue_reports_project_each_type(js_fresh, pool, publisher, project, venue_scenario):
    await publisher.publish_many(venue_scenario)
    p = await project()
    assert p.stats.projected == len(venue_scenario) and p.stats.rejected == 0
    # orders: what Bybit answered, next to what the executor did
    rows = await pool.fetch("SELECT * FROM orders WHERE symbol = 'SOLUSDT' ORDER BY stream_seq")
    assert [r["kind"] for r in rows] == ["submitted", "refused", "rejected", "submitted", "accepted", "expired",
                                         "canceled"]  # fmt: skip
    refused, accepted, canceled = rows[1], rows[4], rows[6]
    assert refused["reason"] == "110007 ab not enough for new order" and refused["ret_code"] == 110007
    assert refused["venue_name"] == "bybit" and refused["reduce_only"] is False and refused["venue_order_id"] is None
    assert accepted["venue_order_id"] == "bybit-order-2" and accepted["reason"] is None
    assert canceled["reason"] == "canceled by the executor" and canceled["filled_qty"] == 0.0
    assert canceled["venue_order_id"] == "bybit-order-2" and canceled["order_id"] == accepted["order_id"]
    btc = [r["kind"] for r in await pool.fetch("SELECT kind FROM orders WHERE symbol = 'BTCUSDT' ORDER BY stream_seq")]
    assert btc == ["submitted", "accepted"]
    fills = await pool.fetch("SELECT * FROM fills ORDER BY stream_seq")
    assert [(r["qty"], r["leaves_qty"], r["venue_order_id"]) for r in fills] == [
        (0.4, 0.6, "bybit-order-1"), (0.6, 0.0, "bybit-order-1")
    ]  # fmt: skip
    # positions: the latest per venue and symbol, from the stream or a reconciliation ...
    latest = {r["symbol"]: r for r in await pool.fetch("SELECT * FROM venue_positions")}
    assert set(latest) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    b = latest["BTCUSDT"]  # the last report says: no position
    assert (b["venue_name"], b["source"], b["side"], b["qty"], b["mark_price"]) == ("bybit", "reconcile", None, 0.0,
                                                                                     100.6)  # fmt: skip
    assert b["event_id"] == venue_scenario[13].event_id and b["ts"].timestamp() == pytest.approx(b["ts_event_ns"] / 1e9)
    e = latest["ETHUSDT"]
    assert (e["side"], e["qty"], e["entry_price"], e["mark_price"]) == ("long", 2.0, 49.5, 50.0)
    # ... and every reconciliation's as a fact (the stream's push is not one)
    checks = await pool.fetch("SELECT * FROM reconciled_positions ORDER BY stream_seq")
    assert [(r["symbol"], r["side"], r["qty"]) for r in checks] == [
        ("BTCUSDT", "long", 1.0), ("BTCUSDT", None, 0.0), ("ETHUSDT", "long", 2.0), ("SOLUSDT", "short", 1.0)
    ]  # fmt: skip
    assert (
        checks[0]["trailing_stop"] == 1.5 and checks[0]["leverage"] == 3.0 and checks[0]["unrealized_pnl_usdt"] == 0.5
    )
    # the wallet: latest per venue, and its history
    wallet = await pool.fetchrow("SELECT * FROM venue_wallet")
    assert (wallet["venue_name"], wallet["equity_usdt"], wallet["unrealized_pnl_usdt"]) == ("bybit", 1012.5, 2.5)
    assert wallet["available_usdt"] == pytest.approx(911.25)
    history = await pool.fetch("SELECT equity_usdt FROM venue_wallet_history ORDER BY ts_event_ns")
    assert [r["equity_usdt"] for r in history] == [1000.0, 1012.5]
    # funding payments
    funding = await pool.fetch("SELECT * FROM funding ORDER BY stream_seq")
    assert [(r["fill_id"], r["fee_usdt"], r["rate"]) for r in funding] == [("funding-1", 0.03, 0.0003),
                                                                          ("funding-2", -0.01, -0.0001)]  # fmt: skip
    assert funding[0]["position_value_usdt"] == 101.0 and funding[0]["venue_name"] == "bybit"
    assert funding[0]["correlation_id"] == venue_scenario[1].correlation_id
    # what reconciliation found, and what the executor did
    mm = await pool.fetch("SELECT symbol, action, reason FROM venue_mismatches ORDER BY stream_seq")
    assert [(r["symbol"], r["action"]) for r in mm] == [
        ("BTCUSDT", "closed"), ("BTCUSDT", "halted"), ("ETHUSDT", "adopted"), ("SOLUSDT", "halted")
    ]  # fmt: skip
    closed = await pool.fetchrow("SELECT * FROM positions WHERE symbol = 'BTCUSDT'")
    assert closed["status"] == "closed" and closed["exit_reason"] == "reconciled"
    assert await pool.fetchval("SELECT exit_reason FROM round_trips WHERE symbol = 'BTCUSDT'") == "reconciled"
    # the lock: an adoption moves it (FLAT -> ENTRY_PENDING), then the adopted position locks it
    eth = await pool.fetch("SELECT * FROM lock_history WHERE symbol = 'ETHUSDT' ORDER BY stream_seq")
    assert [(r["state"], r["event_type"]) for r in eth] == [
        ("ENTRY_PENDING", "VenueMismatch"),
        ("LOCKED", "LockEngaged"),
    ]
    assert eth[0]["reason"] == "position adopted: a long position of 2 at 49.5 opened outside Nertz: adopted and locked"
    locks = {r["symbol"]: r["state"] for r in await pool.fetch("SELECT symbol, state FROM locks")}
    assert locks == {"BTCUSDT": "COOLDOWN", "ETHUSDT": "LOCKED", "SOLUSDT": "FLAT"}  # a halt moves no lock
    assert await count(pool, "SELECT count(*) FROM lock_history WHERE event_type = 'VenueMismatch'") == 1
    # the symbols halted now, with why
    halts = {r["symbol"]: r["reason"] for r in await pool.fetch("SELECT * FROM venue_halts")}
    assert halts == {"BTCUSDT": "the fill that closed the position is not on the log",
                     "SOLUSDT": "a short position of 1 opened outside Nertz"}  # fmt: skip
    assert await count(pool, "SELECT count(*) FROM symbols") == 3


async def test_projector_venue_redelivery_and_replay_change_nothing(
    js_fresh, pool, publisher, project, venue_scenario, deliveries_of
):
    await publisher.publish_many(venue_scenario)
    deliveries = await deliveries_of(js_fresh, len(venue_scenario))
    projector = Projector(pool, js_fresh, publisher)
    await projector.handle(deliveries[:20])
    await projector.handle(deliveries)
    before = await dump(pool)
    assert len(before["venue_positions"]) == 3 and len(before["venue_mismatches"]) == 4 and before["funding"]
    await projector.handle(deliveries)  # the same batch again (a redelivery after a lost ack)
    await projector.handle(deliveries[5:15])
    assert await dump(pool) == before
    assert projector.stats.projected == len(venue_scenario)
    # a replay that ignores the tracking row, in other batch boundaries, writes the same rows
    await pool.execute("UPDATE projector_tracking SET stream_seq = 0")
    await reset_consumer(js_fresh)
    again = await project(batch=3)
    assert again.stats.projected == len(venue_scenario) and await dump(pool) == before


async def test_projector_venue_position_of_an_older_report_does_not_win(
    js_fresh, pool, publisher, deliveries_of, build
):
    """The latest rows move forward by stream sequence only, even when a replay writes an older report."""
    t = f.T0_NS
    reports = [build.position_report("BTCUSDT", t, "stream", side="long", qty=1.0, entry_price=100.0),
               build.position_report("BTCUSDT", t + 1, side="long", qty=0.5, entry_price=100.0),
               build.wallet_report(t, 1000.0), build.wallet_report(t + 1, 990.0)]  # fmt: skip
    await publisher.publish_many(reports)
    deliveries = await deliveries_of(js_fresh, 4)
    projector = Projector(pool, js_fresh, publisher)
    await projector.handle(deliveries)
    await pool.execute("UPDATE projector_tracking SET stream_seq = 0")
    await projector.handle([deliveries[0], deliveries[2]])  # only the older reports, replayed
    pos = await pool.fetchrow("SELECT * FROM venue_positions")
    assert (pos["qty"], pos["source"]) == (0.5, "reconcile")
    assert await pool.fetchval("SELECT equity_usdt FROM venue_wallet") == 990.0


def test_writes_venue_position_keeps_one_row_per_venue_and_symbol():
    w = Writes({"BTCUSDT"})
    t = f.T0_NS
    for i, (venue_name, qty) in enumerate((("bybit", 1.0), ("paper", 2.0), ("bybit", 3.0))):
        w.add(ev.PositionSnapshot(event_id=f"p{i}", ts_event=t + i, ts_init=t + i, symbol="BTCUSDT",
                                  venue_name=venue_name, side="long", qty=qty, entry_price=100.0), i + 1)  # fmt: skip
    rows = w.keyed["venue_positions"]
    assert {k: r[4] for k, r in rows.items()} == {("bybit", "BTCUSDT"): 3.0, ("paper", "BTCUSDT"): 2.0}
    assert "reconciled_positions" not in w.rows  # stream pushes (the default source) are no reconciliation
