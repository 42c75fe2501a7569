"""Parsing raw Bybit V5 frames: every topic on real recorded frames, ticker merge, bad frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_ingest.core.bybit import BybitParser
from nertz_ingest.core.rejection import Rejected

RECV = 1_786_310_900_000_000_000


def _only(out: list, cls: type):
    assert len(out) == 1 and isinstance(out[0], cls), out
    return out[0]


def test_bybit_orderbook_snapshot_real_frame_gives_top_50_book(first_frame) -> None:
    frame = first_frame("orderbook.200.BTCUSDT")
    msg = json.loads(frame.raw)
    snap = _only(BybitParser().feed(frame.raw, frame.recv_ns), ev.BookSnapshot)
    assert snap.symbol == "BTCUSDT" and snap.depth == 50
    assert len(snap.bids) == len(snap.asks) == 50
    assert snap.bids[0] == (float(msg["data"]["b"][0][0]), float(msg["data"]["b"][0][1]))
    assert snap.asks[0] == (float(msg["data"]["a"][0][0]), float(msg["data"]["a"][0][1]))
    assert [p for p, _ in snap.bids] == sorted((p for p, _ in snap.bids), reverse=True)
    assert [p for p, _ in snap.asks] == sorted(p for p, _ in snap.asks)
    assert (snap.update_id, snap.seq) == (msg["data"]["u"], msg["data"]["seq"])
    assert snap.ts_event == msg["ts"] * 1_000_000 and snap.ts_init == frame.recv_ns
    assert snap.event_id == derive_id("BookSnapshot", "BTCUSDT", 200, msg["data"]["u"], 50)


def test_bybit_orderbook_delta_real_frames_apply_contiguously(frames) -> None:
    parser = BybitParser(min_interval_ms=0)
    snaps = []
    for f in frames:
        if json.loads(f.raw).get("topic") == "orderbook.200.ETHUSDT":
            snaps += parser.feed(f.raw, f.recv_ns)
    assert all(isinstance(s, ev.BookSnapshot) for s in snaps)
    assert len(snaps) == 421  # 1 snapshot + 420 deltas, nothing conflated at 0 ms
    assert [s.update_id for s in snaps] == list(range(snaps[0].update_id, snaps[0].update_id + 421))


def test_bybit_public_trade_real_frame_gives_trade_batch(first_frame) -> None:
    frame = first_frame("publicTrade.SOLUSDT", lambda m: len(m["data"]) > 1)
    msg = json.loads(frame.raw)
    batch = _only(BybitParser().feed(frame.raw, frame.recv_ns), ev.TradeBatch)
    assert batch.symbol == "SOLUSDT" and len(batch.trades) == len(msg["data"])
    t0, raw0 = batch.trades[0], msg["data"][0]
    assert (t0.price, t0.qty, t0.side, t0.trade_id) == (float(raw0["p"]), float(raw0["v"]), raw0["S"], raw0["i"])
    assert t0.ts_event == raw0["T"] * 1_000_000
    assert batch.ts_event == msg["ts"] * 1_000_000 and batch.ts_init == frame.recv_ns


def test_bybit_kline_open_real_frame_gives_open_bar_at_frame_ts(first_frame) -> None:
    frame = first_frame("kline.1.BTCUSDT", lambda m: not m["data"][0]["confirm"])
    msg = json.loads(frame.raw)
    bar = _only(BybitParser().feed(frame.raw, frame.recv_ns), ev.Bar)
    k = msg["data"][0]
    assert bar.closed is False and bar.interval == "1"
    assert bar.open_time_ns == k["start"] * 1_000_000
    assert bar.ts_event == msg["ts"] * 1_000_000 and bar.ts_init == frame.recv_ns
    assert (bar.open, bar.high, bar.low, bar.close) == tuple(float(k[x]) for x in ("open", "high", "low", "close"))
    assert (bar.volume, bar.turnover) == (float(k["volume"]), float(k["turnover"]))


def test_bybit_kline_confirm_real_frame_gives_closed_bar_at_close_time(first_frame) -> None:
    frame = first_frame("kline.1.BTCUSDT", lambda m: m["data"][0]["confirm"])
    k = json.loads(frame.raw)["data"][0]
    closed, nxt = BybitParser().feed(frame.raw, frame.recv_ns)  # this frame also opens the next bar
    assert isinstance(closed, ev.Bar) and closed.closed is True
    assert closed.ts_event == (k["start"] + 60_000) * 1_000_000 == (k["end"] + 1) * 1_000_000
    assert closed.event_id == derive_id("Bar", "BTCUSDT", "1", k["start"] * 1_000_000, True)  # as a CSV bar
    assert isinstance(nxt, ev.Bar) and nxt.closed is False and nxt.open_time_ns == closed.ts_event


def test_bybit_tickers_snapshot_real_frame_gives_full_ticker(first_frame) -> None:
    frame = first_frame("tickers.BTCUSDT", lambda m: m["type"] == "snapshot")
    d = json.loads(frame.raw)["data"]
    t = _only(BybitParser().feed(frame.raw, frame.recv_ns), ev.Ticker)
    assert (t.last_price, t.mark_price, t.index_price) == (65114.3, 65117.44, 65137.76)
    assert (t.bid1_price, t.ask1_price, t.funding_rate, t.funding_interval_h) == (65114.2, 65114.3, 0.0001, 8)
    assert t.next_funding_time_ns == int(d["nextFundingTime"]) * 1_000_000
    assert (t.open_interest, t.turnover_24h, t.volume_24h) == (59891.732, 1142118412.9021, 17573.912)


def test_bybit_tickers_delta_keeps_fields_missing_from_delta(first_frame) -> None:
    parser = BybitParser()
    snap = first_frame("tickers.BTCUSDT", lambda m: m["type"] == "snapshot")
    delta = first_frame("tickers.BTCUSDT", lambda m: m["type"] == "delta" and "markPrice" not in m["data"])
    before = _only(parser.feed(snap.raw, snap.recv_ns), ev.Ticker)
    after = _only(parser.feed(delta.raw, delta.recv_ns), ev.Ticker)
    changed = json.loads(delta.raw)["data"]
    assert after.mark_price == before.mark_price and after.funding_rate == before.funding_rate
    assert after.bid1_price == float(changed["bid1Price"])
    assert after.ts_event == json.loads(delta.raw)["ts"] * 1_000_000


def test_bybit_tickers_delta_merges_field_by_field() -> None:
    parser = BybitParser()
    head = {"topic": "tickers.ETHUSDT", "type": "snapshot", "cs": 1, "ts": 1000}
    snap = {**head, "data": {"symbol": "ETHUSDT", "lastPrice": "2000", "markPrice": "2001", "fundingRate": "-0.0002"}}
    delta = {**head, "type": "delta", "cs": 2, "ts": 1100}
    delta["data"] = {"symbol": "ETHUSDT", "lastPrice": "2002.5", "openInterest": "10", "preOpenPrice": ""}
    parser.feed(json.dumps(snap), RECV)
    t = _only(parser.feed(json.dumps(delta), RECV + 1), ev.Ticker)
    assert (t.last_price, t.mark_price, t.funding_rate, t.open_interest) == (2002.5, 2001.0, -0.0002, 10.0)
    assert t.index_price is None
    resnap = dict(snap, ts=1200, data={"symbol": "ETHUSDT", "lastPrice": "1999"})
    t2 = _only(parser.feed(json.dumps(resnap), RECV + 2), ev.Ticker)
    assert (t2.last_price, t2.mark_price) == (1999.0, None)  # a snapshot replaces the state


def test_bybit_subscribe_ack_and_pong_yield_nothing(first_frame) -> None:
    parser = BybitParser()
    ack = first_frame("", lambda m: m.get("op") == "subscribe")
    assert parser.feed(ack.raw, ack.recv_ns) == []
    pong = '{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"","op":"ping"}'
    assert parser.feed(pong, RECV) == []


def test_bybit_symbols_filter_skips_other_symbols(first_frame) -> None:
    frame = first_frame("tickers.BTCUSDT")
    assert BybitParser(symbols={"ETHUSDT"}).feed(frame.raw, frame.recv_ns) == []


def test_bybit_same_frames_twice_give_identical_events(frames) -> None:
    a, b = BybitParser(), BybitParser()
    out_a = [ev.encode(e) for f in frames[:400] for e in a.feed(f.raw, f.recv_ns)]
    out_b = [ev.encode(e) for f in frames[:400] for e in b.feed(f.raw, f.recv_ns)]
    assert out_a == out_b and len(out_a) > 100


GOOD_TICKER = (
    '{"topic":"tickers.SOLUSDT","type":"delta","cs":5,"ts":1786310820000,'
    '"data":{"symbol":"SOLUSDT","lastPrice":"77.3"}}'
)
TRADE = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[%s]}'
TRADE_ROW = '{"T":1786310819680,"s":"BTCUSDT","S":"%s","v":"%s","p":"%s","i":"a9188a0a","BT":false}'
KLINE = (
    '{"topic":"kline.1.BTCUSDT","type":"snapshot","ts":1786310818440,"data":[{"start":1786310760000,'
    '"end":1786310819999,"interval":"1","open":"%s","close":"%s","high":"%s","low":"%s","volume":"%s",'
    '"turnover":"1","confirm":false,"timestamp":1786310818440}]}'
)
BOOK = (
    '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1786310818129,'
    '"data":{"s":"BTCUSDT","b":[%s],"a":[["65114.30","1"]],"u":5,"seq":9}}'
)

BAD_FRAMES = {
    "invalid_json": '{"topic":"tickers.BTCUSDT","data":',
    "not_an_object": "[1, 2, 3]",
    "unknown_topic": '{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1,"data":[]}',
    "missing_field": (
        '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1786310818129,"data":{"s":"BTCUSDT","b":[],"a":[]}}'
    ),
    "not_numeric": BOOK % '["65114.20","lots"]',
    "nan": BOOK % '["NaN","1"]',
    "infinite": TRADE % (TRADE_ROW % ("Buy", "inf", "65114.2")),
    "non_positive_price": TRADE % (TRADE_ROW % ("Buy", "0.004", "-65114.2")),
    "negative_size": BOOK % '["65114.20","-1.5"]',
    "high_below_low": KLINE % ("100", "100", "99", "101", "1"),
    "ohlc_inconsistent": KLINE % ("100", "102", "101", "99", "1"),
    "bad_field": TRADE % (TRADE_ROW % ("Hold", "0.004", "65114.2")),
    "bad_symbol": '{"topic":"tickers.btc-usdt","type":"snapshot","ts":1,"data":{}}',
    "bad_timestamp": '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":-5,"data":{}}',
    "request_failed": '{"success":false,"ret_msg":"error:handler not found","conn_id":"x","op":"subscribe"}',
}


@pytest.mark.parametrize(("reason", "raw"), sorted(BAD_FRAMES.items()))
def test_bybit_bad_frame_is_rejected_with_reason_and_next_frame_parses(reason: str, raw: str) -> None:
    parser = BybitParser()
    (rej,) = parser.feed(raw, RECV)
    assert isinstance(rej, Rejected)
    assert rej.reason == reason, rej.detail
    assert rej.raw == raw and rej.ts_ns == RECV and rej.detail
    assert isinstance(_only(parser.feed(GOOD_TICKER, RECV + 1), ev.Ticker), ev.Ticker)


@pytest.mark.parametrize(
    "raw",
    [
        '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":99999999999999999999,"data":{}}',
        '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{"nextFundingTime":"inf"}}',
        TRADE % (TRADE_ROW % ("Buy", "1", "2")).replace("1786310819680", "-1"),
    ],
)
def test_bybit_out_of_range_time_is_rejected_as_bad_timestamp(raw: str) -> None:
    (rej,) = BybitParser().feed(raw, RECV)
    assert isinstance(rej, Rejected) and rej.reason == "bad_timestamp", rej


def test_bybit_bad_frame_detail_says_expected_and_was() -> None:
    (rej,) = BybitParser().feed(BAD_FRAMES["negative_size"], RECV)
    assert rej.detail == "expected size at b[0] >= 0, was -1.5"  # type: ignore[union-attr]
    (rej,) = BybitParser().feed(BAD_FRAMES["missing_field"], RECV)
    assert "`u`" in rej.detail  # type: ignore[union-attr]


def test_bybit_bad_bytes_frame_is_rejected_not_raised() -> None:
    (rej,) = BybitParser().feed(b"\xff\xfe{garbage", RECV)
    assert isinstance(rej, Rejected) and rej.reason == "invalid_json"


def test_bybit_rejected_delta_of_live_book_emits_feed_gap_then_resyncs(first_frame) -> None:
    parser = BybitParser()
    snap = first_frame("orderbook.200.DOGEUSDT", lambda m: m["type"] == "snapshot")
    parser.feed(snap.raw, snap.recv_ns)
    bad = snap.raw.replace('"type":"snapshot"', '"type":"delta"').replace('"u":', '"u":"x","_":', 1)
    rej, gap = parser.feed(bad, RECV)
    assert isinstance(rej, Rejected) and rej.reason == "not_numeric"
    assert isinstance(gap, ev.FeedGap) and gap.reason == "rejected frame (not_numeric)"
    assert [type(e).__name__ for e in parser.feed(snap.raw, snap.recv_ns)] == ["FeedResynced", "BookSnapshot"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_bybit_arbitrary_input_never_raises(raw: str | bytes) -> None:
    out = BybitParser().feed(raw, RECV)
    assert all(isinstance(o, Rejected | ev.Event) for o in out)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bybit_mutated_real_frame_never_raises(data: st.DataObject) -> None:
    base = [
        BAD_FRAMES["high_below_low"],
        BOOK % '["65114.20","1"]',
        GOOD_TICKER,
        TRADE % (TRADE_ROW % ("Buy", "1", "2")),
    ]
    raw = data.draw(st.sampled_from(base))
    i = data.draw(st.integers(0, len(raw) - 1))
    j = data.draw(st.integers(i, min(len(raw), i + 8)))
    raw = raw[:i] + data.draw(st.text(alphabet='"{}[],:0123456789.-eE nNaA', max_size=8)) + raw[j:]
    out = BybitParser().feed(raw, RECV)
    assert all(isinstance(o, Rejected | ev.Event) for o in out)
    for e in out:
        if isinstance(e, ev.Event):
            ev.decode(ev.encode(e))  # whatever is accepted also passes the schema's constraints
