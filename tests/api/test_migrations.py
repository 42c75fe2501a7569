"""The migration runner against a real Postgres."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from nertz_api.migrate import MigrationError, discover, migrate

pytestmark = pytest.mark.integration


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_migrate_twice_applies_each_version_once(fresh_db):
    conn = await asyncpg.connect(fresh_db)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        assert first == [m.version for m in discover()] and first[0] == 1
        assert second == []
        rows = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == first
        assert {"candles", "round_trips", "suppressed", "projector_tracking", "dead_letters"} <= await _tables(conn)
    finally:
        await conn.close()


async def test_migrate_concurrent_starts_apply_each_file_once(fresh_db):
    conns = [await asyncpg.connect(fresh_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(v for r in results for v in r) == [m.version for m in discover()]
    finally:
        for c in conns:
            await c.close()


async def test_migrate_failing_file_rolls_back_alone_and_keeps_earlier_ones(fresh_db, tmp_path: Path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t1 (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE t2 (x int); SELECT no_such_function();")
    conn = await asyncpg.connect(fresh_db)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, tmp_path)
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
        assert "t2" not in await _tables(conn) and "t1" in await _tables(conn)
        (tmp_path / "0002_broken.sql").write_text("CREATE TABLE t2 (x int);")
        assert await migrate(conn, tmp_path) == [2]
    finally:
        await conn.close()


async def test_migrate_edited_applied_file_raises(fresh_db, tmp_path: Path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t1 (x int);")
    conn = await asyncpg.connect(fresh_db)
    try:
        await migrate(conn, tmp_path)
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE t1 (x bigint);")
        with pytest.raises(MigrationError, match="unchanged"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


def test_discover_misnamed_file_raises(tmp_path: Path):
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


async def test_migration_0004_applies_on_top_of_0003_and_keeps_its_rows(fresh_db, tmp_path: Path):
    for m in discover():
        if m.version <= 3:
            (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql, encoding="utf-8")
    conn = await asyncpg.connect(fresh_db)
    order = ("INSERT INTO orders (event_id, kind, order_id, symbol, correlation_id, causation_id, ts_event_ns, "
             "stream_seq) VALUES ($1, $2, 'o1', 'BTCUSDT', 'c1', 'c0', 1, $3)")  # fmt: skip
    try:
        assert await migrate(conn, tmp_path) == [1, 2, 3]
        await conn.execute(order, "e1", "submitted", 1)
        await conn.execute(
            "INSERT INTO fills (event_id, order_id, fill_id, symbol, correlation_id, causation_id, ts_event_ns, side, "
            "qty, price, fee_usdt, liquidity, reduce_only, venue_name, stream_seq) "
            "VALUES ('f1', 'o1', 'x1', 'BTCUSDT', 'c1', 'e1', 2, 'Buy', 1, 100, 0.1, 'taker', false, 'paper', 2)"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(order, "e2", "accepted", 3)
        applied = await migrate(conn)  # the packaged files: 0001-0003 unchanged, so only what follows runs
        assert applied[0] == 4 and applied == [m.version for m in discover() if m.version > 3]
        # the rows of 0003 stay, the new columns empty (leaves_qty 0)
        fill = await conn.fetchrow("SELECT * FROM fills")
        assert (fill["venue_order_id"], fill["leaves_qty"], fill["exit_reason"], fill["qty"]) == (None, 0.0, None, 1.0)
        old = await conn.fetchrow("SELECT * FROM orders")
        assert (old["kind"], old["venue_order_id"], old["ret_code"], old["filled_qty"]) == (
            "submitted",
            None,
            None,
            None,
        )
        # the widened kinds, and only those
        for seq, kind in enumerate(("accepted", "refused", "canceled"), start=3):
            await conn.execute(order, f"e{seq}", kind, seq)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(order, "e9", "filled", 9)
        assert {"venue_positions", "reconciled_positions", "venue_wallet", "venue_wallet_history", "funding",
                "venue_mismatches"} <= await _tables(conn)  # fmt: skip
        # a halt holds until a later TradingStarted for the symbol or for all
        mismatch = ("INSERT INTO venue_mismatches (event_id, symbol, venue_name, correlation_id, causation_id, action, "
                    "reason, ts_event_ns, stream_seq) VALUES ($1, $2, 'bybit', 'c', 'c', $3, $4, 1, $5)")  # fmt: skip
        started = ("INSERT INTO control (event_id, kind, scope, actor, reason, ts_event_ns, stream_seq) "
                   "VALUES ($1, 'started', $2, 'ops', '', 1, $3)")  # fmt: skip

        async def halts() -> dict[str, str]:
            return {r["symbol"]: r["reason"] for r in await conn.fetch("SELECT symbol, reason FROM venue_halts")}

        await conn.execute(started, "s0", "all", 10)
        await conn.execute(mismatch, "m1", "SOLUSDT", "halted", "foreign short 1", 11)
        await conn.execute(mismatch, "m2", "BTCUSDT", "adopted", "foreign long 1", 12)
        assert await halts() == {"SOLUSDT": "foreign short 1"}  # a start before the halt lifts nothing
        await conn.execute(started, "s1", "SOLUSDT", 13)
        assert await halts() == {}
        await conn.execute(mismatch, "m3", "SOLUSDT", "halted", "qty differs", 14)
        await conn.execute(mismatch, "m4", "BTCUSDT", "halted", "unknown fill", 15)
        await conn.execute(started, "s2", "BTCUSDT", 16)
        assert await halts() == {"SOLUSDT": "qty differs"}
        await conn.execute(started, "s3", "all", 17)
        assert await halts() == {}
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(mismatch, "m5", "SOLUSDT", "ignored", "?", 18)
    finally:
        await conn.close()
