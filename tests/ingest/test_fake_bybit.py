"""The fake Bybit V5 server speaks Bybit's wire: REST envelope, pagination, rate-limit headers, WS acks.

The REST side is exercised through the real pybit ``HTTP`` (pointed at the fake, WIRE.md §2.1); the
WebSocket side through a plain aiohttp client, to see the exact frames and their timing.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from pybit.exceptions import FailedRequestError, InvalidRequestError

from nertz_common.testing.fake_bybit import FakeBybit, KlineStore, loopback_only
from nertz_ingest.adapters.bybit_rest import LocalHTTP

DATA = Path(__file__).resolve().parents[2] / "data"
INSTRUMENTS = Path(__file__).parent / "data" / "bybit_instruments_linear.json"
BTC_CSV = DATA / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
BOOK = "orderbook.50.BTCUSDT"


def _http(fake: FakeBybit, **kw: object) -> LocalHTTP:
    return LocalHTTP(fake.base_url, testnet=False, return_response_headers=True, **kw)


async def test_fake_rest_answers_pybit_in_bybit_envelope_with_limit_headers(fake: FakeBybit) -> None:
    http = _http(fake)
    body, _, headers = await asyncio.to_thread(http.get_instruments_info, category="linear", symbol="ETHUSDT")
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert (body["retCode"], body["retMsg"], body["retExtInfo"]) == (0, "OK", {})
    assert [i["symbol"] for i in body["result"]["list"]] == ["ETHUSDT"]
    assert body["result"]["list"][0]["lotSizeFilter"]["qtyStep"] == "0.01"
    assert {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"} <= set(headers)
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) >= body["time"]

    server, _, _ = await asyncio.to_thread(http.get_server_time)
    assert int(server["result"]["timeNano"]) // 1_000_000_000 == int(server["result"]["timeSecond"])
    # pybit sends sorted, unencoded GET parameters (WIRE.md §2.1): the fake sees exactly that
    assert fake.calls[0].raw_query == "category=linear&symbol=ETHUSDT"
    with pytest.raises(InvalidRequestError) as bad:
        await asyncio.to_thread(http.get_kline, category="linear", symbol="BTCUSDT", interval="7")
    assert bad.value.status_code == 10001


async def test_fake_kline_pages_newest_first_within_start_end_and_limit(fake: FakeBybit, klines: KlineStore) -> None:
    starts, rows = klines.series("BTCUSDT", "1")
    http = _http(fake)
    body, _, _ = await asyncio.to_thread(http.get_kline, category="linear", symbol="BTCUSDT", interval="1", limit=3)
    assert body["result"]["list"] == [rows[-1], rows[-2], rows[-3]]  # newest first, 7 strings each
    assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in body["result"]["list"])

    end = starts[-10] - 1
    body, _, _ = await asyncio.to_thread(
        http.get_kline, category="linear", symbol="BTCUSDT", interval="1", end=end, limit=1000
    )
    page = body["result"]["list"]
    assert len(page) == 1000 and int(page[0][0]) == starts[-11] and int(page[-1][0]) == starts[-1010]
    body, _, _ = await asyncio.to_thread(
        http.get_kline, category="linear", symbol="BTCUSDT", interval="1", start=starts[5], end=starts[9]
    )
    assert [int(r[0]) for r in body["result"]["list"]] == starts[9:4:-1]

    body, _, _ = await asyncio.to_thread(http.get_kline, category="linear", symbol="BTCUSDT", interval="5", limit=2)
    five = body["result"]["list"]
    assert int(five[0][0]) % 300_000 == 0 and int(five[0][0]) - int(five[1][0]) == 300_000
    ones = [r for r in rows if int(five[1][0]) <= int(r[0]) < int(five[0][0])]
    assert five[1][1] == ones[0][1] and five[1][4] == ones[-1][4]
    assert float(five[1][2]) == max(float(r[2]) for r in ones) and float(five[1][3]) == min(float(r[3]) for r in ones)

    with pytest.raises(InvalidRequestError):
        await asyncio.to_thread(http.get_kline, category="linear", symbol="BTCUSDT", interval="1", limit=1001)


async def test_fake_kline_pinned_clock_hides_the_future_and_serves_an_open_candle(
    fake: FakeBybit, klines: KlineStore
) -> None:
    starts, _ = klines.series("BTCUSDT", "1")
    fake.now_ms = starts[-100] + 30_000
    body, _, _ = await asyncio.to_thread(
        _http(fake).get_kline, category="linear", symbol="BTCUSDT", interval="1", limit=2
    )
    assert body["time"] == fake.now_ms
    assert [int(r[0]) for r in body["result"]["list"]] == [starts[-100], starts[-101]]


async def test_fake_instruments_paginate_with_cursor(fake: FakeBybit) -> None:
    http = _http(fake)
    body, _, _ = await asyncio.to_thread(http.get_instruments_info, category="linear", limit=2)
    first = body["result"]
    assert [i["symbol"] for i in first["list"]] == ["BTCUSDT", "ETHUSDT"] and first["nextPageCursor"]
    body, _, _ = await asyncio.to_thread(
        http.get_instruments_info, category="linear", limit=2, cursor=first["nextPageCursor"]
    )
    assert [i["symbol"] for i in body["result"]["list"]] == ["SOLUSDT"] and body["result"]["nextPageCursor"] == ""


async def test_fake_orderbook_and_tickers_reflect_the_frames_sent(fake: FakeBybit) -> None:
    fake.public.set_book(BOOK, [("100.0", "1"), ("99.9", "2")], [("100.1", "3")], u=7)
    fake.public.book_delta(BOOK, bids=[("99.9", "0")], asks=[("100.2", "4")])
    fake.public.publish(
        {
            "topic": "tickers.BTCUSDT",
            "type": "snapshot",
            "cs": 1,
            "ts": 5,
            "data": {"symbol": "BTCUSDT", "lastPrice": "1"},
        }
    )
    fake.public.publish({"topic": "tickers.BTCUSDT", "type": "delta", "cs": 2, "ts": 6, "data": {"markPrice": "2"}})
    http = _http(fake)
    body, _, _ = await asyncio.to_thread(http.get_orderbook, category="linear", symbol="BTCUSDT")
    book = body["result"]
    assert (book["s"], book["b"], book["a"], book["u"]) == (
        "BTCUSDT",
        [["100.0", "1"]],
        [["100.1", "3"], ["100.2", "4"]],
        8,
    )
    body, _, _ = await asyncio.to_thread(http.get_tickers, category="linear", symbol="BTCUSDT")
    assert body["result"]["list"] == [{"symbol": "BTCUSDT", "lastPrice": "1", "markPrice": "2"}]


async def test_fake_rest_faults_rate_limit_with_future_reset_then_5xx_then_ok(fake: FakeBybit) -> None:
    fake.fault("/v5/market/tickers", "rate_limit", reset_in_ms=400)
    fake.fault("/v5/market/tickers", "http_status", status=502)
    http = _http(fake, retry_codes={-1}, max_retries=1)
    with pytest.raises(InvalidRequestError) as limited:
        await asyncio.to_thread(http.get_tickers, category="linear")
    assert limited.value.status_code == 10006 and limited.value.message == "Too many visits!"
    reset = int(limited.value.resp_headers["X-Bapi-Limit-Reset-Timestamp"])
    assert reset > time.time_ns() // 1_000_000  # in the future: pybit would sleep until it (WIRE.md §0 rule 3)
    assert limited.value.resp_headers["X-Bapi-Limit-Status"] == "0"
    with pytest.raises(FailedRequestError) as failed:
        await asyncio.to_thread(http.get_tickers, category="linear")
    assert failed.value.status_code == 502
    body, _, _ = await asyncio.to_thread(http.get_tickers, category="linear")
    assert body["retCode"] == 0
    assert [c.answer for c in fake.calls_to("/v5/market/tickers")] == ["rate_limit", "http_502", "ok"]


async def test_fake_rest_rate_limit_is_honoured_by_pybit_own_retry(fake: FakeBybit) -> None:
    fake.fault("/v5/market/time", "rate_limit", reset_in_ms=300)
    t0 = time.monotonic()
    body, _, _ = await asyncio.to_thread(_http(fake).get_server_time)  # pybit's default retry_codes
    assert body["retCode"] == 0 and time.monotonic() - t0 >= 0.25


async def _ws(fake: FakeBybit, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(f"{fake.ws_url}/v5/public/linear")


async def _next(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> dict:
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_fake_ws_acks_subscribe_late_echoing_req_id_and_answers_ping(fake: FakeBybit) -> None:
    async with aiohttp.ClientSession() as session, await _ws(fake, session) as ws:
        t0 = time.monotonic()
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "r-1", "args": [BOOK, "publicTrade.BTCUSDT"]}))
        ack = await _next(ws)
        assert time.monotonic() - t0 >= 0.045  # WIRE.md §0 rule 1: never an instant ack
        assert ack == {"success": True, "ret_msg": "", "conn_id": ack["conn_id"], "req_id": "r-1", "op": "subscribe"}
        await ws.send_str(json.dumps({"op": "ping"}))
        pong = await _next(ws)
        assert pong["ret_msg"] == "pong" and pong["op"] == "ping" and pong["success"] is True
        await ws.send_str(json.dumps({"op": "unsubscribe", "req_id": "r-1", "args": ["publicTrade.BTCUSDT"]}))
        assert (await _next(ws))["op"] == "unsubscribe"
    assert fake.public.requests[0][1:] == ("subscribe", "r-1", [BOOK, "publicTrade.BTCUSDT"])


async def test_fake_ws_sends_only_subscribed_topics_and_a_snapshot_on_every_subscribe(fake: FakeBybit) -> None:
    fake.public.set_book(BOOK, [("100", "1")], [("101", "1")], u=10)  # nobody subscribed yet
    async with aiohttp.ClientSession() as session, await _ws(fake, session) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a", "args": [BOOK]}))
        assert (await _next(ws))["op"] == "subscribe"
        snap = await _next(ws)
        assert (snap["topic"], snap["type"], snap["data"]["u"]) == (BOOK, "snapshot", 10)
        assert fake.public.publish(json.dumps({"topic": "publicTrade.ETHUSDT", "ts": 1, "data": []})) == 0
        fake.public.skip_next_delta(BOOK)
        fake.public.book_delta(BOOK, bids=[("100", "2")])  # u=11, applied but not sent
        fake.public.book_delta(BOOK, asks=[("101", "3")])  # u=12
        delta = await _next(ws)
        assert (delta["type"], delta["data"]["u"]) == ("delta", 12)
        await ws.send_str(json.dumps({"op": "unsubscribe", "req_id": "a", "args": [BOOK]}))
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a", "args": [BOOK]}))
        assert [(await _next(ws))["op"] for _ in range(2)] == ["unsubscribe", "subscribe"]
        fresh = await _next(ws)
        assert fresh["type"] == "snapshot" and fresh["data"]["u"] == 12
        assert fresh["data"]["b"] == [["100", "2"]] and fresh["data"]["a"] == [["101", "3"]]


async def test_fake_ws_faults_cross_malformed_stall_drop_and_refuse(fake: FakeBybit) -> None:
    fake.public.set_book(BOOK, [("100", "1")], [("101", "1")], u=10)
    async with aiohttp.ClientSession() as session:
        async with await _ws(fake, session) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a", "args": [BOOK]}))
            await _next(ws), await _next(ws)
            fake.public.cross_book(BOOK)
            crossed = await _next(ws)
            assert float(crossed["data"]["b"][0][0]) > 101 and crossed["data"]["u"] == 11
            assert fake.public.books[BOOK].best() == (100.0, 101.0)  # the fake's own book stays sane
            assert fake.public.send_raw('{"topic":"orderbook.50.BTCUSDT","type":', BOOK) == 1
            assert (await ws.receive(timeout=5)).data == '{"topic":"orderbook.50.BTCUSDT","type":'
            fake.public.stall()
            assert fake.public.book_delta(BOOK, bids=[("99", "1")]) == 0
            await ws.send_str(json.dumps({"op": "ping"}))
            assert (await _next(ws))["ret_msg"] == "pong"  # a soft stall still answers control frames
            assert await fake.public.drop("close") == 1
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        fake.public.refuse(1)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _ws(fake, session)
        assert refused.value.status == 503
        async with await _ws(fake, session) as ws:  # the next one is accepted
            await ws.send_str(json.dumps({"op": "ping"}))
            assert (await _next(ws))["op"] == "ping"


def test_fake_loopback_guard_refuses_other_hosts() -> None:
    import socket

    with loopback_only() as refused:
        with pytest.raises(OSError):
            socket.create_connection(("api.bybit.com", 443), timeout=1)
        with pytest.raises(OSError):
            socket.create_connection(("1.1.1.1", 443), timeout=1)
    assert refused == ["api.bybit.com", "1.1.1.1"]
