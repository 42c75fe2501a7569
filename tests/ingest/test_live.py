"""The live feed with the real pybit over loopback to the fake Bybit, publishing to a real JetStream.

Each fault (u skip, crossed book, malformed frames, dropped connection, pybit giving up, stall,
10006, 5xx, timeouts) must be detected, reported (FeedGap/FeedStale/dead letter/metric) and recovered
from without losing the good frames around it; live events must equal the replay of the same frames;
the backfill must page correctly. Nothing may leave the machine (``loopback_only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import read_log
from nertz_common.testing.fake_bybit import (
    FakeBybit,
    KlineStore,
    kline_frame,
    loopback_only,
    recorded_frames,
    trade_frame,
)
from nertz_ingest.adapters.bybit_rest import REST_URLS, BybitRest, RestError
from nertz_ingest.adapters.log_position import last_bars, last_closed_bars
from nertz_ingest.adapters.recorder import RecordingWriter
from nertz_ingest.adapters.recording import RawFrame, SourceFile
from nertz_ingest.app import build_parser
from nertz_ingest.live import LiveError, LiveFeed
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import replay_files
from nertz_ingest.settings import IngestConfig, LiveConfig, UniverseConfig
from nertz_ingest.universe import UniverseHunter

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"
INSTRUMENTS = Path(__file__).parent / "data" / "bybit_instruments_linear.json"
RECORDING = DATA / "cryptofeed" / "BYBIT.linear.jsonl.xz"
BTC_CSV = DATA / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
SYMBOL = "BTCUSDT"
BOOK = f"orderbook.50.{SYMBOL}"
BIDS = [("100.0", "1"), ("99.9", "2"), ("99.8", "3")]
ASKS = [("100.1", "1"), ("100.2", "2"), ("100.3", "3")]
STATUS = (ev.BookSnapshot, ev.FeedGap, ev.FeedResynced, ev.FeedStale)
#: fast but patient settings: the suite shares 2 cores with NATS
FAST: dict[str, Any] = dict(
    backfill_bars=0,
    stale_s=30.0,
    resync_timeout_s=5.0,
    reconnect_initial_s=0.1,
    reconnect_max_s=0.5,
    rest_timeout_s=3.0,
    rest_attempts=4,
    ws_retries=3,
)


class TapPublisher(bus.Publisher):
    """The real publisher, keeping what it published so a test can wait for events."""

    def __init__(self, js: Any) -> None:
        super().__init__(js)
        self.events: list[ev.Event] = []
        self._changed = asyncio.Condition()

    async def publish_many(self, events, headers=None, window: int = 1000) -> int:  # type: ignore[no-untyped-def,override]
        batch = list(events)
        stored = await super().publish_many(batch, headers, window)
        async with self._changed:
            self.events.extend(batch)
            self._changed.notify_all()
        return stored

    async def wait_for(self, pred: Callable[[list[ev.Event]], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: pred(self.events))


@dataclass
class Live:
    feed: LiveFeed
    pub: TapPublisher
    registry: CollectorRegistry
    task: asyncio.Task[Any]

    async def wait_for(self, pred: Callable[[list[ev.Event]], bool], timeout_s: float = 30.0) -> None:
        waiter = asyncio.ensure_future(self.pub.wait_for(pred, timeout_s))
        done, _ = await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self.task.result()
            raise AssertionError("the live feed ended before the expected events")
        waiter.result()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"nertz_market_ingest_{name}", labels) or 0.0

    def book(self) -> list[tuple[str, Any]]:
        """The symbol's book and status events: (type, update_id | reason)."""
        out = []
        for e in self.pub.events:
            if isinstance(e, ev.BookSnapshot):
                out.append(("BookSnapshot", e.update_id))
            elif isinstance(e, ev.FeedResynced):
                out.append(("FeedResynced", e.update_id))
            elif isinstance(e, ev.FeedGap | ev.FeedStale):
                out.append((type(e).__name__, getattr(e, "reason", e.topic)))
        return out


@contextlib.asynccontextmanager
async def live_feed(
    fake: FakeBybit,
    js: Any,
    symbols: tuple[str, ...] = (SYMBOL,),
    *,
    book_min_interval_ms: int = 0,
    tap: Callable[[str, int], None] | None = None,
    logged_until: dict[str, int] | None = None,
    logged: dict[str, ev.Bar] | None = None,
    universe: UniverseConfig | None = None,
    **live: Any,
) -> AsyncIterator[Live]:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    cfg = IngestConfig(book_min_interval_ms=book_min_interval_ms, live=LiveConfig(**{**FAST, **live}))
    rest = BybitRest(
        fake.base_url,
        timeout_s=cfg.live.rest_timeout_s,
        attempts=cfg.live.rest_attempts,
        rate_limit_max_wait_s=cfg.live.rate_limit_max_wait_s,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
        metrics=metrics,
    )
    pub = TapPublisher(js)
    hunter = UniverseHunter(rest, universe, symbols, metrics=metrics) if universe is not None else None
    feed = LiveFeed(
        pub,
        list(symbols),
        config=cfg,
        ws_url=fake.ws_url,
        rest=rest,
        metrics=metrics,
        tap=tap,
        logged_until=logged_until,
        logged=logged,
        js=js,
        universe=hunter,
    )
    task = asyncio.create_task(feed.run())
    try:
        yield Live(feed, pub, registry, task)
    finally:
        feed.stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            rest.close()


async def _started(fake: FakeBybit, live: Live) -> None:
    await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
    fake.public.set_book(BOOK, BIDS, ASKS, u=1000)
    fake.public.book_delta(BOOK, bids=[("100.0", "1.5")])  # u=1001
    await live.wait_for(lambda es: _has_snapshot(es, 1001))


def _has_snapshot(events: list[ev.Event], u: int) -> bool:
    return any(isinstance(e, ev.BookSnapshot) and e.update_id == u for e in events)


def _has(kind: type[ev.Event]) -> Callable[[list[ev.Event]], bool]:
    return lambda events: any(isinstance(e, kind) for e in events)


def _trade(fake: FakeBybit, price: str, side: str = "Buy") -> None:
    fake.public.publish(trade_frame(SYMBOL, [(price, "0.25", side)], ts=fake.public.next_ts()))


def _trade_prices(live: Live) -> list[float]:
    return [t.price for e in live.pub.events if isinstance(e, ev.TradeBatch) for t in e.trades]


# --- the same events as replay ----------------------------------------------------------------------


async def test_live_recorded_frames_give_the_same_events_as_replaying_what_was_received(
    fake: FakeBybit, js_fresh: Any, tmp_path: Path
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    frames = recorded_frames(RECORDING, symbols=symbols)
    received: list[tuple[str, int]] = []
    writer = RecordingWriter(tmp_path / "live.jsonl.xz", url=f"{fake.ws_url}/v5/public/linear")

    def tap(raw: str, recv_ns: int) -> None:
        received.append((raw, recv_ns))
        writer.write(raw, recv_ns)

    async with live_feed(fake, js_fresh, symbols, depth=200, book_min_interval_ms=100, tap=tap) as live:
        await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
        sent = await fake.public.play(frames)
        await fake.public.flush()
        deadline = time.monotonic() + 30
        while live.feed.stats.frames < sent + len(live.feed.topics) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    writer.close()
    assert sent == len(frames) > 1900
    assert live.feed.stats.frames == len(received) == sent + len(live.feed.topics)  # + one ack per topic
    assert not live.feed.stats.rejected and live.feed.stats.gaps == 0 and live.feed.stats.reconnects == 0
    live_stream = await read_log(js_fresh, filters=["md.>", "sys.>"])
    live_events = [r.event for r in live_stream if not isinstance(r.event, ev.InstrumentSpec)]
    assert [e for e in live.pub.events if not isinstance(e, ev.InstrumentSpec)] == live_events
    kinds = {type(e).__name__ for e in live_events}
    assert kinds == {"BookSnapshot", "Ticker", "TradeBatch", "Bar"}

    # what the live feed received, as the recorder wrote it and as a cryptofeed format-2 file,
    # replayed into a fresh log each time: the same payloads (ids and ts_init included), in order
    lines = [
        {"t": "header", "format": 2},
        {"t": "connect", "conn": "live", "ts": received[0][1] / 1e9, "addr": f"{fake.ws_url}/v5/public/linear"},
        *({"t": "recv", "conn": "live", "ts": ns / 1e9, "data": raw} for raw, ns in received),
    ]
    cryptofeed = tmp_path / "live-cryptofeed.jsonl"
    cryptofeed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    for path in (tmp_path / "live.jsonl.xz", cryptofeed):
        await topology.recreate(js_fresh)
        stats = await replay_files(bus.Publisher(js_fresh), [path], symbols=symbols, config=live.feed.config)
        replayed = [r.event for r in await read_log(js_fresh, filters=["md.>", "sys.>"])]
        assert stats.stored == len(replayed) == len(live_events), path.name
        assert [ev.encode(e) for e in replayed] == [ev.encode(e) for e in live_events], path.name


# --- start-up: instruments and backfill ---------------------------------------------------------------


async def test_live_backfill_pages_2500_bars_backwards_in_order_without_duplicates(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    starts, rows = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-1] + 30_000  # the newest candle is still open
    async with live_feed(fake, js_fresh, backfill_bars=2500, intervals=("1", "5")) as live:
        await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
        fake.public.set_book(BOOK, BIDS, ASKS, u=1000)
        await live.wait_for(lambda es: _has_snapshot(es, 1000))
    calls = fake.calls_to("/v5/market/kline")
    ones = [c.query for c in calls if c.query["interval"] == "1"]
    assert [q.get("limit") for q in ones] == ["1000", "1000", "501"]
    assert [q.get("end") for q in ones] == [None, str(starts[-1000] - 1), str(starts[-2000] - 1)]
    fives = [c.query for c in calls if c.query["interval"] == "5"]
    assert len(fives) == 1  # only 600 five-minute bars exist: a short page ends the paging

    events = live.pub.events
    assert isinstance(events[0], ev.InstrumentSpec) and events[0].tick_size == 0.1 and events[0].qty_step == 0.001
    bars = [e for e in events if isinstance(e, ev.Bar)]
    first_book = next(i for i, e in enumerate(events) if isinstance(e, ev.BookSnapshot))
    assert all(isinstance(e, ev.Bar) for e in events[1:first_book]) and len(bars) == first_book - 1
    assert [b.ts_event for b in bars] == sorted(b.ts_event for b in bars)  # one time order, both intervals
    one = [b for b in bars if b.interval == "1"]
    assert [b.open_time_ns for b in one] == [s * 1_000_000 for s in starts[-2501:-1]]  # the open one left out
    assert len({b.event_id for b in bars}) == len(bars) and all(b.closed for b in bars)
    by_start = {int(r[0]): r for r in rows}
    for b in (one[0], one[1234], one[-1]):
        r = by_start[b.open_time_ns // 1_000_000]
        assert (b.open, b.high, b.low, b.close, b.volume) == tuple(float(x) for x in r[1:6])
        assert b.event_id == derive_id("Bar", SYMBOL, "1", b.open_time_ns, True)  # same id as CSV and WS bars
        assert b.ts_event == b.ts_init == b.open_time_ns + 60_000_000_000
    five = [b for b in bars if b.interval == "5"]
    assert five and all((b.open_time_ns // 1_000_000) % 300_000 == 0 for b in five)
    assert five[-1].ts_event <= fake.now_ms * 1_000_000
    assert live.feed.stats.backfill_bars == len(bars) and live.feed.stats.backfill_pages == 4


async def test_live_restart_backfills_only_bars_the_log_does_not_have(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    starts, _ = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-1] + 30_000
    async with live_feed(fake, js_fresh, backfill_bars=300) as first:
        await _started(fake, first)
    fake.now_ms = starts[-1] + 30_000 + 5 * 60_000  # five more minutes have closed on the exchange
    logged = {s: bar.ts_event for s, bar in (await last_closed_bars(js_fresh, [SYMBOL])).items()}
    assert logged[SYMBOL] == starts[-2] * 1_000_000 + 60_000_000_000  # the last closed bar of the first run
    async with live_feed(fake, js_fresh, backfill_bars=300, logged_until=logged) as second:
        await _started(fake, second)
    again = [e for e in second.pub.events if isinstance(e, ev.Bar)]
    assert again and all(b.ts_event > logged[SYMBOL] for b in again)
    first_ids = {e.event_id for e in first.pub.events if isinstance(e, ev.Bar)}
    assert not first_ids & {b.event_id for b in again}


async def test_live_restart_fills_the_closed_bar_the_socket_missed_before_an_open_update_on_the_log(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    # the socket lost the frame closing starts[-10] and ingest died on updates of the next bar, still
    # open (before the next closed bar would have made it fill the gap): the log ends on an open bar
    starts, rows = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-10] + 30_000  # backfill: ..., starts[-11] closed
    updates = 300  # more than the first look-back window of last_closed_bars (256 messages)
    async with live_feed(fake, js_fresh, backfill_bars=50) as first:
        await fake.public.wait_subscribed(first.feed.topics, timeout_s=30)
        for i in range(updates):
            fake.public.publish(kline_frame(SYMBOL, "1", rows[-9], confirm=False, ts=starts[-9] + 1000 + i))
        await first.wait_for(lambda es: sum(isinstance(e, ev.Bar) and not e.closed for e in es) == updates)
    tail = (await last_bars(js_fresh, [SYMBOL]))[SYMBOL]
    assert not tail.closed and tail.open_time_ns == starts[-9] * 1_000_000
    logged = await last_closed_bars(js_fresh, [SYMBOL])
    assert logged[SYMBOL].closed and logged[SYMBOL].open_time_ns == starts[-11] * 1_000_000
    fake.now_ms = starts[-8] + 30_000  # restarted two minutes on: starts[-10] and starts[-9] have closed
    async with live_feed(fake, js_fresh, backfill_bars=50, logged=logged) as second:
        await fake.public.wait_subscribed(second.feed.topics, timeout_s=30)
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-8], confirm=True, ts=starts[-7]))
        last = starts[-8] * 1_000_000
        await second.wait_for(lambda es: any(isinstance(e, ev.Bar) and e.open_time_ns == last for e in es))
    log = [r.event for r in await read_log(js_fresh, filters=[subjects.filter_of("md", "bar")])]
    closed = [e.open_time_ns // 1_000_000 for e in log if isinstance(e, ev.Bar) and e.closed]
    assert closed == starts[-60:-7]  # complete and in order: the missed bar came from the restart's backfill
    assert [e.open_time_ns // 1_000_000 for e in second.pub.events if isinstance(e, ev.Bar)] == starts[-10:-7]
    assert not _dead(second)


async def test_live_closed_bars_the_websocket_skipped_are_filled_by_rest_in_order(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    starts, rows = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-10] + 30_000  # backfill: ..., starts[-11] closed
    kline = f"kline.1.{SYMBOL}"
    async with live_feed(fake, js_fresh, backfill_bars=20) as live:
        await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-10], confirm=True, ts=starts[-9]))  # contiguous
        fake.now_ms = starts[-5] + 30_000
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-6], confirm=True, ts=starts[-5]))  # 3 bars skipped
        await live.wait_for(lambda es: any(isinstance(e, ev.Bar) and e.open_time_ns == starts[-6] * 10**6 for e in es))
    opens = [e.open_time_ns // 1_000_000 for e in live.pub.events if isinstance(e, ev.Bar)]
    assert opens == starts[-30:-5]  # 20 backfilled, 1 live, 3 filled, 1 live: complete and in order
    fills = [c.query for c in fake.calls_to("/v5/market/kline")][1:]
    assert fills == [
        {"category": "linear", "end": str(starts[-6] - 1), "interval": "1", "limit": "4", "symbol": SYMBOL}
    ]
    assert live.feed.stats.filled == 3 and live.metric("bars_filled_total", symbol=SYMBOL) == 3
    assert fake.public.sent[kline] == 2


def _other_close(row: list[str]) -> list[str]:
    return [*row[:4], f"{float(row[4]) + 0.5:.2f}".rstrip("0").rstrip("."), *row[5:]]


def _dead(live: Live) -> list[str]:
    return [e.reason.split(":")[0] for e in live.pub.events if isinstance(e, ev.DeadLettered)]


async def test_live_kline_back_in_time_or_conflicting_is_dead_lettered_and_an_identical_repeat_dropped(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    starts, rows = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-10] + 30_000  # backfill: ..., starts[-11] closed
    async with live_feed(fake, js_fresh, backfill_bars=20) as live:
        await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
        for row, ts in [(rows[-10], starts[-9]), (rows[-40], starts[-9] + 1), (rows[-10], starts[-9] + 2),
                        (_other_close(rows[-10]), starts[-9] + 3), (rows[-15], starts[-9] + 4)]:  # fmt: skip
            fake.public.publish(kline_frame(SYMBOL, "1", row, confirm=True, ts=ts))
        fake.now_ms = starts[-8] + 30_000
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-9], confirm=True, ts=starts[-8]))
        await live.wait_for(lambda es: any(isinstance(e, ev.Bar) and e.open_time_ns == starts[-9] * 10**6 for e in es))
    opens = [e.open_time_ns // 1_000_000 for e in live.pub.events if isinstance(e, ev.Bar)]
    assert opens == starts[-30:-8]  # 20 backfilled, then two live: forward in time, each once
    assert _dead(live) == ["out_of_order", "conflicting_bar"]  # rows[-15] repeats a backfilled bar: known
    for reason in ("out_of_order", "conflicting_bar"):
        assert live.metric("rejected_total", reason=reason) == 1
    assert live.feed.stats.rejected == {"out_of_order": 1, "conflicting_bar": 1}
    dl = [e for e in live.pub.events if isinstance(e, ev.DeadLettered)]
    assert (await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("market-ingest"))).data == ev.encode(
        dl[-1]
    )


async def test_live_restart_kline_older_than_the_log_is_dead_lettered(
    fake: FakeBybit, js_fresh: Any, klines: KlineStore
) -> None:
    starts, rows = klines.series(SYMBOL, "1")
    fake.now_ms = starts[-10] + 30_000
    async with live_feed(fake, js_fresh, backfill_bars=50) as first:
        await _started(fake, first)
    logged = await last_bars(js_fresh, [SYMBOL])
    assert logged[SYMBOL].open_time_ns == starts[-11] * 1_000_000
    async with live_feed(fake, js_fresh, backfill_bars=50, logged=logged) as second:
        await fake.public.wait_subscribed(second.feed.topics, timeout_s=30)
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-20], confirm=True, ts=starts[-9]))  # older than the log
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-11], confirm=True, ts=starts[-9] + 1))  # the log's last
        fake.public.publish(kline_frame(SYMBOL, "1", rows[-10], confirm=True, ts=starts[-9] + 2))
        await second.wait_for(lambda es: any(isinstance(e, ev.Bar) for e in es))
    bars_and_dead = [e for e in second.pub.events if isinstance(e, ev.Bar | ev.DeadLettered)]
    assert [type(e).__name__ for e in bars_and_dead] == ["DeadLettered", "Bar"]  # the log's last bar: known
    assert isinstance(bars_and_dead[1], ev.Bar) and bars_and_dead[1].open_time_ns == starts[-10] * 1_000_000
    assert _dead(second) == ["out_of_order"] and second.feed.stats.backfill_bars == 0


async def test_live_unknown_symbol_stops_before_connecting(fake: FakeBybit, js_fresh: Any) -> None:
    with pytest.raises(LiveError, match="DOGEUSDT"):
        async with live_feed(fake, js_fresh, ("BTCUSDT", "DOGEUSDT")) as live:
            await live.task
    assert fake.public.connections_total == 0


async def test_live_rest_rate_limit_5xx_and_timeout_are_waited_out_and_retried(fake: FakeBybit, js_fresh: Any) -> None:
    fake.fault("/v5/market/instruments-info", "rate_limit", reset_in_ms=700)
    fake.fault("/v5/market/kline", "rate_limit", reset_in_ms=600_000)  # far away: the wait is bounded
    fake.fault("/v5/market/kline", "http_status", times=2, status=503)
    fake.fault("/v5/market/kline", "delay", delay_s=2.5)  # longer than the REST timeout
    t0 = time.monotonic()
    async with live_feed(
        fake, js_fresh, backfill_bars=50, rate_limit_max_wait_s=1.0, rest_timeout_s=0.8, rest_attempts=6
    ) as live:
        await live.wait_for(lambda es: sum(isinstance(e, ev.Bar) for e in es) == 50)
    assert time.monotonic() - t0 < 25
    inst = fake.calls_to("/v5/market/instruments-info")
    assert [c.answer for c in inst] == ["rate_limit", "ok"]
    assert inst[1].time_ms - inst[0].time_ms >= 600  # waited until X-Bapi-Limit-Reset-Timestamp
    kline = fake.calls_to("/v5/market/kline")
    assert [c.answer for c in kline[:3]] == ["rate_limit", "http_503", "http_503"]
    assert sorted(c.answer for c in kline[3:]) == ["ok", "ok"]  # the slow one (timed out) and its retry
    assert 900 <= kline[1].time_ms - kline[0].time_ms < 5000  # capped at rate_limit_max_wait_s
    m = live.metric
    assert m("rest_calls_total", endpoint="get_instruments_info", outcome="rate_limited") == 1
    assert m("rest_calls_total", endpoint="get_kline", outcome="rate_limited") == 1
    assert m("rest_calls_total", endpoint="get_kline", outcome="http_5xx") == 2
    assert m("rest_calls_total", endpoint="get_kline", outcome="timeout") == 1
    assert m("rest_calls_total", endpoint="get_kline", outcome="ok") == 1


async def test_live_rest_failing_past_its_attempts_raises_rest_error(fake: FakeBybit, js_fresh: Any) -> None:
    fake.fault("/v5/market/instruments-info", "http_status", times=5, status=502)
    with pytest.raises(RestError, match="after 2 attempts"):
        async with live_feed(fake, js_fresh, rest_attempts=2) as live:
            await live.task
    assert len(fake.calls_to("/v5/market/instruments-info")) == 2


# --- book integrity -----------------------------------------------------------------------------------


async def test_live_u_gap_is_reported_resubscribed_and_resynced_without_losing_good_frames(
    fake: FakeBybit, js_fresh: Any
) -> None:
    async with live_feed(fake, js_fresh) as live:
        await _started(fake, live)
        _trade(fake, "100.05")
        fake.public.skip_next_delta(BOOK)
        fake.public.book_delta(BOOK, asks=[("100.1", "0.5")])  # u=1002: applied by the server, lost on the wire
        fake.public.book_delta(BOOK, bids=[("99.9", "3")])  # u=1003: the gap shows
        _trade(fake, "100.06", "Sell")
        await live.wait_for(_has(ev.FeedResynced))
        fake.public.book_delta(BOOK, bids=[("99.7", "1")])  # u=1004
        _trade(fake, "100.07")
        await live.wait_for(lambda es: _has_snapshot(es, 1004) and len(_trade_prices(live)) == 3)
    assert live.book() == [
        ("BookSnapshot", 1000),
        ("BookSnapshot", 1001),
        ("FeedGap", "expected u=1002, was 1003"),
        ("FeedResynced", 1003),
        ("BookSnapshot", 1003),
        ("BookSnapshot", 1004),
    ]
    resynced = next(e for e in live.pub.events if isinstance(e, ev.BookSnapshot) and e.update_id == 1003)
    assert resynced.asks[0] == (100.1, 0.5) and resynced.bids[1] == (99.9, 3.0)  # the server's true book
    assert _trade_prices(live) == [100.05, 100.06, 100.07]
    assert fake.public.count_requests("unsubscribe", BOOK) == 1 and fake.public.count_requests("subscribe", BOOK) == 2
    assert live.metric("book_gaps_total", symbol=SYMBOL) == 1 and live.metric("book_resyncs_total", symbol=SYMBOL) == 1
    assert live.metric("resubscribes_total", reason="gap") == 1
    assert fake.public.connections_total == 1


@pytest.mark.parametrize("locked", [False, True])
async def test_live_crossed_book_is_reported_resubscribed_and_resynced(
    fake: FakeBybit, js_fresh: Any, locked: bool
) -> None:
    async with live_feed(fake, js_fresh) as live:
        await _started(fake, live)
        fake.public.cross_book(BOOK, locked=locked)  # u=1002
        await live.wait_for(_has(ev.FeedResynced))
        fake.public.book_delta(BOOK, asks=[("100.1", "7")])  # u=1003
        await live.wait_for(lambda es: _has_snapshot(es, 1003))
    book = live.book()
    assert book[:2] == [("BookSnapshot", 1000), ("BookSnapshot", 1001)]
    assert book[2][0] == "FeedGap" and book[2][1].startswith(f"{'locked' if locked else 'crossed'} book: best bid")
    assert book[3:] == [("FeedResynced", 1002), ("BookSnapshot", 1002), ("BookSnapshot", 1003)]
    after = [e for e in live.pub.events if isinstance(e, ev.BookSnapshot)][-1]
    assert after.bids[0][0] < after.asks[0][0]  # sane again
    assert live.metric("resubscribes_total", reason="gap") == 1


async def test_live_malformed_and_bad_frames_are_dead_lettered_and_the_feed_goes_on(
    fake: FakeBybit, js_fresh: Any
) -> None:
    truncated = '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["100.0",'
    negative = json.loads(trade_frame(SYMBOL, [("100.05", "0.1", "Buy")], ts=fake.public.next_ts()))
    negative["data"][0]["p"] = "-5"
    async with live_feed(fake, js_fresh) as live:
        await _started(fake, live)
        _trade(fake, "100.01")
        assert fake.public.send_raw(truncated, BOOK) == 1
        fake.public.publish(negative)
        assert fake.public.send_raw('["not", "an", "object"]') == 1
        assert fake.public.send_raw("\x00\xff garbage") == 1
        fake.public.book_delta(BOOK, bids=[("99.9", "4")])  # u=1002: the book never noticed
        _trade(fake, "100.02")
        await live.wait_for(lambda es: _has_snapshot(es, 1002) and len(_trade_prices(live)) == 2)
    dead = [e for e in live.pub.events if isinstance(e, ev.DeadLettered)]
    assert [d.reason.split(":", 1)[0] for d in dead] == [
        "invalid_json",
        "non_positive_price",
        "not_an_object",
        "invalid_json",
    ]
    assert dead[0].raw == truncated and dead[1].raw == json.dumps(negative, separators=(",", ":"))
    assert all(d.service == "market-ingest" for d in dead)
    assert ("FeedGap" not in {k for k, _ in live.book()}) and _trade_prices(live) == [100.01, 100.02]
    assert live.metric("rejected_total", reason="invalid_json") == 2
    assert live.metric("rejected_total", reason="non_positive_price") == 1
    assert live.metric("frames_total", topic="invalid") == 3
    assert fake.public.connections_total == 1  # pybit's socket survived all of it
    msg = await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("market-ingest"))
    assert ev.decode(msg.data) == dead[-1]


async def test_live_refused_subscription_is_dead_lettered_and_the_socket_survives(
    fake: FakeBybit, js_fresh: Any
) -> None:
    kline = f"kline.1.{SYMBOL}"
    fake.public.reject_topics.add(kline)  # the ack pybit itself would die on (WIRE.md §0 rule 2)
    async with live_feed(fake, js_fresh) as live:
        await fake.public.wait_subscribed([t for t in live.feed.topics if t != kline], timeout_s=30)
        fake.public.set_book(BOOK, BIDS, ASKS, u=1000)
        await live.wait_for(lambda es: _has_snapshot(es, 1000) and _has(ev.DeadLettered)(es))
    dead = next(e for e in live.pub.events if isinstance(e, ev.DeadLettered))
    assert dead.reason.startswith("request_failed: subscribe failed") and kline in dead.raw
    assert fake.public.connections_total == 1 and live.metric("rejected_total", reason="request_failed") == 1


# --- connection life ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "abort"])
async def test_live_dropped_connection_gaps_books_and_pybit_reconnect_resyncs_them(
    fake: FakeBybit, js_fresh: Any, mode: str
) -> None:
    async with live_feed(fake, js_fresh) as live:
        await _started(fake, live)
        _trade(fake, "100.01")
        await live.wait_for(lambda es: len(_trade_prices(live)) == 1)
        assert await fake.public.drop(mode) == 1  # type: ignore[arg-type]
        await live.wait_for(_has(ev.FeedResynced))
        await fake.public.wait_subscribed(live.feed.topics, timeout_s=30)
        fake.public.book_delta(BOOK, bids=[("99.9", "4")])  # u=1002
        _trade(fake, "100.02")
        await live.wait_for(lambda es: _has_snapshot(es, 1002) and len(_trade_prices(live)) == 2)
    assert live.book() == [
        ("BookSnapshot", 1000),
        ("BookSnapshot", 1001),
        ("FeedGap", "connection lost: reconnecting"),
        ("FeedResynced", 1001),
        ("BookSnapshot", 1001),  # the fresh snapshot: same u, same id, so the stream keeps one
        ("BookSnapshot", 1002),
    ]
    assert _trade_prices(live) == [100.01, 100.02]
    assert fake.public.connections_total == 2
    assert live.metric("reconnects_total", kind="pybit") == 1 and live.metric("reconnects_total", kind="rebuild") == 0
    assert live.feed.stats.duplicates >= 1


async def test_live_new_connection_with_backoff_when_pybit_gives_up(fake: FakeBybit, js_fresh: Any) -> None:
    async with live_feed(fake, js_fresh, ws_retries=2) as live:
        await _started(fake, live)
        fake.public.refuse(3)  # pybit's one usable attempt, then two of ours, are answered 503
        await fake.public.drop("abort")
        await live.wait_for(_has(ev.FeedResynced))
        fake.public.book_delta(BOOK, bids=[("99.9", "4")])
        await live.wait_for(lambda es: _has_snapshot(es, 1002))
        assert len([c for c in fake.public.conns if not c.closed]) == 1  # no zombie connection left behind
    assert [k for k, _ in live.book()] == [
        "BookSnapshot", "BookSnapshot", "FeedGap", "FeedResynced", "BookSnapshot", "BookSnapshot",
    ]  # fmt: skip
    assert live.metric("reconnects_total", kind="rebuild") == 1 and live.metric("reconnects_total", kind="pybit") == 0


async def test_live_stall_emits_feed_stale_resubscribes_and_resyncs(fake: FakeBybit, js_fresh: Any) -> None:
    async with live_feed(fake, js_fresh, stale_s=1.5) as live:
        await _started(fake, live)
        t0 = time.monotonic()
        fake.public.stall()  # no more data frames; a resubscribe of the book unsticks it
        await live.wait_for(_has(ev.FeedResynced))
        assert time.monotonic() - t0 >= 1.4
        fake.public.book_delta(BOOK, bids=[("99.9", "4")])  # u=1002
        await live.wait_for(lambda es: _has_snapshot(es, 1002))
    book = live.book()
    i = book.index(("BookSnapshot", 1001))
    assert book[i + 1 :] == [
        ("FeedStale", BOOK),
        ("FeedResynced", 1001),
        ("BookSnapshot", 1001),
        ("BookSnapshot", 1002),
    ]
    stale = next(e for e in live.pub.events if isinstance(e, ev.FeedStale))
    assert stale.symbol == SYMBOL and stale.stale_s >= 1.5
    assert live.metric("stale_total", symbol=SYMBOL) == 1 and live.metric("resubscribes_total", reason="stale") == 1
    assert fake.public.connections_total == 1


async def test_live_hard_stall_escalates_to_a_new_connection(fake: FakeBybit, js_fresh: Any) -> None:
    async with live_feed(fake, js_fresh, stale_s=1.0) as live:
        await _started(fake, live)
        fake.public.stall(hard=True)  # the connection says nothing at all any more
        await live.wait_for(_has(ev.FeedResynced), timeout_s=40)
        fake.public.book_delta(BOOK, bids=[("99.9", "4")])  # u=1002
        await live.wait_for(lambda es: _has_snapshot(es, 1002))
    book = live.book()
    i = book.index(("BookSnapshot", 1001))
    assert [k for k, _ in book[i + 1 :]] == ["FeedStale", "FeedResynced", "BookSnapshot", "BookSnapshot"]
    assert fake.public.connections_total == 2
    assert live.metric("reconnects_total", kind="rebuild") == 1
    assert live.metric("resubscribes_total", reason="stale") == 1


# --- the command line -----------------------------------------------------------------------------


def test_cli_live_help_documents_live_use_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["live", "--help"])
    out = capsys.readouterr().out
    for text in ("BYBIT_ENV", "NERTZ_INGEST__LIVE__WS_URL", "NERTZ_INGEST__LIVE__BACKFILL_BARS", "--record", "10006"):
        assert text in out


def test_live_defaults_point_at_bybit_and_the_guard_keeps_tests_off_it() -> None:
    rest = BybitRest(REST_URLS["mainnet"], attempts=1, timeout_s=1)
    try:
        with loopback_only() as refused, pytest.raises(RestError):
            asyncio.run(rest.instrument(SYMBOL))
    finally:
        rest.close()
    assert refused == ["api.bybit.com"]


async def test_cli_live_against_the_fake_publishes_and_records_until_sigint(
    fake: FakeBybit, js_fresh: Any, nats_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_LOG_LEVEL": "WARNING"}
    record = tmp_path / "cli.jsonl.gz"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nertz_ingest", "live", "--symbols", SYMBOL, "--backfill", "5",
        "--ws-url", fake.ws_url, "--rest-url", fake.base_url, "--record", str(record),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        topics = [BOOK, f"publicTrade.{SYMBOL}", f"kline.1.{SYMBOL}", f"tickers.{SYMBOL}"]
        await fake.public.wait_subscribed(topics, timeout_s=60)
        fake.public.set_book(BOOK, BIDS, ASKS, u=1000)
        book_subject = subjects.instrument("md", "book", "bybit", "linear", SYMBOL)
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(Exception):
                    msg = await js_fresh.get_last_msg(subjects.STREAM, book_subject)
                    break
                await asyncio.sleep(0.2)
        assert ev.decode(msg.data).update_id == 1000  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "live feed stopped" in out.decode() and "Bar=5" in out.decode() and "InstrumentSpec=1" in out.decode()
    recorded = [r for r in SourceFile(record).records() if isinstance(r, RawFrame)]
    assert len(recorded) >= 5 and json.loads(recorded[-1].raw)["data"]["u"] == 1000  # 4 acks, then the book
