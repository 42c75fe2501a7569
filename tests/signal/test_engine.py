"""SignalEngine: one snapshot per closed bar, intents and vetoes, determinism, warm-up reset."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine, SignalState

MINUTE_NS = f.MINUTE_NS
YEAR_NS = 365 * 24 * 60 * MINUTE_NS


def cfg(**kw: Any) -> SignalConfig:
    """The defaults with the stop's ATR on the series' own 1m bars: these scenarios last minutes, and the
    default ATR of 4 h bars needs a day of them (6) before it can set a stop."""
    return SignalConfig(**{"stop_timeframe": "1", **kw})


def run(engine: SignalEngine, events: list[ev.Event]) -> list[ev.Event]:
    node = Node(engine)
    return [o for i, e in enumerate(events) for o, _ in node.feed(e, Pos(i + 1, i + 1))]


def snapshots(out: list[ev.Event]) -> list[ev.FactorSnapshot]:
    return [e for e in out if isinstance(e, ev.FactorSnapshot)]


def intents(out: list[ev.Event]) -> list[ev.IntentProposed]:
    return [e for e in out if isinstance(e, ev.IntentProposed)]


def roundtrip(e: ev.Event) -> ev.Event:
    return ev.decode(ev.encode(e))  # validates every Meta constraint (ranges, Price > 0...)


def wavy_bars(n: int, symbol: str = "BTCUSDT") -> list[ev.Bar]:
    bars, close = [], 100.0
    for i in range(n):
        prev = close
        close = 100.0 * (1 + 0.02 * ((i % 37) / 37 - 0.5)) * (1 + 0.0005 * i)
        bars.append(f.bar(i, symbol=symbol, open=prev, close=close, volume=5.0 + (i * 7) % 23))
    return bars


# --- one snapshot per closed bar --------------------------------------------------------------------


def test_engine_closed_bars_emit_exactly_one_snapshot_each_in_order():
    bars = wavy_bars(200)
    out = run(SignalEngine(cfg()), bars)
    snaps = snapshots(out)
    assert [s.bar_id for s in snaps] == [b.event_id for b in bars]
    for s, b in zip(snaps, bars, strict=True):
        assert s.event_id == derive_id("FactorSnapshot", b.event_id)
        assert s.ts_event == s.ts_init == b.ts_event
        assert roundtrip(s) == s


def test_engine_open_bars_emit_nothing():
    engine = SignalEngine(cfg())
    bars = wavy_bars(30)
    mixed: list[ev.Event] = []
    for b in bars:
        mixed.append(f.bar(0, close=b.close, closed=False, event_id=derive_id("open", b.event_id)))
        mixed.append(b)
    assert engine.on_bar(f.bar(0, closed=False)) == []
    assert len(snapshots(run(engine, mixed))) == 30


def test_engine_books_trades_tickers_status_emit_nothing():
    engine = SignalEngine(cfg())
    assert engine.on_book_snapshot(f.book(f.T0_NS)) == []
    assert engine.on_ticker(ev.Ticker(event_id="t", ts_event=1, ts_init=1, symbol="BTCUSDT", funding_rate=0.0001)) == []
    assert engine.on_trade_batch(ev.TradeBatch(event_id="tb", ts_event=1, ts_init=1, symbol="BTCUSDT", trades=[])) == []
    assert engine.on_feed_gap(ev.FeedGap(event_id="g", ts_event=1, ts_init=1, symbol="BTCUSDT", reason="u gap")) == []


# --- factors in the snapshot ------------------------------------------------------------------------


def test_engine_bars_only_uses_egm_and_pio():
    snap = snapshots(run(SignalEngine(cfg()), wavy_bars(25)))
    assert snap[18].used == [] and snap[18].egm is None  # 19 bars: EGM and PIO still warming up
    assert snap[-1].used == ["egm", "pio"]
    assert snap[-1].ild is None and snap[-1].rol is None and snap[-1].ogm is None


def test_engine_with_book_uses_every_factor(skewed_book):
    bars = wavy_bars(25)
    events: list[ev.Event] = [*bars[:-1], skewed_book(bars[-1].ts_event, "BTCUSDT", bars[-1].close), bars[-1]]
    snap = snapshots(run(SignalEngine(cfg()), events))[-1]
    assert snap.used == ["egm", "ild", "rol", "pio", "ogm"]
    assert snap.ild == pytest.approx(9 / 11)  # 10 × 10 bid vs 10 × 1 ask


def test_engine_feed_gap_drops_book_factors(skewed_book):
    bars = wavy_bars(25)
    gap = ev.FeedGap(event_id="g", ts_event=bars[-1].ts_event, ts_init=0, symbol="BTCUSDT", reason="u gap")
    events = [*bars[:-1], skewed_book(bars[-1].ts_event, "BTCUSDT", 100.0), gap, bars[-1]]
    assert snapshots(run(SignalEngine(cfg()), events))[-1].used == ["egm", "pio"]


def test_engine_warmup_fields_none_then_filled():
    snaps = snapshots(run(SignalEngine(cfg()), wavy_bars(60)))
    assert snaps[0].atr is None and snaps[0].ema_slow is None and snaps[0].trend == "flat"
    assert snaps[13].atr is not None
    assert snaps[-1].ema_fast is not None and snaps[-1].ema_slow is not None


# --- intents ----------------------------------------------------------------------------------------


def test_engine_trend_up_and_high_score_proposes_long_before_snapshot(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    out = run(SignalEngine(cfg()), bars)
    assert len(intents(out)) == 1
    intent, snap = out[-2], out[-1]
    assert isinstance(intent, ev.IntentProposed) and isinstance(snap, ev.FactorSnapshot)
    last = bars[-1]
    assert intent.event_id == intent.correlation_id == derive_id("IntentProposed", last.event_id)
    assert intent.causation_id == last.event_id == snap.bar_id
    assert snap.intent_id == intent.event_id and snap.veto is None
    assert intent.side == "long" and intent.trend == "up" and intent.combined >= 9.5
    assert intent.entry_price == last.close
    assert intent.stop_loss == pytest.approx(last.close * (1 - intent.sl_distance))
    assert intent.take_profit == pytest.approx(last.close * (1 + 3.5 * intent.sl_distance))
    assert intent.net_risk_reward is not None and intent.net_risk_reward >= 3.0
    assert intent.stop_atr is not None and intent.stop_atr == snap.stop_atr
    assert intent.ts_event == intent.ts_init == last.ts_event
    assert intent.reasons and intent.reasons[0].startswith("combined +")
    assert roundtrip(intent) == intent


def test_engine_trend_down_and_low_score_proposes_short(trend_then_jump):
    out = run(SignalEngine(cfg()), trend_then_jump("ETHUSDT", direction=-1))
    (intent,) = intents(out)
    assert intent.side == "short" and intent.trend == "down" and intent.combined <= -9.5
    assert intent.stop_loss > intent.entry_price > intent.take_profit


def test_engine_score_below_threshold_proposes_nothing(trend_then_jump):
    out = run(SignalEngine(cfg(entry_threshold=10.0)), trend_then_jump("ETHUSDT"))
    assert intents(out) == [] and snapshots(out)[-1].veto is None


def test_engine_high_score_without_trend_proposes_nothing(trend_then_jump):
    bars = trend_then_jump("ETHUSDT", n=40)  # fewer than 55 closes: trend still flat
    assert intents(run(SignalEngine(cfg()), bars)) == []


# --- vetoes -----------------------------------------------------------------------------------------


def _vetoed(events: list[ev.Event], config: SignalConfig | None = None) -> ev.FactorSnapshot:
    out = run(SignalEngine(config or cfg()), events)
    snap = snapshots(out)[-1]
    assert intents(out) == [] and snap.intent_id is None and snap.veto is not None
    return snap


def test_engine_wide_spread_vetoes(trend_then_jump, skewed_book):
    bars = trend_then_jump("ETHUSDT")
    book = skewed_book(bars[-1].ts_event, "ETHUSDT", bars[-1].close, spread_frac=0.003)
    snap = _vetoed([*bars[:-1], book, bars[-1]])
    assert snap.veto.startswith("spread_too_wide:")


def test_engine_tight_bid_heavy_book_allows_long(trend_then_jump, skewed_book):
    bars = trend_then_jump("ETHUSDT")
    book = skewed_book(bars[-1].ts_event, "ETHUSDT", bars[-1].close)
    out = run(SignalEngine(cfg()), [*bars[:-1], book, bars[-1]])
    assert [i.side for i in intents(out)] == ["long"]


def test_engine_old_book_vetoes_as_stale(trend_then_jump, skewed_book):
    bars = trend_then_jump("ETHUSDT")
    book = skewed_book(bars[-1].ts_event - 31 * 1_000_000_000, "ETHUSDT", bars[-1].close)
    snap = _vetoed([*bars[:-1], book, bars[-1]])
    assert snap.veto.startswith("stale_book:")


def test_engine_open_feed_gap_vetoes_until_resynced(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    gap = ev.FeedGap(event_id="g", ts_event=bars[-2].ts_event, ts_init=0, symbol="ETHUSDT", reason="u gap")
    assert _vetoed([*bars[:-1], gap, bars[-1]]).veto.startswith("stale_feed_gap:")
    resynced = ev.FeedResynced(event_id="r", ts_event=bars[-2].ts_event, ts_init=0, symbol="ETHUSDT")
    assert len(intents(run(SignalEngine(cfg()), [*bars[:-1], gap, resynced, bars[-1]]))) == 1


def test_engine_feed_stale_vetoes(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    stale = ev.FeedStale(
        event_id="s", ts_event=bars[-2].ts_event, ts_init=0, symbol="ETHUSDT", topic="orderbook.50.ETHUSDT", stale_s=30
    )
    assert _vetoed([*bars[:-1], stale, bars[-1]]).veto.startswith("stale_feed:")


def test_engine_extreme_funding_vetoes(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    ticker = ev.Ticker(
        event_id="t", ts_event=bars[-2].ts_event, ts_init=0, symbol="ETHUSDT", funding_rate=0.004, funding_interval_h=8
    )
    assert _vetoed([*bars[:-1], ticker, bars[-1]]).veto.startswith("funding_extreme:")


def test_engine_btc_drop_vetoes_alt_long_not_btc(trend_then_jump):
    eth = trend_then_jump("ETHUSDT")
    # BTC falls 3 % over the last 10 minutes before ETH's trigger bar
    btc = [f.bar(70 + i, symbol="BTCUSDT", close=100.0 * (1 - 0.003 * i)) for i in range(11)]
    merged = sorted([*eth, *btc], key=lambda b: (b.ts_event, b.symbol))
    snap = _vetoed(merged)
    assert snap.symbol == "ETHUSDT" and snap.veto.startswith("btc_drop:")
    btc_long = trend_then_jump("BTCUSDT")
    assert len(intents(run(SignalEngine(cfg()), btc_long))) == 1


def test_engine_btc_drop_does_not_veto_alt_short(trend_then_jump):
    eth = trend_then_jump("ETHUSDT", direction=-1)
    btc = [f.bar(70 + i, symbol="BTCUSDT", close=100.0 * (1 - 0.003 * i)) for i in range(11)]
    merged = sorted([*eth, *btc], key=lambda b: (b.ts_event, b.symbol))
    assert [i.side for i in intents(run(SignalEngine(cfg()), merged))] == ["short"]


# --- determinism and warm-up reset ------------------------------------------------------------------


def test_engine_same_bars_twice_gives_identical_bytes(trend_then_jump, skewed_book):
    events: list[ev.Event] = [*wavy_bars(300), *trend_then_jump("ETHUSDT", start=300)]
    events.insert(250, skewed_book(events[249].ts_event, "BTCUSDT", 100.0))
    a = [ev.encode(e) for e in run(SignalEngine(cfg()), events)]
    b = [ev.encode(e) for e in run(SignalEngine(cfg()), events)]
    assert a == b and len(a) > 300


def test_engine_time_gap_resets_warmup():
    bars = wavy_bars(80)
    later = [
        f.bar(0, open=b.open, close=b.close, open_time_ns=b.open_time_ns + YEAR_NS, ts_event=b.ts_event + YEAR_NS)
        for b in wavy_bars(3)
    ]
    engine = SignalEngine(cfg())
    snaps = snapshots(run(engine, [*bars, *later]))
    before, after = snaps[79], snaps[80]
    assert before.trend != "flat" or before.ema_slow is not None
    assert before.egm is not None and before.atr is not None
    assert after.egm is None and after.pio is None and after.atr is None
    assert after.ema_fast is None and after.trend == "flat" and after.used == []
    assert engine.resets == 1


def test_engine_small_gap_keeps_warmup():
    bars = wavy_bars(30)
    shifted = [
        f.bar(0, close=b.close, open_time_ns=b.open_time_ns + 4 * MINUTE_NS, ts_event=b.ts_event + 4 * MINUTE_NS)
        for b in wavy_bars(31)[30:]
    ]
    engine = SignalEngine(cfg())
    assert snapshots(run(engine, [*bars, *shifted]))[-1].egm is not None
    assert engine.resets == 0


def test_engine_series_are_per_symbol():
    btc, eth = wavy_bars(25, "BTCUSDT"), wavy_bars(10, "ETHUSDT")
    snaps = snapshots(run(SignalEngine(cfg()), [*btc, *eth]))
    assert snaps[24].egm is not None and snaps[-1].egm is None


# --- warm-up bars, stops from the stop's timeframe, net R:R, thresholds per factor set ------------------


def test_engine_warmup_bar_candidate_is_vetoed_warmup_and_the_same_bar_live_proposes(trend_then_jump):
    bars = trend_then_jump("ETHUSDT")
    backfilled = [msgspec.structs.replace(b, warmup=True) for b in bars]
    out = run(SignalEngine(cfg()), backfilled)
    snap = snapshots(out)[-1]
    assert intents(out) == [] and len(snapshots(out)) == len(bars)
    assert snap.veto is not None and snap.veto.startswith("warmup:") and snap.intent_id is None
    assert [s.veto for s in snapshots(out)[:-1]] == [None] * (len(bars) - 1)  # only a candidate says so
    # the state they built is the live bars' state: the next live bar decides as if all were live
    live = run(SignalEngine(cfg()), bars)
    assert [(s.combined, s.trend, s.atr, s.stop_atr) for s in snapshots(out)] == [
        (s.combined, s.trend, s.atr, s.stop_atr) for s in snapshots(live)
    ]
    assert len(intents(live)) == 1


def test_engine_default_stop_waits_for_a_day_of_four_hour_bars(trend_then_jump):
    snap = _vetoed(trend_then_jump("ETHUSDT"), SignalConfig())  # 81 minutes: no 4 h bar has closed yet
    assert snap.veto == "stops_unavailable: expected 6 closed 240 bars for the stop's ATR14, was 0"
    assert snap.stop_atr is None


def test_engine_default_stop_from_four_hour_atr_after_a_day_of_bars():
    # 30 hours of 1m bars, each with a 1 % range, drifting up 0.01 % a bar: a 4 h bar spans about 3.4 %
    bars, close = [], 100.0
    for i in range(30 * 60):
        prev, close = close, 100.0 * (1 + 0.0001 * i)
        bars.append(f.bar(i, open=prev, close=close, high=max(prev, close) * 1.005, low=min(prev, close) * 0.995))
    snaps = snapshots(run(SignalEngine(SignalConfig()), bars))
    first = next(i for i, s in enumerate(snaps) if s.stop_atr is not None)
    # the bundled data's T0 is 16:39 UTC: the partial 16:00 bar is left out, 6 more close at 20:00 + 24 h
    assert bars[first].ts_event % (4 * 3600 * 10**9) == 0
    assert (bars[first].ts_event - bars[0].open_time_ns) // MINUTE_NS == 201 + 24 * 60
    assert snaps[first - 1].stop_atr is None and snaps[-1].stop_atr > 2.5 * snaps[-1].atr  # 4 h ranges, not 1m


def test_engine_net_risk_reward_below_minimum_is_vetoed_with_the_figures(trend_then_jump):
    # a 0.3 % floor (the old one) with TP = 3.5 × SL: (1.05 - 0.13) / (0.30 + 0.13) = 2.14 net
    snap = _vetoed(trend_then_jump("ETHUSDT"), cfg(sl_min=0.003, sl_atr_multiple=0.01))
    assert snap.veto == (
        "risk_reward_below_min: expected a net R:R >= 3, was 2.14 (tp 1.050%, sl 0.300%, costs 0.130% per round trip)"
    )
    (intent,) = intents(run(SignalEngine(cfg(sl_min=0.003, sl_atr_multiple=0.01, risk_reward=5)), trend_then_jump()))
    assert intent.net_risk_reward == pytest.approx((0.015 - 0.0013) / (0.003 + 0.0013))


def test_engine_threshold_of_the_factor_set_decides(trend_then_jump, skewed_book):
    bars = trend_then_jump("ETHUSDT")
    book = skewed_book(bars[-1].ts_event, "ETHUSDT", bars[-1].close, bid_qty=3.0, ask_qty=2.0)  # ILD, ROL +0.2
    events = [*bars[:-1], book, bars[-1]]
    snap = snapshots(run(SignalEngine(cfg()), events))[-1]
    assert snap.used == ["egm", "ild", "rol", "pio", "ogm"] and 6.4 > snap.combined > 4.0
    assert intents(run(SignalEngine(cfg()), events)) == []  # below the books' 6.4
    assert len(intents(run(SignalEngine(cfg(entry_threshold_books=4.0)), events))) == 1
    exact = cfg(entry_thresholds={"egm+ild+rol+pio+ogm": 4.0}, entry_threshold_books=9.9)
    (intent,) = intents(run(SignalEngine(exact), events))
    assert intent.reasons[0] == f"combined {intent.combined:+.2f} >= +4 (egm+ild+rol+pio+ogm)"
    # bars only, the bars-only threshold (9.5) still holds: the jump scores 9.8
    assert len(intents(run(SignalEngine(cfg(entry_threshold_books=9.9)), bars))) == 1
    assert intents(run(SignalEngine(cfg(entry_threshold=9.9, entry_threshold_books=4.0)), bars)) == []


def test_engine_snapshot_anywhere_then_the_rest_equals_the_whole_run(trend_then_jump, skewed_book):
    bars = [*wavy_bars(200, "SOLUSDT"), *trend_then_jump("ETHUSDT", start=200)]
    bars = sorted([*bars, *trend_then_jump("BTCUSDT", n=250)], key=lambda b: (b.ts_event, b.symbol))
    events: list[ev.Event] = [*bars]
    events.insert(300, skewed_book(bars[299].ts_event, "ETHUSDT", 100.0))
    config = SignalConfig(stop_timeframe="15", stop_atr_min_bars=2)
    whole = [ev.encode(e) for e in run(SignalEngine(config), events)]
    assert any(isinstance(ev.decode(e), ev.IntentProposed) for e in whole)
    for cut in (1, 37, 180, 301, len(events) - 1):
        first = SignalEngine(config)
        head = run(first, events[:cut])
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.get_state()), type=SignalState)
        second = SignalEngine(config)
        second.set_state(state)
        assert [ev.encode(e) for e in head + run(second, events[cut:])] == whole, cut
