"""The fake Bybit's trading side speaks Bybit's wire to the real pybit: signed REST, the private stream,
fills, TP/SL/trailing stops, funding, and the trading faults.

REST goes through pybit's ``HTTP`` (endpoint overridden, WIRE.md §2.1; ``retry_codes={-1}, max_retries=1``
so 10002/10006 surface at once), the private stream through pybit's ``WebSocket(channel_type="private")``
whose ``_connect`` is pointed at the fake (WIRE.md §2.2); a raw aiohttp client where the exact control
frames matter, and plain ``requests`` where a request pybit would never send is needed.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP, WebSocket

from nertz_common.testing.fake_bybit import FakeBybit, book_frame, load_instruments, loopback_only, trade_frame
from nertz_common.testing.fake_bybit_trading import TradingSide

INSTRUMENTS = Path(__file__).resolve().parents[1] / "ingest" / "data" / "bybit_instruments_linear.json"
KEY, SECRET = "test-key", "test-secret"
BTC, ETH, SOL = "BTCUSDT", "ETHUSDT", "SOLUSDT"
TOPICS = ("order", "execution", "position", "wallet")
DAY_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
HOUR_MS = 3_600_000


class LocalHTTP(HTTP):
    """pybit ``HTTP`` pointed at the fake (WIRE.md §2.1)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = base_url.rstrip("/")


class LocalWebSocket(WebSocket):
    """pybit's private ``WebSocket`` pointed at the fake (WIRE.md §2.2)."""

    def __init__(self, base_ws_url: str, **kwargs: Any) -> None:
        self._base_ws_url = base_ws_url.rstrip("/")  # set before super(): __init__ connects
        super().__init__("private", **kwargs)

    def _connect(self, url: str) -> None:
        if "{SUBDOMAIN}" in url:  # the first connect gets the template; reconnects the local URL
            url = self._base_ws_url + url[url.index("/v5/") :]
        super()._connect(url)


class Stream:
    """The messages of pybit's private stream, handed to asyncio in the order pybit got them."""

    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []
        self.ws: LocalWebSocket | None = None
        self._event = asyncio.Event()

    def got(self, msg: dict[str, Any]) -> None:
        self.msgs.append(msg)
        self._event.set()

    def topic(self, topic: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["topic"] == topic]

    def rows(self, topic: str) -> list[dict[str, Any]]:
        return [r for m in self.topic(topic) for r in m["data"]]

    async def wait(self, cond: Callable[[], Any], timeout_s: float = 5.0) -> None:
        """Wait until ``cond()`` is true (checked on every message)."""
        async with asyncio.timeout(timeout_s):
            while not cond():
                self._event.clear()
                await self._event.wait()


async def call(fn: Callable[..., Any], **kw: Any) -> Any:
    return await asyncio.to_thread(fn, **kw)


async def until(cond: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Poll ``cond`` (every 10 ms) until it is true."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


async def order(http: HTTP, side: str = "Buy", qty: str = "0.010", symbol: str = BTC, **kw: Any) -> dict[str, Any]:
    body = await call(
        http.place_order, category="linear", symbol=symbol, side=side, orderType=kw.pop("orderType", "Market"),
        qty=qty, **kw,
    )  # fmt: skip
    assert body["retCode"] == 0, body
    return dict(body["result"])


async def refused(fn: Callable[..., Any], **kw: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as e:
        await call(fn, **kw)
    return e.value


def sign_headers(payload: str, ts: int | None = None, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    ts = ts if ts is not None else time.time_ns() // 1_000_000
    sign = hmac.new(secret.encode(), f"{ts}{key}5000{payload}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json", "X-BAPI-API-KEY": key, "X-BAPI-SIGN": sign, "X-BAPI-SIGN-TYPE": "2",
        "X-BAPI-TIMESTAMP": str(ts), "X-BAPI-RECV-WINDOW": "5000",
    }  # fmt: skip


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Refuse (and fail the test on) any connection or name lookup beyond loopback."""
    with loopback_only() as refused_hosts:
        yield
    assert refused_hosts == [], f"traffic beyond loopback was attempted: {refused_hosts}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBybit]:
    async with FakeBybit(instruments=load_instruments(INSTRUMENTS)) as f:
        f.enable_trading(api_key=KEY, api_secret=SECRET, balance_usdt=10_000.0)
        yield f


@pytest.fixture
def trading(fake: FakeBybit) -> TradingSide:
    assert fake.trading is not None
    return fake.trading


@pytest.fixture
def make_http(fake: FakeBybit) -> Iterator[Callable[..., LocalHTTP]]:
    """Make pybit ``HTTP`` clients of the fake (retries off unless asked for); closed at the end."""
    made: list[LocalHTTP] = []

    def make(**kw: Any) -> LocalHTTP:
        h = LocalHTTP(
            fake.base_url, **{"api_key": KEY, "api_secret": SECRET, "retry_codes": {-1}, "max_retries": 1, **kw}
        )
        made.append(h)
        return h

    yield make
    for h in made:
        h.client.close()


@pytest.fixture
def http(make_http: Callable[..., LocalHTTP]) -> LocalHTTP:
    return make_http()


@pytest.fixture
async def stream(fake: FakeBybit, trading: TradingSide) -> AsyncIterator[Stream]:
    """pybit's private stream, subscribed to order, execution, position and wallet."""
    s = Stream()
    loop = asyncio.get_running_loop()

    def on_message(msg: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(s.got, copy.deepcopy(msg))

    ws = await asyncio.to_thread(LocalWebSocket, fake.ws_url, testnet=False, api_key=KEY, api_secret=SECRET)
    s.ws = ws
    try:
        for name in ("order_stream", "execution_stream", "position_stream", "wallet_stream"):
            await asyncio.to_thread(getattr(ws, name), on_message)
        await trading.private.wait_subscribed(TOPICS, timeout_s=5)
        yield s
    finally:
        await asyncio.to_thread(ws.exit)


# --- signing ----------------------------------------------------------------------------------------


async def test_signed_rest_accepts_pybit_and_refuses_unknown_key_bad_sign_and_missing_headers(
    fake: FakeBybit, trading: TradingSide, http: LocalHTTP, make_http: Callable[..., LocalHTTP]
) -> None:
    body = await call(http.get_wallet_balance, accountType="UNIFIED")
    assert (body["retCode"], body["retMsg"]) == (0, "OK")
    e = await refused(
        make_http(api_key="nope").get_positions,
        category="linear", symbol=BTC,
    )  # fmt: skip
    assert (e.status_code, e.message) == (10003, "API key is invalid.")
    bad_secret = make_http(api_secret="wrong")
    e = await refused(bad_secret.place_order, category="linear", symbol=BTC, side="Buy", orderType="Market", qty="1")
    assert e.status_code == 10004 and e.message.startswith("error sign! origin_string[")
    e = await refused(bad_secret.get_positions, category="linear", symbol=BTC)  # GET: over the query string
    assert e.status_code == 10004 and e.message.endswith("category=linear&symbol=BTCUSDT]")
    url = f"{fake.base_url}/v5/position/list?category=linear&symbol=BTCUSDT"
    r = await asyncio.to_thread(requests.get, url, timeout=5)
    assert r.status_code == 401
    trading.invalid_key_http_status = 401
    with pytest.raises(FailedRequestError) as failed:
        await call(
            make_http(api_key="nope", retry_codes=None, max_retries=3).get_positions, category="linear", symbol=BTC
        )
    assert failed.value.status_code == 401
    assert trading.creates == 0


async def test_the_raw_body_is_what_is_signed_never_a_reserialisation(fake: FakeBybit, trading: TradingSide) -> None:
    trading.set_price(BTC, 100_000)
    raw = '{"symbol":"BTCUSDT","category":"linear","qty":"0.001","orderType":"Market","side":"Buy"}'
    headers = sign_headers(raw)
    url = f"{fake.base_url}/v5/order/create"
    r = await asyncio.to_thread(requests.post, url, data=raw, headers=headers, timeout=5)
    assert r.json()["retCode"] == 0 and set(r.headers) >= {"X-Bapi-Limit", "X-Bapi-Limit-Status"}
    same_json = json.dumps(json.loads(raw))  # equal as JSON, other bytes: the signature no longer holds
    r = await asyncio.to_thread(requests.post, url, data=same_json, headers=headers, timeout=5)
    assert r.json()["retCode"] == 10004
    calls = fake.calls_to("/v5/order/create")
    assert [(c.method, c.body, c.answer) for c in calls] == [("POST", raw, "ok"), ("POST", same_json, "ret_10004")]
    assert trading.creates == 1


async def test_time_window_gives_10002_and_market_time_answers_the_skewed_clock(
    fake: FakeBybit, trading: TradingSide, http: LocalHTTP, make_http: Callable[..., LocalHTTP]
) -> None:
    trading.fault("clock_skew", skew_ms=10_000, times=None)
    e = await refused(http.get_positions, category="linear", symbol=BTC)
    m = re.fullmatch(
        r"invalid request, please check your server timestamp or recv_window param\. "
        r"req_timestamp\[(\d+)\],server_timestamp\[(\d+)\],recv_window\[5000\]",
        e.message,
    )
    assert e.status_code == 10002 and m is not None, e.message
    assert 9_000 <= int(m[2]) - int(m[1]) <= 11_000
    server = await call(http.get_server_time)
    assert int(server["result"]["timeNano"]) // 1_000_000 - time.time_ns() // 1_000_000 >= 9_000
    wide = make_http(recv_window=20_000)
    assert (await call(wide.get_positions, category="linear", symbol=BTC))["retCode"] == 0
    trading.clear_skew()
    assert (await call(http.get_positions, category="linear", symbol=BTC))["retCode"] == 0
    # the server behind the client: a timestamp ≥ server_time + 1000 is refused too, for one request only
    trading.fault("clock_skew", skew_ms=-3_000)
    assert (await refused(http.get_positions, category="linear", symbol=BTC)).status_code == 10002
    assert (await call(http.get_positions, category="linear", symbol=BTC))["retCode"] == 0
    # pybit's own 10002 retry (recv_window + 2.5 s) rides out a one-request skew
    trading.fault("clock_skew", skew_ms=10_000)
    retrying = make_http(retry_codes=None, retry_delay=0, max_retries=2)  # pybit's default retry codes
    assert (await call(retrying.get_positions, category="linear", symbol=BTC))["retCode"] == 0
    answers = [c.answer for c in fake.calls_to("/v5/position/list")]
    assert answers == ["ret_10002", "ok", "ok", "ret_10002", "ok", "ret_10002", "ok"]


# --- orders and fills --------------------------------------------------------------------------------


async def test_market_order_with_tpsl_fills_and_pushes_order_execution_position_wallet(
    fake: FakeBybit, trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    result = await order(http, qty="0.010", takeProfit="101000", stopLoss="99000", orderLinkId="t-1", tpslMode="Full")
    assert set(result) == {"orderId", "orderLinkId"} and result["orderLinkId"] == "t-1"
    await stream.wait(lambda: stream.topic("wallet"))
    assert [m["topic"] for m in stream.msgs] == list(TOPICS)
    for m in stream.msgs:
        assert set(m) == {"id", "topic", "creationTime", "data"} and isinstance(m["data"], list)
    o = stream.rows("order")[0]
    assert (o["orderId"], o["orderLinkId"], o["orderStatus"], o["category"]) == (
        result["orderId"],
        "t-1",
        "Filled",
        "linear",
    )
    assert (o["qty"], o["cumExecQty"], o["leavesQty"], o["avgPrice"], o["cumExecFee"]) == (
        "0.010",
        "0.010",
        "0",
        "100000",
        "0.55",
    )
    assert (o["takeProfit"], o["stopLoss"], o["tpslMode"], o["timeInForce"], o["orderType"]) == (
        "101000.00", "99000.00", "Full", "IOC", "Market",
    )  # fmt: skip
    x = stream.rows("execution")[0]
    assert (x["execType"], x["execPrice"], x["execQty"], x["execValue"], x["execFee"], x["feeRate"]) == (
        "Trade", "100000.00", "0.010", "1000", "0.55", "0.00055",
    )  # fmt: skip
    assert (x["orderId"], x["orderLinkId"], x["isMaker"], x["leavesQty"], x["stopOrderType"], x["createType"]) == (
        result["orderId"], "t-1", False, "0", "", "CreateByUser",
    )  # fmt: skip
    assert x["execId"] and isinstance(x["seq"], int) and x["closedSize"] == "0" and x["side"] == "Buy"
    p = stream.rows("position")[0]
    assert (p["symbol"], p["side"], p["size"], p["entryPrice"], p["takeProfit"], p["stopLoss"]) == (
        BTC, "Buy", "0.010", "100000", "101000.00", "99000.00",
    )  # fmt: skip
    assert "avgPrice" not in p and p["leverage"] == "10" and p["positionValue"] == "1000"
    w = stream.rows("wallet")[0]
    assert (w["accountType"], w["totalWalletBalance"], w["coin"][0]["coin"], w["coin"][0]["walletBalance"]) == (
        "UNIFIED", "9999.45", "USDT", "9999.45",
    )  # fmt: skip
    assert trading.creates == 1 and trading.orders[result["orderId"]]["orderStatus"] == "Filled"
    assert json.loads(fake.calls_to("/v5/order/create")[0].body)["orderLinkId"] == "t-1"
    # REST agrees (avgPrice there)
    rest = (await call(http.get_positions, category="linear", symbol=BTC))["result"]["list"]
    assert [(r["side"], r["size"], r["avgPrice"], r["takeProfit"]) for r in rest] == [
        ("Buy", "0.010", "100000", "101000.00")
    ]
    assert "entryPrice" not in rest[0]


async def test_partial_fills_come_as_executions_of_their_own_pushed_one_by_one(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    trading.partial_fills = 3
    result = await order(http, qty="0.010")
    await stream.wait(lambda: len(stream.topic("wallet")) == 3)
    assert [m["topic"] for m in stream.msgs] == list(TOPICS) * 3
    execs = stream.rows("execution")
    assert [(x["execQty"], x["leavesQty"]) for x in execs] == [("0.003", "0.007"), ("0.003", "0.004"), ("0.004", "0")]
    assert len({x["execId"] for x in execs}) == 3 and all(x["orderId"] == result["orderId"] for x in execs)
    assert [o["orderStatus"] for o in stream.rows("order")] == ["PartiallyFilled", "PartiallyFilled", "Filled"]
    assert [p["size"] for p in stream.rows("position")] == ["0.003", "0.006", "0.010"]
    assert len(trading.executions) == 3


async def test_order_create_refusals(fake: FakeBybit, trading: TradingSide, http: LocalHTTP) -> None:
    kw: dict[str, Any] = {"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market"}
    e = await refused(http.place_order, **{**kw, "symbol": SOL, "qty": "1"})
    assert (e.status_code, e.message) == (10001, "no market price for SOLUSDT in the fake")
    trading.set_price(BTC, 100_000)
    trading.set_price(ETH, 100)
    e = await refused(http.place_order, **{**kw, "symbol": ETH, "qty": "0.01"})  # 1 USDT
    assert (e.status_code, e.message) == (110094, "Order does not meet minimum order value 5USDT")
    e = await refused(http.place_order, **{**kw, "qty": "0.0015"})
    assert e.status_code == 10001 and "qtyStep 0.001" in e.message
    fake.instruments[0]["lotSizeFilter"] = {**fake.instruments[0]["lotSizeFilter"], "minOrderQty": "0.005"}
    e = await refused(http.place_order, **{**kw, "qty": "0.002"})
    assert e.status_code == 10001 and "minOrderQty 0.005" in e.message
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "takeProfit": "101000.05"})
    assert e.status_code == 10001 and "tickSize 0.10" in e.message
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "takeProfit": "99000"})
    assert (
        e.message == "params error: TakeProfit:99000.00 set for Buy position should be higher than base_price:100000.00"
    )
    e = await refused(http.place_order, **{**kw, "side": "Sell", "qty": "0.010", "stopLoss": "99000"})
    assert e.status_code == 10001 and "StopLoss:99000.00 set for Sell position should be higher" in e.message
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "orderLinkId": "x" * 37})
    assert e.status_code == 10001 and "orderLinkId" in e.message
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "category": "spot"})
    assert e.status_code == 10001
    e = await refused(http.place_order, **{**kw, "qty": "1.500"})  # 150 000 notional / 10 > 10 000
    assert (e.status_code, e.message) == (110007, "ab not enough for new order")
    e = await refused(http.place_order, **{**kw, "symbol": ETH, "side": "Sell", "qty": "0.10", "reduceOnly": True})
    assert (e.status_code, e.message) == (110017, "Reduce-only rule not satisfied")  # no position
    assert trading.creates == 0
    await order(http, qty="0.010", orderLinkId="dup-1")
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "orderLinkId": "dup-1"})
    assert (e.status_code, e.message) == (110072, "OrderLinkedID is duplicate")
    await until(lambda: trading.positions[BTC]["size"] == "0.010")
    e = await refused(http.place_order, **{**kw, "qty": "0.010", "reduceOnly": True})  # would grow the long
    assert e.status_code == 110017
    await order(http, side="Sell", qty="0.020", reduceOnly=True)  # trimmed to the position: closes it
    await until(lambda: trading.positions[BTC]["size"] == "0")
    assert trading.creates == 2  # dup-1 and the reduce-only close were accepted
    e = await refused(http.place_order, **{**kw, "symbol": "DOGEUSDT", "qty": "1"})
    assert e.status_code == 10001


async def test_set_leverage_and_110043_when_unchanged(trading: TradingSide, http: LocalHTTP) -> None:
    lev = {"category": "linear", "symbol": BTC}
    e = await refused(http.set_leverage, **lev, buyLeverage="10", sellLeverage="10")  # the default
    assert (e.status_code, e.message) == (110043, "leverage not modified")
    assert (await call(http.set_leverage, **lev, buyLeverage="5", sellLeverage="5"))["result"] == {}
    assert (await refused(http.set_leverage, **lev, buyLeverage="5", sellLeverage="5")).status_code == 110043
    assert (await refused(http.set_leverage, **lev, buyLeverage="5", sellLeverage="6")).status_code == 10001
    assert (await refused(http.set_leverage, **lev, buyLeverage="101", sellLeverage="101")).status_code == 10001
    assert trading.positions[BTC]["leverage"] == "5"
    trading.set_price(BTC, 100_000)
    e = await refused(http.place_order, **lev, side="Buy", orderType="Market", qty="0.600")  # 60 000 / 5 > 10 000
    assert e.status_code == 110007
    await order(http, qty="0.400")  # 40 000 / 5 = 8 000
    await until(lambda: trading.positions[BTC]["positionIM"] == "8000")


async def test_limit_orders_rest_amend_cancel_and_fill_at_the_limit_as_maker(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    first = await order(http, orderType="Limit", qty="0.010", price="99000", orderLinkId="lim-1")
    await stream.wait(lambda: stream.rows("order"))
    assert [(o["orderStatus"], o["price"], o["timeInForce"]) for o in stream.rows("order")] == [
        ("New", "99000.00", "GTC")
    ]
    assert (await call(http.amend_order, category="linear", symbol=BTC, orderLinkId="lim-1", price="99500"))[
        "retCode"
    ] == 0
    await stream.wait(lambda: len(stream.rows("order")) == 2)
    assert stream.rows("order")[1]["price"] == "99500.00"
    open_ = (await call(http.get_open_orders, category="linear", symbol=BTC))["result"]
    assert [o["orderId"] for o in open_["list"]] == [first["orderId"]] and open_["nextPageCursor"] == ""
    assert trading.wallet()["totalInitialMargin"] == "99.5"  # the order's margin: 995 / 10
    trading.set_price(BTC, 99_600)
    assert not stream.rows("execution")
    trading.set_price(BTC, 99_400)
    await stream.wait(lambda: stream.rows("execution"))
    x = stream.rows("execution")[0]
    assert (x["execPrice"], x["isMaker"], x["feeRate"], x["execFee"]) == ("99500.00", True, "0.0002", "0.199")
    second = await order(http, side="Sell", orderType="Limit", qty="0.005", price="101000")
    assert (await call(http.cancel_order, category="linear", symbol=BTC, orderId=second["orderId"]))["result"] == second
    await stream.wait(lambda: stream.rows("order")[-1]["orderStatus"] == "Cancelled")
    assert stream.rows("order")[-1]["cancelType"] == "CancelByUser"
    for oid in (second["orderId"], first["orderId"], "no-such-order"):
        e = await refused(http.cancel_order, category="linear", symbol=BTC, orderId=oid)
        assert (e.status_code, e.message) == (110001, "Order does not exist")
    e = await refused(http.amend_order, category="linear", symbol=BTC, orderId=first["orderId"], qty="0.020")
    assert e.status_code == 110001


async def test_realtime_history_executions_positions_and_wallet_shapes(trading: TradingSide, http: LocalHTTP) -> None:
    trading.set_price(BTC, 100_000)
    filled = await order(http, qty="0.010", orderLinkId="f-1")
    resting = await order(http, orderType="Limit", qty="0.001", price="90000", orderLinkId="r-1")
    gone = await order(http, orderType="Limit", qty="0.001", price="91000", orderLinkId="c-1")
    await call(http.cancel_order, category="linear", symbol=BTC, orderLinkId="c-1")
    await until(lambda: trading.orders[gone["orderId"]]["orderStatus"] == "Cancelled")
    q = {"category": "linear", "symbol": BTC}
    rt = (await call(http.get_open_orders, **q))["result"]
    assert [o["orderLinkId"] for o in rt["list"]] == ["r-1"] and rt["category"] == "linear"
    o = rt["list"][0]
    assert {"orderId", "orderLinkId", "symbol", "price", "qty", "side", "positionIdx", "orderStatus", "avgPrice",
            "leavesQty", "leavesValue", "cumExecQty", "cumExecValue", "cumExecFee", "timeInForce", "orderType",
            "stopOrderType", "triggerPrice", "takeProfit", "stopLoss", "reduceOnly", "closeOnTrigger", "tpslMode",
            "createdTime", "updatedTime", "cancelType", "rejectReason"} <= set(o)  # fmt: skip
    assert all(isinstance(o[k], str) for k in ("price", "qty", "leavesQty", "cumExecQty", "createdTime"))
    by_id = (await call(http.get_open_orders, **q, orderId=filled["orderId"]))["result"]["list"]
    assert [(r["orderLinkId"], r["orderStatus"]) for r in by_id] == [("f-1", "Filled")]  # whatever its status
    closed = (await call(http.get_open_orders, **q, openOnly=1))["result"]["list"]
    assert {r["orderLinkId"] for r in closed} == {"f-1", "c-1"}
    assert (await refused(http.get_open_orders, category="linear")).status_code == 10001
    hist = (await call(http.get_order_history, **q))["result"]["list"]
    assert [r["orderLinkId"] for r in hist] == ["c-1", "r-1", "f-1"]  # newest first
    page = (await call(http.get_order_history, **q, limit=2))["result"]
    rest = (await call(http.get_order_history, **q, limit=2, cursor=page["nextPageCursor"]))["result"]
    assert [r["orderLinkId"] for r in page["list"] + rest["list"]] == ["c-1", "r-1", "f-1"] and rest[
        "nextPageCursor"
    ] == ""
    assert resting["orderId"] in {r["orderId"] for r in hist}
    trading.partial_fills = 2
    await order(http, side="Sell", qty="0.004", orderLinkId="s-1")
    await until(lambda: len(trading.executions) == 3)
    ex = (await call(http.get_executions, **q))["result"]
    assert [(r["orderLinkId"], r["execQty"]) for r in ex["list"]] == [
        ("s-1", "0.002"),
        ("s-1", "0.002"),
        ("f-1", "0.010"),
    ]
    assert ex["list"][0]["closedSize"] == "0.002" and ex["nextPageCursor"] == ""
    one = (await call(http.get_executions, **q, orderId=filled["orderId"]))["result"]["list"]
    assert [r["execId"] for r in one] == [trading.executions[0]["execId"]]
    assert len((await call(http.get_executions, **q, orderLinkId="s-1", limit=1))["result"]["list"]) == 1
    assert (await call(http.get_executions, **q, execType="Funding"))["result"]["list"] == []
    assert (await refused(http.get_executions, **q, limit=101)).status_code == 10001
    flat = (await call(http.get_positions, category="linear", symbol=ETH))["result"]["list"]
    assert [(p["symbol"], p["side"], p["size"]) for p in flat] == [(ETH, "", "0")]
    held = (await call(http.get_positions, category="linear", settleCoin="USDT"))["result"]["list"]
    assert [(p["symbol"], p["side"], p["size"], p["avgPrice"]) for p in held] == [(BTC, "Buy", "0.006", "100000")]
    trading.set_price(BTC, 101_000)
    wallet = (await call(http.get_wallet_balance, accountType="UNIFIED"))["result"]["list"]
    assert len(wallet) == 1
    w = wallet[0]
    account = {"totalEquity", "totalWalletBalance", "totalAvailableBalance", "totalPerpUPL", "totalMarginBalance",
               "totalInitialMargin", "totalMaintenanceMargin", "accountIMRate", "accountMMRate"}  # fmt: skip
    assert account <= set(w)
    assert w["totalPerpUPL"] == "6" and float(w["totalEquity"]) == float(w["totalWalletBalance"]) + 6
    usdt = w["coin"][0]
    assert {"coin", "walletBalance", "equity", "unrealisedPnl", "cumRealisedPnl", "usdValue", "totalPositionIM"} <= set(
        usdt
    )
    assert usdt["unrealisedPnl"] == "6" and usdt["walletBalance"] == w["totalWalletBalance"]
    assert (await refused(http.get_wallet_balance, accountType="CONTRACT")).status_code == 10001


# --- TP/SL, trailing stops, funding -------------------------------------------------------------------


async def test_take_profit_and_stop_loss_trigger_from_set_price(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    await order(http, qty="0.010", takeProfit="101000", stopLoss="99000")
    await stream.wait(lambda: stream.rows("position"))
    trading.set_price(BTC, 100_900)
    trading.set_price(BTC, 101_200)  # through the TP: closed at the trigger price
    await stream.wait(lambda: len(stream.rows("execution")) == 2)
    x = stream.rows("execution")[1]
    assert (x["side"], x["execPrice"], x["execQty"], x["closedSize"], x["stopOrderType"], x["createType"]) == (
        "Sell", "101000.00", "0.010", "0.010", "TakeProfit", "CreateByTakeProfit",
    )  # fmt: skip
    await stream.wait(lambda: len(stream.rows("wallet")) == 2)
    o = stream.rows("order")[1]
    assert (o["orderStatus"], o["stopOrderType"], o["triggerPrice"], o["reduceOnly"], o["closedPnl"]) == (
        "Filled", "TakeProfit", "101000.00", True, "9.4445",
    )  # fmt: skip
    p = stream.rows("position")[-1]
    assert (p["side"], p["size"], p["takeProfit"], p["cumRealisedPnl"]) == ("", "0", "0", "8.8945")
    assert stream.rows("wallet")[-1]["totalWalletBalance"] == "10008.8945"  # 10 000 - 0.55 + 10 - 0.5555
    assert stream.rows("wallet")[-1]["coin"][0]["cumRealisedPnl"] == "8.8945"
    # a short's stop loss
    await order(http, side="Sell", qty="0.010", stopLoss="101500")
    await stream.wait(lambda: len(stream.rows("execution")) == 3)
    trading.set_price(BTC, 101_400)
    assert len(stream.rows("execution")) == 3 and trading.positions[BTC]["side"] == "Sell"
    trading.set_price(BTC, 101_600)
    await stream.wait(lambda: len(stream.rows("execution")) == 4)
    x = stream.rows("execution")[3]
    assert (x["side"], x["execPrice"], x["stopOrderType"], x["createType"], x["execPnl"]) == (
        "Buy", "101500.00", "StopLoss", "CreateByStopLoss", "-3",
    )  # fmt: skip
    assert trading.positions[BTC]["size"] == "0"


async def test_public_frames_drive_fills_and_triggers(fake: FakeBybit, trading: TradingSide, http: LocalHTTP) -> None:
    t = DAY_MS + HOUR_MS  # the frames' own times make the market clock
    book = "orderbook.50.BTCUSDT"
    fake.public.publish(book_frame(book, "snapshot", [("99990.00", "1")], [("100010.00", "1")], u=1, seq=1, ts=t - 100))
    fake.public.publish(
        {
            "topic": "tickers.BTCUSDT", "type": "snapshot", "cs": 1, "ts": t,
            "data": {"symbol": BTC, "lastPrice": "100000.00", "markPrice": "100001.00", "fundingRate": "0.0002",
                     "bid1Price": "99990.00", "ask1Price": "100010.00"},
        }
    )  # fmt: skip
    assert trading.market(BTC) == {
        "last": "100000", "mark": "100001", "bid": "99990", "ask": "100010", "funding_rate": "0.0002",
    }  # fmt: skip
    assert trading.market_ms == t
    await order(http, qty="0.010", takeProfit="101000", stopLoss="99000")  # fills at the best ask
    await until(lambda: trading.positions[BTC]["size"] == "0.010")
    assert trading.executions[0]["execPrice"] == "100010.00" and trading.executions[0]["execTime"] == str(t)
    assert trading.positions[BTC]["markPrice"] == "100001.00" and trading.positions[BTC]["unrealisedPnl"] == "-0.09"
    fake.public.publish(book_frame(book, "delta", [("99995.00", "2")], [], u=2, seq=2, ts=t + 100))
    assert trading.market(BTC)["bid"] == "99995"
    fake.public.publish(trade_frame(BTC, [("98900", "0.5", "Sell")], ts=t + 5_001))  # a trade through the SL
    assert trading.positions[BTC]["size"] == "0"
    sl = trading.executions[-1]
    assert (sl["stopOrderType"], sl["execPrice"], sl["execTime"]) == ("StopLoss", "99000.00", str(t + 5_000))
    await order(http, qty="0.010", takeProfit="101000")
    await until(lambda: trading.positions[BTC]["size"] == "0.010")
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "cs": 2, "ts": t + 9_000, "data": {"lastPrice": "101100"}}
    fake.public.publish(delta)  # a ticker through the TP
    assert trading.positions[BTC]["size"] == "0"
    tp = trading.executions[-1]
    assert (tp["stopOrderType"], tp["execPrice"], tp["execTime"]) == ("TakeProfit", "101000.00", str(t + 9_000))


async def test_trailing_stop_follows_the_best_price_once_active(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    await order(http, qty="0.010")
    await until(lambda: trading.positions[BTC]["size"] == "0.010")
    stop = {"category": "linear", "symbol": BTC, "tpslMode": "Full", "positionIdx": 0}
    body = await call(http.set_trading_stop, **stop, trailingStop="500", activePrice="100500")
    assert body["result"] == {}
    await stream.wait(lambda: len(stream.rows("position")) == 2)
    assert stream.rows("position")[-1]["trailingStop"] == "500.00"
    for price in (99_400, 100_600, 101_000, 100_600):  # not active yet at 99 400; then the best is 101 000
        trading.set_price(BTC, price)
    assert trading.positions[BTC]["size"] == "0.010"
    trading.set_price(BTC, 100_450)  # below 101 000 - 500
    x = trading.executions[-1]
    assert (x["stopOrderType"], x["createType"], x["execPrice"], x["closedSize"]) == (
        "TrailingStop", "CreateByTrailingStop", "100500.00", "0.010",
    )  # fmt: skip
    assert trading.positions[BTC]["size"] == "0" and trading.positions[BTC]["trailingStop"] == "0"
    # a short's trailing stop with no activePrice is active at once
    await order(http, side="Sell", qty="0.010")
    await until(lambda: trading.positions[BTC]["side"] == "Sell")
    await call(http.set_trading_stop, **stop, trailingStop="300")
    trading.set_price(BTC, 100_000)
    trading.set_price(BTC, 100_310)
    assert (
        trading.executions[-1]["stopOrderType"] == "TrailingStop" and trading.executions[-1]["execPrice"] == "100300.00"
    )


async def test_trading_stop_sets_cancels_and_refuses(trading: TradingSide, http: LocalHTTP) -> None:
    stop = {"category": "linear", "symbol": BTC, "tpslMode": "Full", "positionIdx": 0}
    e = await refused(http.set_trading_stop, **stop, takeProfit="110000")
    assert (e.status_code, e.message) == (10001, "can not set tp/sl/ts for zero position")
    trading.set_price(BTC, 100_000)
    await order(http, qty="0.010")
    await until(lambda: trading.positions[BTC]["size"] == "0.010")
    await call(http.set_trading_stop, **stop, takeProfit="102000", stopLoss="98000")
    assert (trading.positions[BTC]["takeProfit"], trading.positions[BTC]["stopLoss"]) == ("102000.00", "98000.00")
    await call(http.set_trading_stop, **stop, takeProfit="0")
    assert (trading.positions[BTC]["takeProfit"], trading.positions[BTC]["stopLoss"]) == ("0", "98000.00")
    assert (await refused(http.set_trading_stop, **stop, stopLoss="98000")).status_code == 34040
    e = await refused(http.set_trading_stop, **stop, stopLoss="100500")
    assert e.status_code == 10001 and "StopLoss:100500.00 set for Buy position should be lower" in e.message
    assert (
        await refused(http.set_trading_stop, **{**stop, "tpslMode": "Partial"}, takeProfit="103000")
    ).status_code == 10001
    assert (await refused(http.set_trading_stop, **stop, takeProfit="103000.01")).status_code == 10001


async def test_funding_is_charged_at_0800_utc_of_the_market_clock(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    t0 = DAY_MS + 8 * HOUR_MS - 60_000  # 07:59 UTC
    trading.set_price(BTC, 100_000, ts_ms=t0)
    trading.set_price(ETH, 2_000, ts_ms=t0 + 1)
    trading.set_funding_rate(ETH, 0.0002)
    await order(http, qty="0.100")  # a long of 10 000 USDT, fee 5.5
    await order(http, symbol=ETH, side="Sell", qty="1.00")  # a short of 2 000 USDT, fee 1.1
    await stream.wait(lambda: len(stream.topic("wallet")) == 2)
    assert [x["execTime"] for x in trading.executions] == [str(t0 + 1)] * 2
    assert {o["createdTime"] for o in trading.orders.values()} == {str(t0 + 1)}
    n = len(stream.msgs)
    trading.set_price(BTC, 100_000, ts_ms=DAY_MS + 8 * HOUR_MS)  # 08:00 UTC
    funding = [x for x in trading.executions if x["execType"] == "Funding"]
    assert [(x["symbol"], x["side"], x["execFee"], x["feeRate"], x["execValue"], x["execTime"]) for x in funding] == [
        (BTC, "Buy", "1", "0.0001", "10000", str(DAY_MS + 8 * HOUR_MS)),  # a long pays
        (ETH, "Sell", "-0.4", "0.0002", "2000", str(DAY_MS + 8 * HOUR_MS)),  # a short receives
    ]
    assert trading.wallet()["totalWalletBalance"] == "9992.8"  # 10 000 - 5.5 - 1.1 - 1 + 0.4
    trading.set_price(BTC, 100_000, ts_ms=DAY_MS + 8 * HOUR_MS + 60_000)  # no second charge
    trading.set_price(ETH, 2_000, ts_ms=DAY_MS + 8 * HOUR_MS - 1)  # the clock never goes back
    assert len([x for x in trading.executions if x["execType"] == "Funding"]) == 2
    await stream.wait(lambda: len(stream.msgs) >= n + 6)
    assert [m["topic"] for m in stream.msgs[n:]] == ["execution", "position", "wallet"] * 2
    assert stream.rows("execution")[-1]["execType"] == "Funding"
    assert trading.positions[BTC]["cumRealisedPnl"] == "-6.5"
    rest = (await call(http.get_executions, category="linear", execType="Funding"))["result"]["list"]
    assert [r["symbol"] for r in rest] == [ETH, BTC]  # newest first (same time: the later one first)


async def test_position_opened_outside_is_pushed_with_its_history(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    oid = trading.open_position_outside(ETH, "Sell", "0.50", "2000", take_profit="1900", stop_loss="2100")
    await stream.wait(lambda: stream.topic("wallet"))
    assert [m["topic"] for m in stream.msgs] == list(TOPICS)
    assert stream.rows("order")[0]["orderId"] == oid and stream.rows("execution")[0]["execPrice"] == "2000.00"
    pos = (await call(http.get_positions, category="linear", symbol=ETH))["result"]["list"][0]
    assert (pos["side"], pos["size"], pos["avgPrice"], pos["takeProfit"], pos["stopLoss"]) == (
        "Sell", "0.50", "2000", "1900.00", "2100.00",
    )  # fmt: skip
    hist = (await call(http.get_order_history, category="linear", symbol=ETH))["result"]["list"]
    assert [(h["orderId"], h["orderStatus"], h["orderLinkId"]) for h in hist] == [(oid, "Filled", "")]
    trading.set_price(ETH, 1_890)
    assert trading.positions[ETH]["size"] == "0" and trading.executions[-1]["stopOrderType"] == "TakeProfit"
    assert trading.creates == 0


# --- the private WebSocket -----------------------------------------------------------------------------


async def test_private_ws_auth_ping_and_subscribe_acks(fake: FakeBybit, trading: TradingSide) -> None:
    def auth(expires: int, secret: str = SECRET) -> str:
        sign = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        return json.dumps({"op": "auth", "args": [KEY, expires, sign]})

    async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return dict(json.loads(msg.data))

    async with aiohttp.ClientSession() as session, session.ws_connect(f"{fake.ws_url}/v5/private") as ws:
        await ws.send_str(json.dumps({"req_id": "p1", "op": "ping"}))
        pong = await next_json(ws)
        assert (pong["req_id"], pong["op"], set(pong)) == ("p1", "pong", {"req_id", "op", "args", "conn_id"})
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "early", "args": ["order"]}))
        early = await next_json(ws)
        assert (early["success"], early["ret_msg"], early["req_id"]) == (False, "Request not authorized", "early")
        now = time.time_ns() // 1_000_000
        await ws.send_str(auth(now + 1_000, secret="wrong"))
        bad = await next_json(ws)
        assert bad == {"success": False, "ret_msg": "Params Error", "op": "auth", "conn_id": bad["conn_id"]}
        await ws.send_str(auth(now - 1_000))  # expired
        assert (await next_json(ws))["success"] is False
        await ws.send_str(auth(now + 1_000))
        ok = await next_json(ws)
        assert ok == {"success": True, "ret_msg": "", "op": "auth", "conn_id": ok["conn_id"]}
        t0 = time.monotonic()
        await ws.send_str(json.dumps({"op": "subscribe", "req_id": "s1", "args": ["order", "wallet"]}))
        ack = await next_json(ws)
        assert time.monotonic() - t0 >= 0.045  # WIRE.md §0 rule 1: never an instant ack
        assert (ack["success"], ack["op"], ack["req_id"]) == (True, "subscribe", "s1")
        trading.open_position_outside(BTC, "Buy", "0.001", "100000")
        got = [await next_json(ws), await next_json(ws)]
        assert [m["topic"] for m in got] == ["order", "wallet"]  # only what this connection subscribed to
        assert "type" not in got[0] and isinstance(got[0]["creationTime"], int)
    assert trading.private.auths == 1 and trading.private.sent["execution"] == 0


async def test_private_drop_makes_pybit_reconnect_reauth_and_resubscribe(
    fake: FakeBybit, trading: TradingSide, stream: Stream
) -> None:
    assert await trading.private.drop("abort") == 1
    await until(lambda: trading.private.auths == 2)
    await trading.private.wait_subscribed(TOPICS, timeout_s=5)
    trading.open_position_outside(BTC, "Buy", "0.001", "100000")
    await stream.wait(lambda: stream.topic("wallet"))
    assert trading.private.connections_total == 2


# --- faults --------------------------------------------------------------------------------------------


async def test_fault_reject_and_rate_limit_on_order_create(
    fake: FakeBybit, trading: TradingSide, http: LocalHTTP
) -> None:
    trading.set_price(BTC, 100_000)
    trading.fault("reject", ret_code=110007, ret_msg="ab not enough for new order")
    kw = {"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market", "qty": "0.010"}
    e = await refused(http.place_order, **kw)
    assert (e.status_code, e.message) == (110007, "ab not enough for new order")
    await order(http)
    fake.fault("/v5/order/create", "rate_limit", reset_in_ms=500)
    e = await refused(http.place_order, **kw)
    assert (e.status_code, e.message) == (10006, "Too many visits!")
    assert int(e.resp_headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time_ns() // 1_000_000
    assert trading.creates == 1 and len(trading.orders) == 1
    assert [c.answer for c in fake.calls_to("/v5/order/create")] == ["ret_110007", "ok", "rate_limit"]
    with pytest.raises(ValueError):
        trading.fault("nonsense")
    with pytest.raises(ValueError):
        trading.fault("reject", delay_s=1)


async def test_fault_timeout_after_accept_fills_but_answers_late(
    fake: FakeBybit, trading: TradingSide, stream: Stream, make_http: Callable[..., LocalHTTP]
) -> None:
    trading.set_price(BTC, 100_000)
    trading.fault("timeout_after_accept", delay_s=1.0)
    slow = make_http(timeout=0.3)
    kw = {"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market", "qty": "0.010"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        await call(slow.place_order, **kw, orderLinkId="slow-1")
    await stream.wait(lambda: stream.rows("execution"))  # the fill went out anyway
    assert stream.rows("order")[0]["orderLinkId"] == "slow-1" and trading.creates == 1
    found = (await call(slow.get_open_orders, category="linear", symbol=BTC, orderLinkId="slow-1"))["result"]["list"]
    assert [(f["orderLinkId"], f["orderStatus"]) for f in found] == [("slow-1", "Filled")]
    assert (await refused(slow.place_order, **kw, orderLinkId="slow-1")).status_code == 110072  # a retry is refused
    await until(lambda: "timeout_after_accept" in [c.answer for c in fake.calls_to("/v5/order/create")])


async def test_fault_lost_after_accept_fills_without_an_answer(
    fake: FakeBybit, trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    trading.fault("lost_after_accept")
    with pytest.raises(requests.exceptions.ConnectionError):
        await call(http.place_order, category="linear", symbol=BTC, side="Buy", orderType="Market", qty="0.010")
    await stream.wait(lambda: stream.rows("wallet"))
    assert [o["orderStatus"] for o in trading.orders.values()] == ["Filled"] and trading.creates == 1
    await until(lambda: [c.answer for c in fake.calls_to("/v5/order/create")] == ["lost_after_accept"])
    await order(http)  # the next one is answered
    assert trading.creates == 2


@pytest.mark.parametrize("mode", ["close", "abort"])
async def test_fault_drop_private_during_fill_loses_that_fill_on_the_socket(
    trading: TradingSide, http: LocalHTTP, stream: Stream, mode: str
) -> None:
    trading.set_price(BTC, 100_000)
    trading.fault("drop_private_during_fill", mode=mode)
    lost = await order(http, orderLinkId="lost-fill")
    await until(lambda: trading.private.auths == 2, timeout_s=10)  # pybit reconnected and authenticated again
    await trading.private.wait_subscribed(TOPICS, timeout_s=5)
    assert trading.positions[BTC]["size"] == "0.010"  # the fill happened
    seen = await order(http, orderLinkId="seen-fill")
    await stream.wait(lambda: any(x["orderId"] == seen["orderId"] for x in stream.rows("execution")))
    await stream.wait(lambda: stream.topic("wallet"))
    assert not any(m["data"][0].get("orderId") == lost["orderId"] for m in stream.msgs if m["topic"] != "wallet")
    assert len(stream.topic("wallet")) == 1  # only the second fill's
    rest = (await call(http.get_executions, category="linear", symbol=BTC, orderId=lost["orderId"]))["result"]["list"]
    assert len(rest) == 1  # what the socket lost, REST still tells


async def test_fault_duplicate_execution_pushes_every_execution_message_twice(
    trading: TradingSide, http: LocalHTTP, stream: Stream
) -> None:
    trading.set_price(BTC, 100_000)
    trading.fault("duplicate_execution")
    trading.partial_fills = 2
    await order(http, qty="0.010")
    await stream.wait(lambda: len(stream.topic("wallet")) == 2)
    assert [m["topic"] for m in stream.msgs] == ["order", "execution", "execution", "position", "wallet"] * 2
    execs = stream.topic("execution")
    assert execs[0] == execs[1] and execs[2] == execs[3]  # both executions of that order's fill, twice each
    assert execs[0]["data"][0]["execId"] != execs[2]["data"][0]["execId"]
    assert len(trading.executions) == 2 and trading.positions[BTC]["size"] == "0.010"
    trading.set_price(BTC, 100_100)
    await order(http, side="Sell", qty="0.010")  # the next fill is pushed once
    await stream.wait(lambda: len(stream.topic("wallet")) == 4)
    assert len(stream.topic("execution")) == 6
