"""A Postgres outage under the api process: the real server is stopped and started again while events
are published; HTTP answers 503 meanwhile, the projector waits it out and then projects everything once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from nertz_common import bus, infra, subjects
from nertz_common.testing import factories as f
from nertz_common.testing.plugin import with_database

pytestmark = pytest.mark.integration

#: what a 503 body must never carry: exception names, reprs, driver names, socket paths
LEAKS = ("Error", "Exception", "Traceback", "asyncpg", "Errno", "PGSQL", "errno", "<", "'")


@pytest.fixture
def private_postgres() -> Iterator[infra.EmbeddedPostgres]:
    """A Postgres server of this test alone (the session's server must not go down)."""
    d = Path(tempfile.mkdtemp(prefix="nertz-test-pg-outage-"))
    pg = infra.start_postgres(d / "pg")
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    """Poll ``check`` until it returns True; fail with ``what`` after ``timeout_s`` seconds."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"expected {what} within {timeout_s} s")


def metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Feed:
    """Publishes BTCUSDT 1m bars in small chunks until stopped; ``published`` counts what JetStream stored."""

    def __init__(self, js) -> None:  # type: ignore[no-untyped-def]
        self._publisher = bus.Publisher(js)
        self._stop = asyncio.Event()
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._publisher.publish_many([f.bar(self.published + i) for i in range(20)])
            self.published += 20
            await asyncio.sleep(0.02)  # a steady rate, about 1,000 events/s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> int:
        self._stop.set()
        assert self._task is not None
        await self._task
        return self.published


@pytest.fixture
async def api(js_fresh, nats_url: str, private_postgres: infra.EmbeddedPostgres, tmp_path: Path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    """The api service as a process on the private server; yields (process, client, database URL, log path)."""
    admin = await asyncpg.connect(private_postgres.url)
    await admin.execute('CREATE DATABASE "outage"')
    await admin.close()
    db = with_database(private_postgres.url, "outage")
    port = infra.free_port()
    env = {
        **os.environ, "NATS_URL": nats_url, "DATABASE_URL": db, "NERTZ_API__PORT": str(port),
        "NERTZ_METRICS_PORT": str(port), "NERTZ_API__BATCH": "100",
    }  # fmt: skip
    log_path = tmp_path / "api.log"
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "nertz_api", env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def healthy() -> bool:
                assert proc.returncode is None, log_path.read_text()
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await until("the api to answer /health", healthy, 30)
            yield proc, client, db, log_path
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def test_projector_postgres_outage_is_waited_out_and_projects_every_event_once(
    js_fresh, api, private_postgres: infra.EmbeddedPostgres
):
    proc, client, db, log_path = api
    feed = Feed(js_fresh)
    feed.start()

    async def projected(n: int) -> bool:
        r = await client.get("/status")
        return r.status_code == 200 and r.json()["projector"]["stream_seq"] >= n

    await until("the projector to project the first events", lambda: projected(100))

    await asyncio.to_thread(private_postgres.pause)
    at_outage = feed.published

    async def unavailable() -> bool:
        return (await client.get("/status")).status_code == 503

    async def paused() -> bool:
        return metric((await client.get("/metrics")).text, "nertz_api_projector_paused") == 1

    async def retried() -> bool:  # the batch in hand was retried with backoff (0.1, 0.5, 1, 2 s...)
        return metric((await client.get("/metrics")).text, "nertz_api_naks_total") >= 4

    async def log_grew() -> bool:
        return feed.published >= at_outage + 1000

    await until("reads to answer 503", unavailable)
    await until("the projector to report itself paused", paused)
    await until("the projector to retry its batch several times", retried)
    await until("events to be published during the outage", log_grew)
    for path in ("/status", "/profit", "/candles/BTCUSDT/5", "/health"):
        r = await client.get(path)
        body = r.json()
        assert r.status_code == 503 and body["error"] == "database_unavailable", (path, r.status_code, body)
        assert body["reason"] and not [s for s in LEAKS if s in body["reason"]], body["reason"]
    assert proc.returncode is None, log_path.read_text()

    await asyncio.to_thread(private_postgres.resume)
    last = await feed.stop()
    assert last == (await js_fresh.stream_info(subjects.STREAM)).state.last_seq

    await until("the projector to catch up with the whole log", lambda: projected(last))
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "nertz_api_projector_paused") == 0
    assert metric(metrics, 'nertz_api_projector_pauses_total{reason="database_unavailable"}') >= 1
    # each sequence was counted once: projected, or (its commit's answer lost in the outage) skipped on retry
    counted = metric(metrics, "nertz_api_projector_events_total") + metric(metrics, "nertz_api_projector_skipped_total")
    assert counted == last, (counted, last)
    assert (await client.get("/health")).status_code == 200

    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT stream_seq) AS seqs, min(stream_seq) AS lo, max(stream_seq) AS hi "
            "FROM candles"
        )
        tracked = await conn.fetchval("SELECT stream_seq FROM projector_tracking WHERE consumer = 'projector'")
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await conn.close()
    assert (rows["n"], rows["seqs"], rows["lo"], rows["hi"]) == (last, last, 1, last)
    assert tracked == last and dead == 0

    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    names = [e.get("event") for e in events]
    assert "projector.paused" in names and "projector.resumed" in names
    assert names.index("projector.paused") < names.index("projector.resumed")
    assert {e.get("reason") for e in events if e.get("event") == "projector.paused"} == {"database_unavailable"}
    assert not [e for e in events if e.get("level") == "critical"]

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) == 0, log_path.read_text()
