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
