"""Projector throughput: events/s from JetStream into Postgres (median of several runs).

Starts an embedded nats-server and PostgreSQL (no Docker), publishes ``--events`` factory events
(closed 1m bars and their factor snapshots over 3 symbols, plus a book snapshot and a ticker every
``--book-every`` bars, the demo's mix), then projects the whole log ``--runs`` times, each run into a
fresh database with the ``projector`` consumer reset, and prints events/s and rows/s per run and the
median.

``--runner-only`` runs the kernel's projection runner into a sink that writes nothing: the ceiling the
JetStream side (fetch, decode, ack) puts on any projector, whatever Postgres does.

Reference: the target is >= 20,000 events/s on 2 cores (issue 11); the last line says whether the
median met it.

Run: ``.venv/bin/python bench/bench_projector.py [--events 50000] [--batch 1000] [--runner-only]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.js.errors
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from nertz_api.migrate import migrate
from nertz_api.projector import Projector
from nertz_common import bus, ids, infra, subjects, topology
from nertz_common import events as ev
from nertz_common.metrics import BusMetrics
from nertz_common.node.nats_runner import ProjectionRunner
from nertz_common.testing import factories as f
from nertz_common.testing.plugin import with_database

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: the projector's throughput target, events/s (issue 11)
TARGET = 20_000


def make_events(n: int, book_every: int) -> list[ev.Event]:
    """Return about ``n`` events: per bar a closed ``Bar`` and its ``FactorSnapshot``, plus books and tickers."""
    out: list[ev.Event] = []
    i = 0
    while len(out) < n:
        for s in SYMBOLS:
            bar = f.bar(i, symbol=s, close=100.0 + (i % 50))
            snap = ev.FactorSnapshot(
                event_id=ids.derive_id("FactorSnapshot", bar.event_id), ts_event=bar.ts_event, ts_init=bar.ts_event,
                symbol=s, bar_id=bar.event_id, interval="1", close=bar.close, egm=0.1, ild=0.2, rol=-0.1, pio=0.0,
                ogm=0.05, combined=1.2, used=["egm", "ild", "rol", "pio", "ogm"], ema_fast=100.0, ema_mid=99.0,
                ema_slow=98.0, trend="up", atr=1.0, regime="normal",
            )  # fmt: skip
            out += [bar, snap]
            if book_every and i % book_every == 0:
                out.append(f.book(bar.ts_event + 1, symbol=s, mid=bar.close))
                out.append(
                    ev.Ticker(
                        event_id=ids.derive_id("Ticker", s, bar.ts_event),
                        ts_event=bar.ts_event + 2,
                        ts_init=bar.ts_event + 2,
                        symbol=s,
                        last_price=bar.close,
                        mark_price=bar.close,
                    )
                )
        i += 1
    return out[:n]


async def fresh_consumer(nats_url: str) -> tuple[nats.NATS, JetStreamContext, int]:
    """Connect as the api service does and declare the ``projector`` consumer anew; return the client,
    JetStream and the last sequence."""
    nc = await bus.connect(nats_url, "bench-projector")
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(subjects.STREAM, "projector")
    await topology.apply(js)
    return nc, js, (await js.stream_info(subjects.STREAM)).state.last_seq


async def timed(work: Coroutine[Any, Any, None], done: Callable[[], bool], stop: asyncio.Event) -> float:
    """Run ``work`` until ``done()``, then stop it; return the seconds until ``done()``."""
    t0 = time.perf_counter()
    task = asyncio.create_task(work)
    while not done():
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - t0
    stop.set()
    await task
    return seconds


async def one_run(nats_url: str, pg_url: str, run: int, batch: int) -> tuple[float, int, int]:
    """Project the whole stream into a fresh database; return (seconds, events, rows)."""
    name = f"bench_{run}_{int(time.time())}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    nc, js, last = await fresh_consumer(nats_url)
    pool = await asyncpg.create_pool(with_database(pg_url, name), min_size=2, max_size=4)
    try:
        await migrate(pool)
        pub = bus.Publisher(js)
        projector = Projector(pool, js, pub)
        registry = CollectorRegistry()
        stop = asyncio.Event()
        runner = projector.runner(js, pub, BusMetrics("bench", registry), registry, stop, batch)
        seconds = await timed(projector.run(runner), lambda: projector.stats.tracked_seq >= last, stop)
        return seconds, projector.stats.projected, projector.stats.rows
    finally:
        await pool.close()
        await nc.close()


async def runner_only(nats_url: str, batch: int) -> tuple[float, int, int]:
    """Run the projection runner over the whole stream into a no-op sink; return (seconds, events, 0)."""
    nc, js, last = await fresh_consumer(nats_url)
    seen = [0, 0]

    async def sink(deliveries: list[bus.Delivery]) -> None:
        seen[0] = deliveries[-1].stream_seq
        seen[1] += len(deliveries)

    async def position() -> int:
        return 0

    registry, stop = CollectorRegistry(), asyncio.Event()
    runner = ProjectionRunner(
        js=js, publisher=bus.Publisher(js), metrics=BusMetrics("bench", registry), registry=registry, stop=stop,
        service="bench", lane="projector", position=position, sink=sink, batch=batch,
    )  # fmt: skip
    try:
        seconds = await timed(runner.run(), lambda: seen[0] >= last, stop)
        return seconds, seen[1], 0
    finally:
        await nc.close()


async def main(events: int, runs: int, batch: int, book_every: int, only_runner: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = infra.start_nats(Path(tmp) / "nats")
        pg = infra.start_postgres(Path(tmp) / "pg")
        try:
            nc = await nats.connect(srv.url)
            js = nc.jetstream()
            await topology.apply(js)
            evs = make_events(events, book_every)
            t0 = time.perf_counter()
            await bus.Publisher(js).publish_many(evs)
            print(f"published {len(evs)} events in {time.perf_counter() - t0:.1f} s")
            await nc.close()
            rates = []
            for r in range(runs):
                if only_runner:
                    seconds, n, rows = await runner_only(srv.url, batch)
                else:
                    seconds, n, rows = await one_run(srv.url, pg.url, r, batch)
                rates.append(n / seconds)
                print(f"run {r + 1}: {n} events, {rows} rows in {seconds:.2f} s = {n / seconds:,.0f} events/s, "
                      f"{rows / seconds:,.0f} rows/s")  # fmt: skip
            median = statistics.median(rates)
            what = "runner only, no Postgres" if only_runner else "into Postgres"
            print(f"median: {median:,.0f} events/s ({what}, batch {batch}, {len(evs)} events)")
            print(f"reference: >= {TARGET:,} events/s: {'met' if median >= TARGET else 'NOT met'}")
        finally:
            srv.stop()
            pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000, help="events to publish and project")
    ap.add_argument("--runs", type=int, default=3, help="projection runs (the median is printed)")
    ap.add_argument("--batch", type=int, default=1000, help="messages per fetch and transaction")
    ap.add_argument("--book-every", type=int, default=10, help="a book and a ticker every N bars per symbol (0: none)")
    ap.add_argument("--runner-only", action="store_true", help="the kernel runner into a no-op sink (no Postgres)")
    a = ap.parse_args()
    asyncio.run(main(a.events, a.runs, a.batch, a.book_every, a.runner_only))
