"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, each in its own transaction.

Why our own runner: there is no maintained asyncpg-native migration library, and what we need fits in a
page: a ``schema_migrations(version, name, checksum, applied_at)`` table, a Postgres advisory lock so
that concurrent starts (two api processes, the demo and a test) apply each file exactly once, and a
checksum so that an edited, already-applied file is an error instead of a silent divergence.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger("nertz.api.migrate")

#: ``pg_advisory_lock`` key of the migration runner (any constant bigint unique to this purpose)
LOCK_KEY = 0x4E45_5254_5A4D_4947  # "NERTZMIG"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migrations on disk and the ones recorded in the database disagree, or a file is misnamed."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: ``version`` from its ``NNNN`` prefix, ``checksum`` = sha256 of its text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """Return the migrations of ``directory`` (default: the packaged ``migrations/``), by version.

    Raises
    ------
    MigrationError
        If a ``.sql`` file is not named ``NNNN_name.sql`` or two files share a version.
    """
    root = directory if directory is not None else resources.files("nertz_api") / "migrations"
    found: dict[int, Migration] = {}
    for entry in root.iterdir():  # type: ignore[union-attr]
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE.match(entry.name)
        if not m:
            raise MigrationError(f"expected a migration named NNNN_name.sql, was {entry.name!r}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"expected one file per version, {version:04d} has two ({entry.name})")
        found[version] = Migration(version, m.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(target: asyncpg.Pool | asyncpg.Connection, directory: Path | None = None) -> list[int]:
    """Apply every migration not yet recorded, in version order; return the versions applied now.

    Safe to call from several processes at once (a session advisory lock serialises them) and to call
    again (applied versions are skipped). Each file runs in its own transaction together with its
    ``schema_migrations`` row, so a failing file leaves no trace and stops the run.

    Parameters
    ----------
    target : asyncpg.Pool or asyncpg.Connection
        Where to migrate; a pool lends one connection for the duration.
    directory : Path, optional
        Folder of ``NNNN_name.sql`` files; the packaged ``nertz_api/migrations`` by default.

    Raises
    ------
    MigrationError
        If an applied migration's file changed (checksum) or disappeared, or a file is misnamed.
    asyncpg.PostgresError
        If a migration's SQL fails (that migration is rolled back; earlier ones stay applied).
    """
    migrations = discover(directory)
    async with _connection(target) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            applied = {r["version"]: r for r in rows}
            on_disk = {m.version for m in migrations}
            if missing := sorted(set(applied) - on_disk):
                raise MigrationError(f"expected the files of applied versions {missing} to exist, they are missing")
            done: list[int] = []
            for m in migrations:
                if (row := applied.get(m.version)) is not None:
                    if row["checksum"] != m.checksum:
                        raise MigrationError(
                            f"expected migration {m.version:04d}_{m.name} to be unchanged since it was applied, "
                            f"its checksum is {m.checksum[:12]}, was {row['checksum'][:12]}"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
                log.info("migration.applied", extra={"version": m.version, "migration": m.name})
                done.append(m.version)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


@contextlib.asynccontextmanager
async def _connection(target: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            yield conn
    else:
        yield target
