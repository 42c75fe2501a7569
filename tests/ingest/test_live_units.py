"""The live feed's pure parts and local logic: REST answers → events, settings, topics, queue overflow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pydantic
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.testing.fake_bybit import book_frame, load_instruments
from nertz_ingest.adapters.bybit_rest import BybitRest
from nertz_ingest.core.rejection import BadInput
from nertz_ingest.core.rest import instrument_spec, instruments_answer, kline_bars
from nertz_ingest.live import LiveFeed, live_topics, symbols_of
from nertz_ingest.settings import IngestConfig, IngestSettings, LiveConfig

INSTRUMENTS = Path(__file__).parent / "data" / "bybit_instruments_linear.json"
T0 = 1_786_310_760_000  # ms, a minute boundary
BOOK = "orderbook.50.BTCUSDT"


def _row(start: int, o: str = "100", h: str = "101", lo: str = "99", c: str = "100.5") -> list[str]:
    return [str(start), o, h, lo, c, "12.5", "1250"]


def test_instrument_spec_from_real_entries_has_bybit_rules() -> None:
    entries = {e["symbol"]: e for e in load_instruments(INSTRUMENTS)}
    spec = instrument_spec(entries["SOLUSDT"], 1_786_310_817_197)
    assert (spec.symbol, spec.tick_size, spec.qty_step, spec.min_order_qty, spec.max_leverage) == (
        "SOLUSDT", 0.01, 0.1, 0.1, 100.0,
    )  # fmt: skip
    assert spec.ts_event == spec.ts_init == 1_786_310_817_197_000_000
    again = instrument_spec(entries["SOLUSDT"], 1_786_310_999_000)
    assert again.event_id == spec.event_id  # unchanged rules, same id: a re-fetch stores nothing new


def test_instrument_spec_reads_min_notional_and_max_market_qty() -> None:
    entries = {e["symbol"]: e for e in load_instruments(INSTRUMENTS)}
    btc = instrument_spec(entries["BTCUSDT"], 1_786_310_817_197)
    assert (btc.min_notional_usdt, btc.max_market_qty, btc.min_order_qty) == (5.0, 150.0, 0.001)
    lots = {
        k: v for k, v in entries["BTCUSDT"]["lotSizeFilter"].items() if k not in ("minNotionalValue", "maxMktOrderQty")
    }
    older = instrument_spec({**entries["BTCUSDT"], "lotSizeFilter": lots}, 1_786_310_817_197)
    assert (older.min_notional_usdt, older.max_market_qty) == (None, None)  # an answer without them
    assert older.event_id != btc.event_id  # other rules, another fact
    with pytest.raises(BadInput) as bad:
        instrument_spec({**entries["BTCUSDT"], "lotSizeFilter": {**lots, "minNotionalValue": "-5"}}, 1)
    assert bad.value.reason == "negative_size"


def test_instruments_answer_reads_the_envelope_and_the_bundled_copy() -> None:
    copy = json.loads(INSTRUMENTS.read_text())
    specs = instruments_answer(copy)
    assert [s.symbol for s in specs] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    envelope = {"retCode": 0, "result": {"category": "linear", "list": copy["list"]}, "time": copy["time"]}
    assert instruments_answer(envelope) == specs
    with pytest.raises(BadInput, match="list"):
        instruments_answer({"retCode": 0, "result": {}})


def test_instrument_spec_missing_or_bad_fields_raise_bad_input() -> None:
    entry = load_instruments(INSTRUMENTS)[0]
    with pytest.raises(BadInput) as missing:
        instrument_spec({k: v for k, v in entry.items() if k != "lotSizeFilter"}, 1)
    assert missing.value.reason == "missing_field"
    with pytest.raises(BadInput) as zero:
        instrument_spec({**entry, "priceFilter": {"tickSize": "0"}}, 1)
    assert zero.value.reason == "non_positive_price"


def test_kline_bars_sorts_dedups_and_leaves_the_open_candle_out() -> None:
    rows = [_row(T0 + 120_000), _row(T0), _row(T0 + 60_000), _row(T0)]  # newest first, a repeat
    bars, rejected = kline_bars("BTCUSDT", "1", rows, server_ms=T0 + 150_000)  # T0+120 s is still open
    assert not rejected
    assert [b.open_time_ns for b in bars] == [T0 * 10**6, (T0 + 60_000) * 10**6]
    b = bars[0]
    assert b.closed and b.ts_event == b.ts_init == (T0 + 60_000) * 10**6 and b.turnover == 1250.0
    assert b.event_id == derive_id("Bar", "BTCUSDT", "1", T0 * 10**6, True)


def test_kline_bars_rejects_bad_rows_with_reasons_and_keeps_the_rest() -> None:
    rows = [_row(T0), _row(T0 + 60_000, h="98"), _row(T0 + 120_000, c="abc"), ["x"], _row(T0 + 180_000)]
    bars, rejected = kline_bars("BTCUSDT", "1", rows, server_ms=T0 + 600_000)
    assert [b.open_time_ns // 10**6 for b in bars] == [T0, T0 + 180_000]
    assert [r.reason for r in rejected] == ["high_below_low", "not_numeric", "missing_field"]
    assert rejected[0].raw == json.dumps(rows[1]) and rejected[0].topic == "kline.1.BTCUSDT"
    assert rejected[0].ts_ns == (T0 + 600_000) * 10**6
    with pytest.raises(ValueError):
        kline_bars("BTCUSDT", "M", rows, server_ms=T0)


def test_live_config_validates_intervals_urls_and_pybit_retries() -> None:
    cfg = LiveConfig(intervals="5, 60,1,5", ws_url="ws://127.0.0.1:1/", rest_url="")  # type: ignore[arg-type]
    assert cfg.intervals == ("1", "5", "60") and cfg.ws_url == "ws://127.0.0.1:1" and cfg.rest_url is None
    for bad in ({"intervals": ["7"]}, {"ws_retries": 1}, {"depth": 100}, {"ws_url": "stream.bybit.com"}):
        with pytest.raises(pydantic.ValidationError):
            LiveConfig(**bad)  # type: ignore[arg-type]


def test_ingest_settings_read_bybit_env_and_nested_live_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYBIT_ENV", "testnet")
    monkeypatch.setenv("NERTZ_INGEST__LIVE__DEPTH", "200")
    monkeypatch.setenv("NERTZ_INGEST__LIVE__INTERVALS", '["15"]')
    s = IngestSettings()
    assert (s.bybit_env, s.ingest.live.depth, s.ingest.live.intervals) == ("testnet", 200, ("1", "15"))
    monkeypatch.setenv("BYBIT_ENV", "paper")
    with pytest.raises(pydantic.ValidationError):
        IngestSettings()


def test_live_topics_and_symbols() -> None:
    assert live_topics(["BTCUSDT"], 200, ("1", "5")) == [
        "orderbook.200.BTCUSDT", "publicTrade.BTCUSDT", "kline.1.BTCUSDT", "kline.5.BTCUSDT", "tickers.BTCUSDT",
    ]  # fmt: skip
    assert symbols_of(["btcusdt, ethusdt", "BTCUSDT", " "]) == ["BTCUSDT", "ETHUSDT"]


class MemoryPublisher:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    async def publish_many(self, events: Any, headers: Any = None, window: int = 1000) -> int:
        batch = list(events)
        self.events.extend(batch)
        return len(batch)


async def test_live_queue_overflow_drops_counts_and_resyncs_every_book() -> None:
    cfg = IngestConfig(book_min_interval_ms=0, live=LiveConfig(queue_max=100))
    pub = MemoryPublisher()
    rest = BybitRest("http://127.0.0.1:9")
    feed = LiveFeed(pub, ["BTCUSDT"], config=cfg, ws_url="ws://127.0.0.1:9", rest=rest)  # type: ignore[arg-type]
    try:
        snapshot = book_frame(BOOK, "snapshot", [("100", "1")], [("101", "1")], u=1000, seq=1, ts=T0)
        assert [type(e) for e in feed.parser.feed(snapshot, T0 * 10**6)] == [ev.BookSnapshot]  # a live book
        for u in range(1001, 1151):  # 150 deltas: the queue holds 100 frames
            delta = book_frame(BOOK, "delta", [("100", str(u))], [], u=u, seq=u, ts=T0 + u)
            feed._put(("frame", delta, T0 * 10**6 + u))
        assert feed.stats.dropped == 50 and feed._queue.full()
        held: asyncio.Queue[Any] = asyncio.Queue()  # what was held, and the pump's end marker
        while not feed._queue.empty():
            held.put_nowait(feed._queue.get_nowait())
        held.put_nowait(None)
        feed._queue = held
        await feed._pump()
    finally:
        rest.close()
    kinds = [type(e).__name__ for e in pub.events]
    assert kinds[0] == "FeedGap" and pub.events[0].reason.startswith("frames dropped")  # type: ignore[attr-defined]
    assert kinds.count("BookSnapshot") == 0  # every held delta waits for a fresh snapshot
    assert feed.stats.resubscribes == 1  # asked for one (no socket here; a reconnect would resubscribe)


def test_rest_wait_for_a_rate_limit_reset_is_bounded() -> None:
    from tenacity import RetryCallState

    from nertz_ingest.adapters.bybit_rest import _RateLimited

    rest = BybitRest("http://127.0.0.1:9", rate_limit_max_wait_s=2.0, clock_ms=lambda: 1_000_000)
    try:
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        for reset, expected in ((1_000_500, 0.51), (1_600_000, 2.0), (900_000, 0.0)):
            state.set_exception((_RateLimited, _RateLimited(reset, "10006"), None))
            assert rest._wait(state) == pytest.approx(expected)
    finally:
        rest.close()
