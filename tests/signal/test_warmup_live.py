"""Warm-up is not trading, live bars are (issue 10), from the fake Bybit through the real pybit onto a
real JetStream, then through the signal component under the default configuration:

- the live feed's backfill builds the signal's state and proposes nothing; the same bars replayed from
  the CSV, not marked as backfilled, do propose;
- after the backfill, a live closed kline with a scripted bid-heavy book reaches the threshold of the
  factor set with books and proposes.

Nothing may leave the machine (``loopback_only``).
"""

from __future__ import annotations

import asyncio
import lzma
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nertz_common import bus
from nertz_common import events as ev
from nertz_common.node.component import Pos
from nertz_common.node.log import read_log
from nertz_common.testing.fake_bybit import (
    FakeBybit,
    KlineStore,
    book_frame,
    kline_frame,
    load_instruments,
    loopback_only,
)
from nertz_ingest.adapters.bybit_rest import BybitRest
from nertz_ingest.live import LiveFeed
from nertz_ingest.replay import parse_files
from nertz_ingest.settings import IngestConfig, LiveConfig
from nertz_signal.build import build
from nertz_signal.core.config import SignalConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BTC_CSV = ROOT / "data" / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
INSTRUMENTS = ROOT / "tests" / "ingest" / "data" / "bybit_instruments_linear.json"
BARS = 3000  # 50 hours: the default stop's 4 h ATR is warm after about 27 h


def signal_outputs(events: list[ev.Event]) -> list[ev.Event]:
    """The signal component's outputs, under the default configuration, over ``events`` in order."""
    node = build(SignalConfig())
    return [o for i, e in enumerate(events) if type(e) in node.inputs for o, _ in node.feed(e, Pos(i + 1, i + 1))]


def csv_rows(dst: Path, first: int, n: int) -> Path:
    """Write the bundled BTCUSDT CSV's rows ``first .. first + n - 1`` (0 = the first bar) to ``dst``."""
    with lzma.open(BTC_CSV, "rt") as src:
        lines = src.readlines()
    with lzma.open(dst, "wt") as out:
        out.writelines([lines[0], *lines[1 + first : 1 + first + n]])
    return dst


async def run_live(
    js: Any, klines: KlineStore, now_ms: int, script: Callable[[FakeBybit, LiveFeed], Awaitable[None]]
) -> list[ev.Event]:
    """Run the live feed for BTCUSDT (backfill ``BARS``), then ``script``; return the log's ``md.*``."""
    with loopback_only() as refused:
        async with FakeBybit(instruments=load_instruments(INSTRUMENTS), klines=klines) as fake:
            fake.now_ms = now_ms
            cfg = IngestConfig(live=LiveConfig(backfill_bars=BARS, rest_timeout_s=5.0))
            rest = BybitRest(fake.base_url, timeout_s=5.0, attempts=3)
            feed = LiveFeed(bus.Publisher(js), ["BTCUSDT"], config=cfg, ws_url=fake.ws_url, rest=rest, js=js)
            task = asyncio.create_task(feed.run())
            try:
                for _ in range(3000):
                    if feed.stats.stored >= BARS or task.done():
                        break
                    await asyncio.sleep(0.01)
                await fake.public.wait_subscribed(feed.topics, timeout_s=30)
                await script(fake, feed)
            finally:
                feed.stop.set()
                await asyncio.wait_for(task, 30)
                rest.close()
    assert refused == []
    return [r.event for r in await read_log(js, filters=["md.>"])]


async def test_live_backfill_proposes_nothing_and_the_same_bars_replayed_propose(js_fresh: Any, tmp_path: Path):
    tail = csv_rows(tmp_path / "BTCUSDT_1m.csv.xz", 43_200 - BARS, BARS)  # the fake's klines, and the replay's
    klines = KlineStore()
    klines.add_csv(tail)
    starts, _ = klines.series("BTCUSDT", "1")

    async def nothing(fake: FakeBybit, feed: LiveFeed) -> None:
        return None

    logged = await run_live(js_fresh, klines, starts[-1] + 90_000, nothing)  # the last candle closed 30 s ago
    live_bars = [e for e in logged if isinstance(e, ev.Bar)]
    assert len(live_bars) == BARS and all(b.warmup and b.closed for b in live_bars)

    out = signal_outputs(logged)
    snaps = [e for e in out if isinstance(e, ev.FactorSnapshot)]
    assert len(snaps) == BARS  # the executor's join still gets one snapshot per closed bar
    assert not [e for e in out if isinstance(e, ev.IntentProposed)]
    warm = {s.bar_id: s.veto for s in snaps if s.veto}
    assert len(warm) == 17 and all(v.startswith("warmup:") for v in warm.values())  # each candidate says why

    # the same klines from the CSV, replayed: same ids and values, not backfilled, so they trade
    replayed = [e for e in parse_files([tail]) if isinstance(e, ev.Bar)]
    assert [(b.event_id, b.close, b.warmup) for b in replayed] == [(b.event_id, b.close, False) for b in live_bars]
    again = signal_outputs(list(replayed))
    intents = [e for e in again if isinstance(e, ev.IntentProposed)]
    # 9 intents; the other 8 candidates came while the stop's ATR was warming up (stops_unavailable)
    assert len(intents) == 9 and {i.causation_id for i in intents} <= warm.keys()
    vetoes = [s.veto for s in again if isinstance(s, ev.FactorSnapshot) and s.veto]
    assert len(vetoes) == 8 and all(v.startswith("stops_unavailable:") for v in vetoes)
    assert all(i.net_risk_reward is not None and i.net_risk_reward >= 3 for i in intents)
    # the state is the same: every snapshot's scores agree, only the decision differs
    snaps_again = [e for e in again if isinstance(e, ev.FactorSnapshot)]
    assert [(s.combined, s.stop_atr) for s in snaps_again] == [(s.combined, s.stop_atr) for s in snaps]


async def test_live_kline_after_the_backfill_with_a_bid_heavy_book_proposes_with_all_five_factors(
    js_fresh: Any, tmp_path: Path
):
    # bar 6094 of the bundled BTCUSDT (2025-06-03 22:13 UTC): trend up, EGM +0.66, PIO 0: a bars-only
    # score of 4.4 (short of 9.5); with a book 10:1 bid-heavy, ILD, ROL and OGM are +0.82: 7.0 >= 6.4
    klines = KlineStore()
    klines.add_csv(csv_rows(tmp_path / "BTCUSDT_1m.csv.xz", 6094 - BARS, BARS + 1))
    starts, rows = klines.series("BTCUSDT", "1")
    close = float(rows[-1][4])

    async def book_then_kline(fake: FakeBybit, feed: LiveFeed) -> None:
        bids = [(f"{close - 0.1 * (i + 1):.1f}", "10") for i in range(10)]
        asks = [(f"{close + 0.1 * i:.1f}", "1") for i in range(10)]
        fake.public.publish(
            book_frame(feed.book_topics[0], "snapshot", bids, asks, u=1, seq=10, ts=starts[-1] + 55_000)
        )
        fake.public.publish(kline_frame("BTCUSDT", "1", rows[-1], confirm=True, ts=starts[-1] + 60_000))
        for _ in range(2000):
            if feed.stats.events["Bar"] > BARS:
                return
            await asyncio.sleep(0.01)

    logged = await run_live(js_fresh, klines, starts[-1] + 30_000, book_then_kline)  # the last candle is open
    bars = [e for e in logged if isinstance(e, ev.Bar)]
    assert len(bars) == BARS + 1 and [b.warmup for b in bars[-2:]] == [True, False]
    out = signal_outputs(logged)
    (intent,) = [e for e in out if isinstance(e, ev.IntentProposed)]
    assert intent.causation_id == bars[-1].event_id and intent.side == "long"
    assert sorted(intent.factors) == ["egm", "ild", "ogm", "pio", "rol"]
    assert intent.combined >= SignalConfig().entry_threshold_books > 4.4
    assert intent.reasons[0].endswith(">= +6.4 (egm+ild+rol+pio+ogm)")
