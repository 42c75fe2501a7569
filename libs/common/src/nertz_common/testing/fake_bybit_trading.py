"""The trading side of the fake Bybit V5 server: signed REST, the private WebSocket, a small matching engine.

Switched on with :meth:`FakeBybit.enable_trading <nertz_common.testing.fake_bybit.FakeBybit.enable_trading>`
(or ``FakeBybit(api_key=..., api_secret=...)``), which returns the :class:`TradingSide` (also
``fake.trading``). The real pybit 5.17.0 talks to it: ``HTTP`` with ``endpoint`` set to ``fake.base_url``
and ``WebSocket(channel_type="private")`` whose ``_connect`` puts ``fake.ws_url`` in front of
``/v5/private`` (WIRE.md §2.2). Shaped after ``../shared/docs/WIRE.md`` §2.1–§2.2 (what pybit sends and
expects), §3 (signed REST, retCodes) and §4.2/§4.4 (the private stream).

What it serves
--------------
- **Signed REST**, in Bybit's envelope with the ``X-Bapi-Limit*`` headers of the fake (and its REST
  faults, e.g. ``fake.fault("/v5/order/create", "rate_limit")``): ``POST /v5/order/create``,
  ``/v5/order/amend``, ``/v5/order/cancel``, ``/v5/position/set-leverage``, ``/v5/position/trading-stop``;
  ``GET /v5/order/realtime``, ``/v5/order/history``, ``/v5/execution/list``, ``/v5/position/list``,
  ``/v5/account/wallet-balance``. Every request is checked as Bybit does: the ``X-BAPI-*`` headers
  (missing → HTTP 401), the key (``10003 API key is invalid.``), the time window
  ``server_time - recv_window <= timestamp < server_time + 1000`` (``10002``, Bybit's message) and the
  HMAC-SHA256 hex signature of ``timestamp + api_key + recv_window + payload`` (``10004 error sign!``),
  where the payload is the *raw* query string (GET) or the *raw* body bytes (POST), never re-serialised.
- **Private WebSocket** ``/v5/private`` (:class:`PrivateChannel`): ``auth`` (HMAC hex of
  ``"GET/realtime" + expires``, ``expires`` later than the server's clock), ``subscribe`` to ``order``,
  ``execution``, ``position`` and ``wallet`` (acks delayed, ``req_id`` echoed: WIRE.md §0 rule 1),
  ``{"op":"ping"}`` → the private pong. After every change the fake pushes ``order`` → ``execution``
  → ``position`` → ``wallet`` messages ``{id, topic, creationTime, data: [...]}`` (no ``type``; a
  position carries ``entryPrice`` where REST has ``avgPrice``) to the connections subscribed to each.
  No snapshot is sent on subscribe (Bybit sends none on private topics).

Matching engine
---------------
One-way mode (``positionIdx`` 0), USDT linear perpetuals of ``fake.instruments``, one USDT wallet of a
unified account.

- **Market** orders are answered first, then filled (on the next loop iteration) at the best ask (Buy)
  or best bid (Sell) when a book is known, else at the last price, in :attr:`TradingSide.partial_fills`
  executions (own ``execId`` each, pushed one by one); taker fee 0.055 % of the exec value.
- **Limit** orders rest until the last price reaches the limit, then fill at the limit (maker fee
  0.02 %, ``isMaker`` true); a limit that is marketable when taken fills at once as a taker
  (``IOC``/``FOK`` not marketable: cancelled; ``PostOnly`` marketable: cancelled).
- The ``takeProfit``/``stopLoss`` of an order are set on the position it opens or grows. TP/SL
  (``tpslMode`` Full, triggered on LastPrice) close the whole position at the trigger price as one
  market execution of a new order (``stopOrderType`` TakeProfit/StopLoss, ``createType``
  CreateByTakeProfit/CreateByStopLoss). A trailing stop (a price distance) follows the best last price
  once ``activePrice`` was reached (or at once) and closes like a stop (TrailingStop).
- Closing realises P&L: ``(exit - entry) × qty`` (× -1 short) goes to the wallet, the position's
  ``curRealisedPnl``/``cumRealisedPnl`` and the coin's ``cumRealisedPnl`` (all net of fees and
  funding); a flat position has ``side ""`` and ``size "0"``. An order's ``closedPnl`` is the gross P&L
  of what it closed minus its fee on that part.
- **Funding** at 00:00, 08:00 and 16:00 UTC of the *market clock*: fee = size × mark price × rate
  (a long pays a positive rate, a short receives it), as an execution with ``execType`` Funding
  (``execFee`` > 0 paid, < 0 received), then the position and wallet messages.
- Margin: initial margin = notional / leverage (default 10); an order whose new exposure needs more
  than ``totalAvailableBalance`` (wallet + unrealised P&L − position and order initial margin) is
  refused with 110007.

Prices come from :meth:`TradingSide.set_price` or from the frames sent on ``fake.public``
(:meth:`PublicLinear.publish`, ``set_book``, ``book_delta``, ``play``): ``tickers`` (lastPrice,
markPrice, fundingRate, bid1Price/ask1Price), ``publicTrade`` (each trade's price and ``T``) and
``orderbook`` (best bid/ask). The **market clock** is the latest ``ts_ms`` given (frames: their
``ts``/``T``; it never goes back); execution and order times use it once set, else the server's clock.
Position and wallet messages are pushed on fills, funding, leverage and TP/SL changes, not on every
mark move (REST always shows the current unrealised P&L).

Units: prices in USDT per unit of the base coin, quantities in the base coin (BTC for BTCUSDT), money
(fees, P&L, balances, margins) in USDT, times in ms since the UNIX epoch (UTC), rates as fractions
(0.00055 = 0.055 %). Every number on the wire is a string, prices with the instrument's tick decimals
and quantities with its qtyStep decimals.

Faults (:meth:`TradingSide.fault`): ``reject``, ``clock_skew``, ``timeout_after_accept``,
``lost_after_accept``, ``drop_private_during_fill``, ``duplicate_execution``; and
:meth:`PrivateChannel.drop`.

Not modelled: hedge mode, Partial TP/SL, conditional (``triggerPrice``) orders, Mark/Index triggers,
liquidation, risk limits, spot/inverse/option, other coins, the TP/SL "Untriggered" orders Bybit lists
while a position holds TP/SL (the fake keeps them on the position and shows the closing order once
it triggered, Filled).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from nertz_common.testing.fake_bybit import ANSWER, NOW_MS, BybitError, RestHandler, WsChannel, WsConn, _dumps

if TYPE_CHECKING:
    from nertz_common.testing.fake_bybit import FakeBybit

log = logging.getLogger("nertz.fake_bybit.trading")

PRIVATE = "/v5/private"
#: private topics the fake serves
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
FUNDING_INTERVAL_MS = 8 * 3_600_000
"""Funding every 8 h: 00:00, 08:00, 16:00 UTC."""
MAINT_MARGIN_RATE = Decimal("0.005")
"""Maintenance margin rate of the first risk tier (0.5 %)."""
FaultKind = Literal[
    "reject", "clock_skew", "timeout_after_accept", "lost_after_accept", "drop_private_during_fill",
    "duplicate_execution",
]  # fmt: skip
_FAULT_KW: dict[str, dict[str, Any]] = {
    "reject": {"ret_code": 110007, "ret_msg": "ab not enough for new order"},
    "clock_skew": {"skew_ms": 10_000},
    "timeout_after_accept": {"delay_s": 2.0, "path": "/v5/order/create"},
    "lost_after_accept": {"path": "/v5/order/create"},
    "drop_private_during_fill": {"mode": "close"},
    "duplicate_execution": {},
}
_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_OPEN = ("New", "PartiallyFilled", "Untriggered")
_ZERO = Decimal(0)
_EIGHT = Decimal("1e-8")


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Instrument:
    """The trading rules of one linear instrument (from instruments-info)."""

    symbol: str
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_mkt_qty: Decimal
    min_notional: Decimal
    min_leverage: Decimal
    max_leverage: Decimal
    leverage_step: Decimal
    price_limit_ratio: Decimal

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> _Instrument:
        pf, lf = info.get("priceFilter", {}), info.get("lotSizeFilter", {})
        lev = info.get("leverageFilter", {})
        risk = info.get("riskParameters") or {}
        return cls(
            symbol=str(info["symbol"]),
            tick=Decimal(pf.get("tickSize", "0.01")),
            min_price=Decimal(pf.get("minPrice", "0")),
            max_price=Decimal(pf.get("maxPrice", "1e12")),
            qty_step=Decimal(lf.get("qtyStep", "0.001")),
            min_qty=Decimal(lf.get("minOrderQty", "0.001")),
            max_qty=Decimal(lf.get("maxOrderQty", "1e12")),
            max_mkt_qty=Decimal(lf.get("maxMktOrderQty", lf.get("maxOrderQty", "1e12"))),
            min_notional=Decimal(lf.get("minNotionalValue", "0")),
            min_leverage=Decimal(lev.get("minLeverage", "1")),
            max_leverage=Decimal(lev.get("maxLeverage", "100")),
            leverage_step=Decimal(lev.get("leverageStep", "0.01")),
            price_limit_ratio=Decimal(risk.get("priceLimitRatioX", "0.01")),
        )

    def price(self, d: Decimal) -> str:
        """A price as Bybit writes it (tick decimals)."""
        return format(d.quantize(self.tick, rounding=ROUND_HALF_EVEN), "f")

    def qty(self, d: Decimal) -> str:
        """A quantity as Bybit writes it (qtyStep decimals; zero as "0")."""
        return "0" if d == 0 else format(d.quantize(self.qty_step, rounding=ROUND_HALF_EVEN), "f")

    def to_tick(self, d: Decimal) -> Decimal:
        return (d / self.tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * self.tick


@dataclass
class _Market:
    """What the fake knows of one symbol's market (None = not known)."""

    last: Decimal | None = None
    mark: Decimal | None = None  # None: follows the last price
    bid: Decimal | None = None
    ask: Decimal | None = None
    funding_rate: Decimal = Decimal("0.0001")

    @property
    def mark_price(self) -> Decimal | None:
        return self.mark if self.mark is not None else self.last


@dataclass(eq=False)
class _Order:
    order_id: str
    link_id: str
    symbol: str
    side: str
    order_type: str  # Market | Limit
    qty: Decimal
    price: Decimal  # the limit; for a market order the protection price Bybit shows
    tif: str
    reduce_only: bool
    take_profit: Decimal | None
    stop_loss: Decimal | None
    created: int
    last_on_created: str = ""
    close_on_trigger: bool = False
    stop_order_type: str = ""
    create_type: str = "CreateByUser"
    trigger_price: Decimal | None = None
    status: str = "New"
    cum_qty: Decimal = _ZERO
    cum_value: Decimal = _ZERO
    cum_fee: Decimal = _ZERO
    closed_pnl: Decimal = _ZERO
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    updated: int = 0
    processed: bool = False

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.cum_qty if self.status in _OPEN else _ZERO


@dataclass(eq=False)
class _Position:
    symbol: str
    leverage: Decimal
    side: str = ""  # Buy | Sell | ""
    size: Decimal = _ZERO
    entry: Decimal = _ZERO
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    trailing: Decimal | None = None  # distance
    active_price: Decimal | None = None
    trail_active: bool = False
    trail_best: Decimal = _ZERO
    cur_realised: Decimal = _ZERO
    cum_realised: Decimal = _ZERO
    created: int = 0
    updated: int = 0
    seq: int = 0

    @property
    def direction(self) -> int:
        return 1 if self.side == "Buy" else -1 if self.side == "Sell" else 0

    def clear_stops(self) -> None:
        self.take_profit = self.stop_loss = self.trailing = self.active_price = None
        self.trail_active = False


@dataclass
class TradingFault:
    """One scripted trading fault (see :meth:`TradingSide.fault`)."""

    kind: str
    times: int | None
    kw: dict[str, Any] = field(default_factory=dict)


# --- the private WebSocket ----------------------------------------------------------------------


class PrivateChannel(WsChannel):
    """The private WebSocket channel (``/v5/private``).

    Parameters
    ----------
    side : TradingSide
        Checks ``auth`` and owns the state pushed here.
    ack_delay_s : float
        Delay of every subscribe/unsubscribe ack, s (≥ 0.02 keeps pybit alive, WIRE.md §0 rule 1).

    Attributes
    ----------
    conns : list of WsConn
        The open connections.
    requests : list of (conn_id, op, req_id, args)
        Every control request received, in order.
    pushed : list of dict
        Every data message the fake pushed (whether or not a connection was subscribed), in order.
    sent : Counter
        Data messages sent, by topic (counted once per connection and copy).
    auths : int
        Successful ``auth`` requests so far (a reconnecting pybit authenticates again).
    connections_total : int
        WebSocket connections accepted so far.
    """

    path = PRIVATE
    conn_tag = "p"

    def __init__(self, side: TradingSide, ack_delay_s: float = 0.05) -> None:
        super().__init__(ack_delay_s)
        self.side = side
        self.pushed: list[dict[str, Any]] = []
        self.auths = 0
        self._authed: set[WsConn] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _forget(self, conn: WsConn) -> None:
        self._authed.discard(conn)

    def _on_request(self, conn: WsConn, op: str, req_id: str, req: dict[str, Any]) -> None:
        if op == "ping":
            pong = {"req_id": req_id, "op": "pong", "args": [str(self.side.fake.clock_ms())], "conn_id": conn.conn_id}
            conn.out.put_nowait(_dumps(pong))
        elif op == "auth":
            conn.ops.put_nowait((time.monotonic(), req))
        elif op in ("subscribe", "unsubscribe"):
            conn.ops.put_nowait((time.monotonic() + self.ack_delay_s, req))

    async def _run_ops(self, conn: WsConn) -> None:
        # control requests are answered in order: auth at once, (un)subscribe ack_delay_s late
        while (item := await conn.ops.get()) is not None:
            due, req = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            op = str(req["op"])
            ack: dict[str, Any] = {"success": True, "ret_msg": "", "op": op, "conn_id": conn.conn_id}
            if req.get("req_id") is not None:
                ack["req_id"] = str(req["req_id"])
            args = [str(a) for a in req.get("args") or []]
            if op == "auth":
                if self.side.check_ws_auth(req.get("args")):
                    self._authed.add(conn)
                    self.auths += 1
                else:
                    ack.update(success=False, ret_msg="Params Error")
            elif conn not in self._authed:
                ack.update(success=False, ret_msg="Request not authorized")
            elif op == "subscribe":
                bad = [a for a in args if a not in PRIVATE_TOPICS]
                if bad:
                    ack.update(success=False, ret_msg=f"error:handler not found,topic:{bad[0]}")
                else:
                    conn.topics.update(args)
            else:
                conn.topics.difference_update(args)
            conn.out.put_nowait(_dumps(ack))
            await self._notify()

    def push(self, topic: str, rows: list[dict[str, Any]], ts_ms: int, *, copies: int = 1) -> int:
        """Push one data message of ``topic`` to every authenticated connection subscribed to it
        (``copies`` times, the very same text); return how many connections got it."""
        msg = {"id": f"{uuid.uuid4().hex[:14]}-{uuid.uuid4()}", "topic": topic, "creationTime": ts_ms, "data": rows}
        self.pushed.append(msg)
        text = _dumps(msg)
        n = 0
        for conn in list(self.conns):
            if not conn.closed and conn in self._authed and topic in conn.topics:
                for _ in range(copies):
                    conn.out.put_nowait(text)
                    self.sent[topic] += 1
                n += 1
        return n

    def drop_soon(self, mode: Literal["close", "abort"] = "close") -> int:
        """Stop sending to every open connection at once (what is pushed from now on is lost for
        them), then drop each once what was already queued went out; return how many."""
        conns = [c for c in self.conns if not c.closed]
        for conn in conns:
            conn.closed = True
            task = asyncio.get_running_loop().create_task(self._drop_one(conn, mode, flush=True))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(conns)

    async def wait_subscribed(
        self, topics: Iterable[str] = PRIVATE_TOPICS, *, connections: int = 1, timeout_s: float = 20.0
    ) -> None:
        """Wait until ``connections`` open, authenticated connections are subscribed to every topic of ``topics``.

        Raises
        ------
        TimeoutError
            If that does not happen within ``timeout_s``.
        """
        wanted = set(topics)
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(
                lambda: sum(wanted <= c.topics for c in self.conns if not c.closed and c in self._authed) >= connections
            )


# --- the trading side -----------------------------------------------------------------------------


class TradingSide:
    """Signed REST, the private WebSocket and the matching engine of a :class:`FakeBybit`.

    Made by :meth:`FakeBybit.enable_trading`, which registers the routes in ``fake.rest_routes``,
    the channel in ``fake.ws_channels`` and a listener on ``fake.public``. Use it on the fake's
    event loop.

    Parameters
    ----------
    fake : FakeBybit
        The server (its instruments, clock, public channel).
    api_key, api_secret : str
        The one key the fake knows.
    balance_usdt : float
        The starting wallet balance, USDT.
    taker_fee_rate, maker_fee_rate : float
        Fee rates, fractions of the exec value (0.00055 = 0.055 %; 0.0002 = 0.02 %).
    leverage : float
        Every symbol's leverage until ``/v5/position/set-leverage`` changes it.
    funding_rate : float
        Every symbol's funding rate until :meth:`set_funding_rate` or a ticker's ``fundingRate``.

    Attributes
    ----------
    private : PrivateChannel
        The ``/v5/private`` channel.
    partial_fills : int
        A user's order fills in that many executions (1 = one); each is pushed on its own.
    creates : int
        Accepted ``/v5/order/create`` calls.
    market_ms : int or None
        The market clock (ms): the latest ``ts_ms`` seen; None = not set (the server's clock is used).
    invalid_key_http_status : int
        HTTP status of the ``10003`` answer to an unknown key (200; 401 makes pybit raise
        ``FailedRequestError(401)`` as some real answers do, WIRE.md §3.2).
    """

    def __init__(
        self,
        fake: FakeBybit,
        *,
        api_key: str = "key",
        api_secret: str = "secret",
        balance_usdt: float = 10_000.0,
        taker_fee_rate: float = 0.00055,
        maker_fee_rate: float = 0.0002,
        leverage: float = 10.0,
        funding_rate: float = 0.0001,
    ) -> None:
        self.fake = fake
        self.api_key = api_key
        self.api_secret = api_secret
        self.taker_fee_rate = _dec(taker_fee_rate)
        self.maker_fee_rate = _dec(maker_fee_rate)
        self.default_leverage = _dec(leverage)
        self.default_funding_rate = _dec(funding_rate)
        self.partial_fills = 1
        self.creates = 0
        self.market_ms: int | None = None
        self.invalid_key_http_status = 200
        self.private = PrivateChannel(self, fake.ack_delay_s)
        self._balance = _dec(balance_usdt)
        self._cum_realised = _ZERO
        self._orders: dict[str, _Order] = {}
        self._link_ids: dict[str, str] = {}
        self._executions: list[dict[str, Any]] = []
        self._positions: dict[str, _Position] = {}
        self._markets: dict[str, _Market] = {}
        self._faults: list[TradingFault] = []
        self._seq = 1_000_000
        routes: dict[tuple[str, str], Callable[[web.Request, dict[str, Any]], Awaitable[Any]]] = {
            ("POST", "/v5/order/create"): self._create,
            ("POST", "/v5/order/amend"): self._amend,
            ("POST", "/v5/order/cancel"): self._cancel,
            ("GET", "/v5/order/realtime"): self._realtime,
            ("GET", "/v5/order/history"): self._history,
            ("GET", "/v5/execution/list"): self._execution_list,
            ("GET", "/v5/position/list"): self._position_list,
            ("GET", "/v5/account/wallet-balance"): self._wallet_balance,
            ("POST", "/v5/position/set-leverage"): self._set_leverage,
            ("POST", "/v5/position/trading-stop"): self._trading_stop,
        }
        for key, fn in routes.items():
            fake.rest_routes[key] = self._signed(fn)
        fake.ws_channels[PRIVATE] = self.private
        fake.public.listeners.append(self._on_public)

    # --- introspection ------------------------------------------------------------------------------

    @property
    def orders(self) -> dict[str, dict[str, Any]]:
        """Every order, as Bybit's REST order dict, by ``orderId`` (in creation order)."""
        return {oid: self._order_dict(o) for oid, o in self._orders.items()}

    @property
    def executions(self) -> list[dict[str, Any]]:
        """Every execution (trades and funding), as Bybit's REST dict, oldest first."""
        return [dict(e) for e in self._executions]

    @property
    def positions(self) -> dict[str, dict[str, Any]]:
        """The position of every symbol the fake traded or was asked about (orders, leverage, TP/SL,
        position queries by symbol), as Bybit's REST dict (``avgPrice``), by symbol (flat: size "0")."""
        return {s: self._position_dict(p) for s, p in self._positions.items()}

    def wallet(self) -> dict[str, Any]:
        """The unified account as ``/v5/account/wallet-balance`` lists it (one dict with a USDT ``coin``)."""
        return self._wallet_dict()

    def market(self, symbol: str) -> dict[str, str | None]:
        """What the engine knows of ``symbol``'s market: ``last``, ``mark``, ``bid``, ``ask``, ``funding_rate``."""
        m = self._market(symbol)
        return {
            "last": _opt(m.last), "mark": _opt(m.mark_price), "bid": _opt(m.bid), "ask": _opt(m.ask),
            "funding_rate": _num(m.funding_rate),
        }  # fmt: skip

    # --- scripting ----------------------------------------------------------------------------------

    def set_price(
        self,
        symbol: str,
        last: float | str,
        *,
        mark: float | str | None = None,
        ts_ms: int | None = None,
        bid: float | str | None = None,
        ask: float | str | None = None,
    ) -> None:
        """The market of ``symbol`` moved: fill what it reaches and trigger TP/SL/trailing stops.

        Parameters
        ----------
        symbol : str
            An instrument of ``fake.instruments``.
        last : float or str
            The last traded price, USDT.
        mark : float or str, optional
            The mark price (unrealised P&L, funding); None = the last price.
        ts_ms : int, optional
            Moves the market clock to this time (ms); crossing 00:00/08:00/16:00 UTC with positions
            open charges funding first (at the mark price known before this move).
        bid, ask : float or str, optional
            The best bid/ask (market orders fill there); None = not known (they fill at ``last``).

        Raises
        ------
        KeyError
            If ``symbol`` is not an instrument of the fake.
        """
        self._inst(symbol, strict=True)
        self._advance_clock(ts_ms)
        m = self._market(symbol)
        m.last, m.mark = _dec(last), _dec_or_none(mark)
        m.bid, m.ask = _dec_or_none(bid), _dec_or_none(ask)
        self._match(symbol)

    def set_funding_rate(self, symbol: str, rate: float | str) -> None:
        """Set ``symbol``'s funding rate (a fraction per 8 h: 0.0001 = 0.01 %)."""
        self._inst(symbol, strict=True)
        self._market(symbol).funding_rate = _dec(rate)

    def open_position_outside(
        self,
        symbol: str,
        side: Literal["Buy", "Sell"],
        qty: float | str,
        price: float | str,
        *,
        take_profit: float | str | None = None,
        stop_loss: float | str | None = None,
    ) -> str:
        """A position opened elsewhere (the Bybit app): a filled market order and its execution at
        ``price`` (taker fee), TP/SL set on the position, all pushed on the private socket.

        Returns
        -------
        str
            The ``orderId`` of that order.
        """
        inst = self._inst(symbol, strict=True)
        if side not in ("Buy", "Sell"):
            raise ValueError(f"expected side Buy or Sell, was {side!r}")
        now = self._now()
        p = _dec(price)
        o = _Order(
            order_id=str(uuid.uuid4()), link_id="", symbol=symbol, side=side, order_type="Market", qty=_dec(qty),
            price=self._protection_price(inst, side, p), tif="IOC", reduce_only=False,
            take_profit=_dec_or_none(take_profit), stop_loss=_dec_or_none(stop_loss), created=now,
            last_on_created=inst.price(p), updated=now, processed=True,
        )  # fmt: skip
        self._orders[o.order_id] = o
        self._fill(o, o.qty, p, maker=False, dup=self._take_fill_faults())
        return o.order_id

    def fault(self, kind: FaultKind | str, times: int | None = 1, **kw: Any) -> None:
        """Script a trading fault for the next ``times`` occasions (queued behind earlier ones of its kind).

        Parameters
        ----------
        kind : str
            - ``"reject"``: the next ``/v5/order/create`` calls (signed correctly) are answered with
              ``ret_code``/``ret_msg`` (default 110007 "ab not enough for new order"); no order is made.
            - ``"clock_skew"``: the server's clock runs ``skew_ms`` (default 10 000; negative: behind)
              ahead for the next ``times`` REST requests of any path (None: until :meth:`clear_skew`):
              signed requests outside the window get 10002 and ``/v5/market/time`` answers the skewed
              clock.
            - ``"timeout_after_accept"``: the next accepted request to ``path`` (default
              ``/v5/order/create``; any signed POST path works) is processed at once (fills go out on
              the private socket) but answered only after ``delay_s`` (default 2.0) seconds.
            - ``"lost_after_accept"``: the same, but the HTTP connection is aborted, with no answer.
            - ``"drop_private_during_fill"``: on the next fill (the execution(s) of one order: a
              user's order, a TP/SL/trailing close, a position opened outside) every
              private connection is dropped (``mode`` "close" or "abort") before the fill's
              order/execution/position/wallet messages: they are lost for those connections.
            - ``"duplicate_execution"``: every execution message of the next fill is pushed twice
              (the very same message: same ``id`` and ``execId``).
        times : int or None
            How many occasions; None only for ``clock_skew``.
        **kw
            The kind's arguments above.

        Raises
        ------
        ValueError
            On an unknown ``kind``, an unknown argument or ``times`` < 1.
        """
        if kind not in _FAULT_KW:
            raise ValueError(f"expected a fault kind of {sorted(_FAULT_KW)}, was {kind!r}")
        unknown = set(kw) - set(_FAULT_KW[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes {sorted(_FAULT_KW[kind])}, not {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError(f"expected times >= 1 (or None), was {times}")
        args = {**_FAULT_KW[kind], **kw}
        if kind == "clock_skew":
            self.fake.set_clock_skew(int(args["skew_ms"]), times)
            return
        if times is None:
            raise ValueError(f"fault {kind!r} needs a count (times)")
        if kind == "drop_private_during_fill" and args["mode"] not in ("close", "abort"):
            raise ValueError(f"expected mode close or abort, was {args['mode']!r}")
        self._faults.append(TradingFault(kind, times, args))

    def clear_skew(self) -> None:
        """Put the server's clock back (end a ``clock_skew`` fault)."""
        self.fake.set_clock_skew(0)

    def clear_faults(self) -> None:
        """Forget every scripted trading fault (and the clock skew)."""
        self._faults.clear()
        self.clear_skew()

    def _take(self, kind: str, path: str | None = None) -> TradingFault | None:
        for f in self._faults:
            if f.kind == kind and (path is None or f.kw.get("path") == path):
                assert f.times is not None
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                return f
        return None

    # --- auth ---------------------------------------------------------------------------------------

    def _signed(self, fn: Callable[[web.Request, dict[str, Any]], Awaitable[Any]]) -> RestHandler:
        async def handler(request: web.Request, query: dict[str, str]) -> Any:
            body = await request.read() if request.method == "POST" else b""
            payload = body if request.method == "POST" else request.rel_url.raw_query_string.encode()
            denied = self._check_rest_auth(request, payload)
            if denied is not None:
                return denied
            if request.method == "POST":
                try:
                    params = json.loads(body or b"{}")
                except ValueError:
                    raise BybitError(10001, "params error: the body is not JSON") from None
                if not isinstance(params, dict):
                    raise BybitError(10001, "params error: the body is not a JSON object")
            else:
                params = dict(query)
            return await fn(request, params)

        return handler

    def _check_rest_auth(self, request: web.Request, payload: bytes) -> web.Response | None:
        h = request.headers
        key, sign, ts = h.get("X-BAPI-API-KEY"), h.get("X-BAPI-SIGN"), h.get("X-BAPI-TIMESTAMP")
        if not key or not sign or not ts:
            return web.Response(status=401, text="401 Unauthorized: missing X-BAPI-API-KEY/SIGN/TIMESTAMP")
        if key != self.api_key:
            if self.invalid_key_http_status != 200:
                return web.Response(status=self.invalid_key_http_status, text="API key is invalid.")
            raise BybitError(10003, "API key is invalid.")
        window = h.get("X-BAPI-RECV-WINDOW", "5000")
        server = request.get(NOW_MS, self.fake.clock_ms())
        try:
            ts_ms, window_ms = int(ts), int(window)
        except ValueError:
            raise BybitError(10001, "params error: X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW must be integers") from None
        if not server - window_ms <= ts_ms < server + 1000:
            raise BybitError(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts_ms}],server_timestamp[{server}],recv_window[{window_ms}]",
            )
        head = f"{ts}{key}{window}".encode()
        good = [self._hmac(head + payload)]
        if request.method == "GET":  # requests may have re-quoted the URL; the client signed it unquoted
            good.append(self._hmac(head + request.query_string.encode()))
        if not any(hmac.compare_digest(sign.lower(), g) for g in good):
            origin = (head + payload).decode("utf-8", "replace")
            raise BybitError(10004, f"error sign! origin_string[{origin}]")
        return None

    def _hmac(self, msg: bytes) -> str:
        return hmac.new(self.api_secret.encode(), msg, hashlib.sha256).hexdigest()

    def check_ws_auth(self, args: Any) -> bool:
        """True when ``args`` of a private ``auth`` are ``[api_key, expires, hex HMAC of "GET/realtime"+expires]``
        with ``expires`` (ms) later than the server's clock."""
        if not isinstance(args, list) or len(args) != 3:
            return False
        key, expires, sign = args
        try:
            exp = int(expires)
        except (TypeError, ValueError):
            return False
        if key != self.api_key or exp <= self.fake.clock_ms():
            return False
        good = self._hmac(f"GET/realtime{expires}".encode())
        return isinstance(sign, str) and hmac.compare_digest(sign.lower(), good)

    # --- REST: orders -------------------------------------------------------------------------------

    async def _create(self, request: web.Request, q: dict[str, Any]) -> Any:
        f = self._take("reject")
        if f is not None:
            raise BybitError(int(f.kw["ret_code"]), str(f.kw["ret_msg"]))
        _linear(q)
        inst = self._inst(_str(q, "symbol"))
        side = _str(q, "side")
        if side not in ("Buy", "Sell"):
            raise BybitError(10001, f"params error: side must be Buy or Sell, was {side!r}")
        order_type = _str(q, "orderType")
        if order_type not in ("Market", "Limit"):
            raise BybitError(10001, f"params error: orderType must be Market or Limit, was {order_type!r}")
        qty = _param_dec(q, "qty", required=True)
        assert qty is not None
        self._check_qty(inst, qty, market=order_type == "Market")
        _check_position_idx(q)
        link = str(q.get("orderLinkId") or "")
        if link and not _LINK_ID.match(link):
            raise BybitError(10001, "params error: orderLinkId must be 1 to 36 characters of [A-Za-z0-9-_]")
        if link in self._link_ids:
            raise BybitError(110072, "OrderLinkedID is duplicate")
        tif = str(q.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC"))
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitError(10001, f"params error: timeInForce invalid: {tif}")
        reduce_only = _bool(q.get("reduceOnly", False))
        tp = _nonzero(_param_dec(q, "takeProfit"))
        sl = _nonzero(_param_dec(q, "stopLoss"))
        pos = self._pos(inst.symbol)
        if reduce_only:
            if tp is not None or sl is not None:
                raise BybitError(10001, "params error: takeProfit/stopLoss cannot be set on a reduce-only order")
            if pos.size == 0 or pos.side == side:
                raise BybitError(110017, "Reduce-only rule not satisfied")
        if (tp is not None or sl is not None) and str(q.get("tpslMode") or "Full") != "Full":
            raise BybitError(10001, "params error: the fake serves tpslMode Full only")
        for name in ("tpTriggerBy", "slTriggerBy"):
            if q.get(name) not in (None, "", "LastPrice"):
                raise BybitError(
                    10001, f"params error: the fake triggers TP/SL on LastPrice only, {name} was {q[name]}"
                )
        m = self._market(inst.symbol)
        taker = self._taker_price(inst.symbol, side)
        if order_type == "Limit":
            limit = _param_dec(q, "price", required=True)
            assert limit is not None
            self._check_price(inst, limit, "price")
            ref = limit
        else:
            if taker is None:
                raise BybitError(10001, f"no market price for {inst.symbol} in the fake")
            ref = taker
        self._check_tpsl(inst, side, tp, sl, m.last if m.last is not None and order_type == "Market" else ref)
        if not reduce_only and qty * ref < inst.min_notional:
            raise BybitError(110094, f"Order does not meet minimum order value {_num(inst.min_notional)}USDT")
        if reduce_only:
            qty = min(qty, pos.size)  # Bybit trims a reduce-only order to the position
        need = self._opening_qty(pos, side, qty) * ref / pos.leverage
        if need > 0 and need > self._available():
            raise BybitError(110007, "ab not enough for new order")
        now = self._now()
        o = _Order(
            order_id=str(uuid.uuid4()), link_id=link, symbol=inst.symbol, side=side, order_type=order_type,
            qty=qty, price=ref if order_type == "Limit" else self._protection_price(inst, side, ref), tif=tif,
            reduce_only=reduce_only, take_profit=tp, stop_loss=sl, created=now,
            last_on_created=inst.price(m.last) if m.last is not None else "", updated=now,
        )  # fmt: skip
        self._orders[o.order_id] = o
        if link:
            self._link_ids[link] = o.order_id
        self.creates += 1
        result = {"orderId": o.order_id, "orderLinkId": link}
        return await self._answer_after_accept(request, result, lambda: self._process(o))

    async def _answer_after_accept(self, request: web.Request, result: Any, process: Callable[[], None]) -> Any:
        """Process now and answer late/never when a fault says so; else answer, then process."""
        late = self._take("timeout_after_accept", request.path)
        lost = None if late is not None else self._take("lost_after_accept", request.path)
        if late is None and lost is None:
            asyncio.get_running_loop().call_soon(process)
            return result
        process()
        if late is not None:
            request[ANSWER] = "timeout_after_accept"
            await asyncio.sleep(float(late.kw["delay_s"]))
            return result
        request[ANSWER] = "lost_after_accept"
        if request.transport is not None:
            request.transport.abort()  # the handler is cancelled when aiohttp sees the connection go
        await asyncio.sleep(30)
        return web.Response(status=500, text="lost")  # not reached while aiohttp cancels lost handlers

    async def _amend(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        inst = self._inst(_str(q, "symbol"))
        o = self._find_order(inst.symbol, q)
        if o.status not in _OPEN:
            raise BybitError(110001, "Order does not exist")
        qty = _param_dec(q, "qty")
        price = _param_dec(q, "price")
        tp = _param_dec(q, "takeProfit")
        sl = _param_dec(q, "stopLoss")
        if qty is not None:
            self._check_qty(inst, qty, market=o.order_type == "Market")
            if qty <= o.cum_qty:
                raise BybitError(
                    10001, f"params error: qty {inst.qty(qty)} is not above the filled {inst.qty(o.cum_qty)}"
                )
        if price is not None:
            if o.order_type != "Limit":
                raise BybitError(10001, "params error: the price of a market order cannot be amended")
            self._check_price(inst, price, "price")
        new_tp = o.take_profit if tp is None else _nonzero(tp)
        new_sl = o.stop_loss if sl is None else _nonzero(sl)
        self._check_tpsl(inst, o.side, new_tp if tp is not None else None, new_sl if sl is not None else None,
                         price if price is not None else o.price)  # fmt: skip
        changed = (
            (qty is not None and qty != o.qty)
            or (price is not None and price != o.price)
            or new_tp != o.take_profit
            or new_sl != o.stop_loss
        )
        if not changed:
            raise BybitError(10001, "The order remains unchanged as the parameters entered match the existing ones.")
        o.qty = o.qty if qty is None else qty
        o.price = o.price if price is None else price
        o.take_profit, o.stop_loss = new_tp, new_sl
        o.updated = self._now()
        result = {"orderId": o.order_id, "orderLinkId": o.link_id}

        def process() -> None:
            self._push_order(o)
            if o.status in _OPEN:
                self._match(o.symbol)

        return await self._answer_after_accept(request, result, process)

    async def _cancel(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        inst = self._inst(_str(q, "symbol"))
        o = self._find_order(inst.symbol, q)
        if o.status not in _OPEN:
            raise BybitError(110001, "Order does not exist")
        o.status, o.cancel_type, o.updated = "Cancelled", "CancelByUser", self._now()
        o.processed = True
        result = {"orderId": o.order_id, "orderLinkId": o.link_id}
        return await self._answer_after_accept(request, result, lambda: self._push_order(o))

    def _find_order(self, symbol: str, q: Mapping[str, Any]) -> _Order:
        oid = str(q.get("orderId") or "")
        link = str(q.get("orderLinkId") or "")
        if not oid and not link:
            raise BybitError(10001, "params error: orderId or orderLinkId is required")
        o = self._orders.get(oid) if oid else self._orders.get(self._link_ids.get(link, ""))
        if o is None or o.symbol != symbol:
            raise BybitError(110001, "Order does not exist")
        return o

    async def _realtime(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        rows = self._orders_of(q)
        if not q.get("orderId") and not q.get("orderLinkId"):
            open_only = _int_param(q, "openOnly", 0)
            if open_only == 0:
                rows = [o for o in rows if o.status in _OPEN]
            else:
                rows = [o for o in rows if o.status not in _OPEN][:500]
        return self._page(q, [self._order_dict(o) for o in rows], default=20, most=50)

    async def _history(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        rows = self._orders_of(q, need_filter=False)
        if q.get("orderStatus"):
            rows = [o for o in rows if o.status == q["orderStatus"]]
        start, end = _int_param(q, "startTime", None), _int_param(q, "endTime", None)
        rows = [o for o in rows if (start is None or o.created >= start) and (end is None or o.created <= end)]
        return self._page(q, [self._order_dict(o) for o in rows], default=20, most=50)

    def _orders_of(self, q: Mapping[str, Any], *, need_filter: bool = True) -> list[_Order]:
        symbol = q.get("symbol")
        if need_filter and not (symbol or q.get("settleCoin") or q.get("baseCoin")):
            raise BybitError(10001, "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin")
        if q.get("settleCoin") not in (None, "", "USDT"):
            return []
        rows = list(reversed(self._orders.values()))  # newest first
        if symbol:
            rows = [o for o in rows if o.symbol == symbol]
        if q.get("baseCoin"):
            rows = [o for o in rows if o.symbol.removesuffix("USDT") == q["baseCoin"]]
        if q.get("orderId"):
            rows = [o for o in rows if o.order_id == q["orderId"]]
        if q.get("orderLinkId"):
            rows = [o for o in rows if o.link_id == q["orderLinkId"]]
        return sorted(rows, key=lambda o: -o.created)

    async def _execution_list(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        rows = list(reversed(self._executions))
        for key in ("symbol", "orderId", "orderLinkId", "execType"):
            if q.get(key):
                rows = [e for e in rows if e[key] == q[key]]
        start, end = _int_param(q, "startTime", None), _int_param(q, "endTime", None)
        if start is not None and end is not None and end - start > 7 * 86_400_000:
            raise BybitError(10001, "params error: the time window between startTime and endTime is at most 7 days")
        rows = [
            e for e in rows
            if (start is None or int(e["execTime"]) >= start) and (end is None or int(e["execTime"]) <= end)
        ]  # fmt: skip
        rows.sort(key=lambda e: -int(e["execTime"]))  # stable: newest first
        return self._page(q, rows, default=50, most=100)

    def _page(self, q: Mapping[str, Any], rows: list[dict[str, Any]], *, default: int, most: int) -> dict[str, Any]:
        limit = _int_param(q, "limit", default)
        if not 1 <= limit <= most:
            raise BybitError(10001, f"params error: limit must be in [1, {most}], was {limit}")
        try:
            offset = int(q.get("cursor") or 0)
        except ValueError:
            raise BybitError(10001, f"params error: cursor invalid: {q.get('cursor')}") from None
        page = rows[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(rows) else ""
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    # --- REST: positions and account ------------------------------------------------------------------

    async def _position_list(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        if q.get("symbol"):
            self._inst(str(q["symbol"]))
            rows = [self._position_dict(self._pos(str(q["symbol"])))]
        elif q.get("settleCoin"):
            rows = [
                self._position_dict(p)
                for s in self._instruments()
                if (p := self._pos(s)).size > 0 and q["settleCoin"] == "USDT"
            ]
        else:
            raise BybitError(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        return self._page(q, rows, default=20, most=200)

    async def _wallet_balance(self, request: web.Request, q: dict[str, Any]) -> Any:
        if q.get("accountType") != "UNIFIED":
            raise BybitError(10001, "accountType only support UNIFIED.")
        wallet = self._wallet_dict()
        coins = {c.strip() for c in str(q.get("coin") or "").split(",") if c.strip()}
        if coins:
            wallet["coin"] = [c for c in wallet["coin"] if c["coin"] in coins]
        return {"list": [wallet]}

    async def _set_leverage(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        inst = self._inst(_str(q, "symbol"))
        buy, sell = _param_dec(q, "buyLeverage", required=True), _param_dec(q, "sellLeverage", required=True)
        assert buy is not None and sell is not None
        if buy != sell:
            raise BybitError(10001, "params error: buyLeverage must equal sellLeverage in one-way mode")
        if not inst.min_leverage <= buy <= inst.max_leverage or buy % inst.leverage_step:
            raise BybitError(
                10001,
                f"params error: leverage {_num(buy)} invalid, expected [{_num(inst.min_leverage)}, "
                f"{_num(inst.max_leverage)}] in steps of {_num(inst.leverage_step)}",
            )
        pos = self._pos(inst.symbol)
        if buy == pos.leverage:
            raise BybitError(110043, "leverage not modified")
        if pos.size > 0:
            more = pos.size * pos.entry / buy - pos.size * pos.entry / pos.leverage
            if more > self._available():
                raise BybitError(110012, "Insufficient available balance")
        pos.leverage = buy

        def process() -> None:
            pos.updated = self._now()
            self._push_position(inst.symbol)
            self._push_wallet()

        return await self._answer_after_accept(request, {}, process)

    async def _trading_stop(self, request: web.Request, q: dict[str, Any]) -> Any:
        _linear(q)
        inst = self._inst(_str(q, "symbol"))
        if str(q.get("tpslMode") or "") != "Full":
            raise BybitError(10001, "params error: tpslMode is required; the fake serves Full only")
        _check_position_idx(q)
        for name in ("tpTriggerBy", "slTriggerBy"):
            if q.get(name) not in (None, "", "LastPrice"):
                raise BybitError(
                    10001, f"params error: the fake triggers TP/SL on LastPrice only, {name} was {q[name]}"
                )
        pos = self._pos(inst.symbol)
        if pos.size == 0:
            raise BybitError(10001, "can not set tp/sl/ts for zero position")
        tp, sl = _param_dec(q, "takeProfit"), _param_dec(q, "stopLoss")
        trail, active = _param_dec(q, "trailingStop"), _param_dec(q, "activePrice")
        last = self._market(inst.symbol).last or pos.entry
        self._check_tpsl(inst, pos.side, _nonzero(tp), _nonzero(sl), last)
        if trail is not None and trail < 0:
            raise BybitError(10001, "params error: trailingStop must not be negative")
        if trail:
            self._check_price(inst, trail, "trailingStop", bounds=False)
        if active:
            self._check_price(inst, active, "activePrice")
        before = (pos.take_profit, pos.stop_loss, pos.trailing, pos.active_price)
        if tp is not None:
            pos.take_profit = _nonzero(tp)
        if sl is not None:
            pos.stop_loss = _nonzero(sl)
        if trail is not None:
            pos.trailing = _nonzero(trail)
            pos.active_price = _nonzero(active) if pos.trailing else None
            pos.trail_active = False
        elif active is not None and pos.trailing:
            pos.active_price, pos.trail_active = _nonzero(active), False
        if (pos.take_profit, pos.stop_loss, pos.trailing, pos.active_price) == before:
            raise BybitError(34040, "not modified")
        pos.updated = self._now()

        def process() -> None:
            self._push_position(inst.symbol)
            self._match(inst.symbol)

        return await self._answer_after_accept(request, {}, process)

    # --- validation -----------------------------------------------------------------------------------

    def _check_qty(self, inst: _Instrument, qty: Decimal, *, market: bool) -> None:
        s = inst.symbol
        if qty <= 0:
            raise BybitError(10001, f"params error: qty must be positive, was {_num(qty)}")
        if qty % inst.qty_step:
            raise BybitError(
                10001, f"params error: qty {_num(qty)} is not a multiple of qtyStep {inst.qty_step} of {s}"
            )
        if qty < inst.min_qty:
            raise BybitError(10001, f"params error: qty {_num(qty)} is below minOrderQty {inst.min_qty} of {s}")
        most, name = (inst.max_mkt_qty, "maxMktOrderQty") if market else (inst.max_qty, "maxOrderQty")
        if qty > most:
            raise BybitError(10001, f"params error: qty {_num(qty)} is above {name} {most} of {s}")

    def _check_price(self, inst: _Instrument, price: Decimal, name: str, *, bounds: bool = True) -> None:
        if price <= 0:
            raise BybitError(10001, f"params error: {name} must be positive, was {_num(price)}")
        if price % inst.tick:
            raise BybitError(
                10001, f"params error: {name} {_num(price)} is not a multiple of tickSize {inst.tick} of {inst.symbol}"
            )
        if bounds and not inst.min_price <= price <= inst.max_price:
            raise BybitError(
                10001, f"params error: {name} {_num(price)} is outside [minPrice, maxPrice] of {inst.symbol}"
            )

    def _check_tpsl(
        self, inst: _Instrument, side: str, tp: Decimal | None, sl: Decimal | None, base: Decimal | None
    ) -> None:
        """TP/SL on the tick grid and on the right side of ``base`` for a position of ``side``."""
        for name, v in (("takeProfit", tp), ("stopLoss", sl)):
            if v is not None:
                self._check_price(inst, v, name)
        if base is None:
            return
        b = inst.price(base)
        if tp is not None and (tp <= base if side == "Buy" else tp >= base):
            word = "higher" if side == "Buy" else "lower"
            raise BybitError(
                10001,
                f"params error: TakeProfit:{inst.price(tp)} set for {side} position should be {word} "
                f"than base_price:{b}",
            )
        if sl is not None and (sl >= base if side == "Buy" else sl <= base):
            word = "lower" if side == "Buy" else "higher"
            raise BybitError(
                10001,
                f"params error: StopLoss:{inst.price(sl)} set for {side} position should be {word} than base_price:{b}",
            )

    # --- the engine -----------------------------------------------------------------------------------

    def _instruments(self) -> list[str]:
        return [str(i["symbol"]) for i in self.fake.instruments if "symbol" in i]

    def _inst(self, symbol: str, *, strict: bool = False) -> _Instrument:
        for info in self.fake.instruments:
            if info.get("symbol") == symbol:
                return _Instrument.of(info)
        if strict:
            raise KeyError(f"{symbol!r} is not an instrument of the fake")
        raise BybitError(10001, f"params error: symbol invalid: {symbol!r} is not an instrument of the fake")

    def _market(self, symbol: str) -> _Market:
        m = self._markets.get(symbol)
        if m is None:
            m = self._markets[symbol] = _Market(funding_rate=self.default_funding_rate)
        return m

    def _pos(self, symbol: str) -> _Position:
        p = self._positions.get(symbol)
        if p is None:
            now = self._now()
            p = self._positions[symbol] = _Position(symbol, self.default_leverage, created=now, updated=now)
        return p

    def _now(self) -> int:
        return self.market_ms if self.market_ms is not None else self.fake.clock_ms()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _taker_price(self, symbol: str, side: str) -> Decimal | None:
        m = self._market(symbol)
        best = m.ask if side == "Buy" else m.bid
        return best if best is not None else m.last

    def _protection_price(self, inst: _Instrument, side: str, ref: Decimal) -> Decimal:
        ratio = inst.price_limit_ratio
        return inst.to_tick(ref * (1 + ratio if side == "Buy" else 1 - ratio))

    @staticmethod
    def _opening_qty(pos: _Position, side: str, qty: Decimal) -> Decimal:
        """The part of an order of ``qty`` on ``side`` that opens or grows exposure."""
        if pos.size == 0 or pos.side == side:
            return qty
        return max(_ZERO, qty - pos.size)

    def _upl(self, p: _Position) -> Decimal:
        if p.size == 0:
            return _ZERO
        mark = self._market(p.symbol).mark_price or p.entry
        return (mark - p.entry) * p.size * p.direction

    def _order_im(self) -> Decimal:
        total = _ZERO
        for o in self._orders.values():
            if o.status in _OPEN and o.order_type == "Limit" and not o.reduce_only:
                pos = self._pos(o.symbol)
                total += self._opening_qty(pos, o.side, o.leaves) * o.price / pos.leverage
        return total

    def _position_im(self) -> Decimal:
        return sum((p.size * p.entry / p.leverage for p in self._positions.values()), _ZERO)

    def _available(self) -> Decimal:
        upl = sum((self._upl(p) for p in self._positions.values()), _ZERO)
        return self._balance + upl - self._position_im() - self._order_im()

    def _advance_clock(self, ts_ms: int | None) -> None:
        if ts_ms is None:
            return
        ts_ms = int(ts_ms)
        prev = self.market_ms
        if prev is not None and ts_ms <= prev:
            return
        self.market_ms = ts_ms
        if prev is None:
            return
        boundary = (prev // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
        while boundary <= ts_ms:
            self._charge_funding(boundary)
            boundary += FUNDING_INTERVAL_MS

    def _on_public(self, msg: dict[str, Any]) -> None:
        """A frame sent on the public channel: the market of its symbol moved."""
        topic = str(msg.get("topic", ""))
        symbol = topic.rsplit(".", 1)[-1]
        if symbol not in self._instruments():
            return
        ts = msg.get("ts") if isinstance(msg.get("ts"), int) else None
        m = self._market(symbol)
        if topic.startswith("tickers."):
            state = self.fake.public.tickers.get(topic, {})
            self._advance_clock(ts)
            for key, attr in (("lastPrice", "last"), ("markPrice", "mark"), ("bid1Price", "bid"), ("ask1Price", "ask")):
                if _dec_or_none(state.get(key) or None) is not None:
                    setattr(m, attr, _dec(state[key]))
            if _dec_or_none(state.get("fundingRate") or None) is not None:
                m.funding_rate = _dec(state["fundingRate"])
            self._match(symbol)
        elif topic.startswith("publicTrade.") and isinstance(msg.get("data"), list):
            for trade in msg["data"]:
                if not isinstance(trade, dict) or _dec_or_none(trade.get("p") or None) is None:
                    continue
                t = trade.get("T")
                self._advance_clock(t if isinstance(t, int) else ts)
                m.last = _dec(trade["p"])
                self._match(symbol)
        elif topic.startswith("orderbook."):
            book = self.fake.public.books.get(topic)
            if book is None:
                return
            self._advance_clock(ts)
            bid, ask = book.best()
            m.bid, m.ask = _dec_or_none(bid), _dec_or_none(ask)
            self._match(symbol)

    def _match(self, symbol: str) -> None:
        """Fill what the market of ``symbol`` reaches: unprocessed orders, resting limits, TP/SL/trailing."""
        for o in [o for o in self._orders.values() if o.symbol == symbol and not o.processed]:
            self._process(o)
        m = self._market(symbol)
        if m.last is None:
            return
        last = m.last
        for o in [o for o in self._orders.values() if o.symbol == symbol and o.processed and o.status in _OPEN]:
            if o.order_type == "Limit" and (last <= o.price if o.side == "Buy" else last >= o.price):
                self._fill_order(o, o.price, maker=True)
        self._check_triggers(symbol, last)

    def _process(self, o: _Order) -> None:
        """Take an accepted order to the book: fill a market order, or rest/fill/cancel a limit."""
        if o.processed:
            return
        o.processed = True
        if o.status not in _OPEN:
            return
        if o.reduce_only:
            pos = self._pos(o.symbol)
            room = pos.size if pos.size > 0 and pos.side != o.side else _ZERO
            if room < o.qty - o.cum_qty:
                if room == 0:
                    o.status, o.cancel_type, o.updated = "Cancelled", "CancelByReduceOnly", self._now()
                    self._push_order(o)
                    return
                o.qty = o.cum_qty + room
        taker = self._taker_price(o.symbol, o.side)
        if o.order_type == "Market":
            if taker is None:  # cannot happen: create refuses a market order without a price
                o.status, o.cancel_type, o.updated = "Cancelled", "CancelByCannotMatch", self._now()
                self._push_order(o)
                return
            self._fill_order(o, taker, maker=False)
            return
        marketable = taker is not None and (taker <= o.price if o.side == "Buy" else taker >= o.price)
        if marketable and o.tif == "PostOnly":
            o.status, o.cancel_type, o.updated = "Cancelled", "CancelByPostOnly", self._now()
            o.reject_reason = "EC_PostOnlyWillTakeLiquidity"
            self._push_order(o)
        elif marketable:
            assert taker is not None
            self._fill_order(o, taker, maker=False)
        elif o.tif in ("IOC", "FOK"):
            o.status, o.cancel_type, o.updated = "Cancelled", "CancelByCannotMatch", self._now()
            self._push_order(o)
        else:
            self._push_order(o)  # resting: New

    def _fill_order(self, o: _Order, price: Decimal, *, maker: bool) -> None:
        """Fill what is left of ``o`` at ``price`` in :attr:`partial_fills` executions."""
        inst = self._inst(o.symbol)
        left = o.qty - o.cum_qty
        parts = max(1, int(self.partial_fills)) if o.create_type == "CreateByUser" else 1
        chunk = (left / parts / inst.qty_step).to_integral_value(rounding=ROUND_DOWN) * inst.qty_step
        sizes = [chunk] * (parts - 1) if chunk > 0 else []
        sizes.append(left - sum(sizes, _ZERO))
        dup = self._take_fill_faults()
        for q in sizes:
            if o.status not in _OPEN:
                break
            if o.reduce_only:  # a TP/SL or reduce-only order never grows nor flips the position
                pos = self._pos(o.symbol)
                q = min(q, pos.size if pos.side != o.side else _ZERO)
                if q <= 0:
                    break
            self._fill(o, q, price, maker=maker, dup=dup)

    def _take_fill_faults(self) -> bool:
        """A fill (one order's executions) starts: drop the private sockets if a fault says so;
        return whether its execution messages go out twice."""
        drop = self._take("drop_private_during_fill")
        if drop is not None:
            self.private.drop_soon(drop.kw["mode"])
        return self._take("duplicate_execution") is not None

    def _fill(self, o: _Order, qty: Decimal, price: Decimal, *, maker: bool, dup: bool = False) -> None:
        """One execution of ``qty`` at ``price``: position, wallet, order; then the four pushes."""
        inst = self._inst(o.symbol)
        now = self._now()
        rate = self.maker_fee_rate if maker else self.taker_fee_rate
        value = qty * price
        fee = value * rate
        pos = self._pos(o.symbol)
        closed, pnl = self._apply(pos, o.side, qty, price, now)
        net = pnl - fee
        self._balance += net
        self._cum_realised += net
        pos.cur_realised += net
        pos.cum_realised += net
        if pos.side == o.side and (o.take_profit is not None or o.stop_loss is not None):
            pos.take_profit, pos.stop_loss = o.take_profit, o.stop_loss
        pos.updated, pos.seq = now, self._next_seq()
        o.cum_qty += qty
        o.cum_value += value
        o.cum_fee += fee
        o.closed_pnl += pnl - (fee * closed / qty if qty else _ZERO)
        o.status = "Filled" if o.cum_qty >= o.qty else "PartiallyFilled"
        o.updated = now
        mark = self._market(o.symbol).mark_price or price
        row = {
            "symbol": o.symbol, "orderType": o.order_type, "underlyingPrice": "", "orderLinkId": o.link_id,
            "side": o.side, "indexPrice": "", "orderId": o.order_id, "stopOrderType": o.stop_order_type,
            "leavesQty": inst.qty(o.leaves), "execTime": str(now), "feeCurrency": "USDT", "isMaker": maker,
            "execFee": _num(fee), "feeRate": _num(rate), "execId": str(uuid.uuid4()), "tradeIv": "",
            "blockTradeId": "", "markPrice": inst.price(mark), "execPrice": inst.price(price), "markIv": "",
            "orderQty": inst.qty(o.qty), "orderPrice": inst.price(o.price), "execValue": _num(value),
            "execType": "Trade", "execQty": inst.qty(qty), "closedSize": inst.qty(closed), "extraFees": "",
            "seq": pos.seq, "execPnl": _num(pnl), "createType": o.create_type, "isLeverage": "0", "marketUnit": "",
        }  # fmt: skip
        self._executions.append(row)
        self._push_order(o)
        self.private.push("execution", [{**row, "category": "linear", "extraFees": []}], now, copies=2 if dup else 1)
        self._push_position(o.symbol)
        self._push_wallet()

    def _apply(self, pos: _Position, side: str, qty: Decimal, price: Decimal, now: int) -> tuple[Decimal, Decimal]:
        """Apply a fill to ``pos``; return (closed size, gross realised P&L)."""
        if pos.size == 0 or pos.side == side:
            if pos.size == 0:
                pos.side, pos.entry, pos.cur_realised, pos.created = side, price, _ZERO, now
                pos.trail_active = False
            else:
                pos.entry = (pos.entry * pos.size + price * qty) / (pos.size + qty)
            pos.size += qty
            return _ZERO, _ZERO
        closed = min(qty, pos.size)
        pnl = (price - pos.entry) * closed * pos.direction
        pos.size -= closed
        rest = qty - closed
        if pos.size == 0:
            pos.side, pos.entry = "", _ZERO
            pos.clear_stops()
        if rest > 0:
            pos.side, pos.size, pos.entry, pos.created = side, rest, price, now
        return closed, pnl

    def _check_triggers(self, symbol: str, last: Decimal) -> None:
        pos = self._pos(symbol)
        if pos.size == 0:
            return
        long = pos.side == "Buy"
        hit: tuple[str, str, Decimal] | None = None
        if pos.stop_loss is not None and (last <= pos.stop_loss if long else last >= pos.stop_loss):
            hit = ("StopLoss", "CreateByStopLoss", pos.stop_loss)
        elif pos.take_profit is not None and (last >= pos.take_profit if long else last <= pos.take_profit):
            hit = ("TakeProfit", "CreateByTakeProfit", pos.take_profit)
        elif pos.trailing is not None:
            if not pos.trail_active and (
                pos.active_price is None or (last >= pos.active_price if long else last <= pos.active_price)
            ):
                pos.trail_active, pos.trail_best = True, last
            if pos.trail_active:
                pos.trail_best = max(pos.trail_best, last) if long else min(pos.trail_best, last)
                stop = pos.trail_best - pos.trailing if long else pos.trail_best + pos.trailing
                if last <= stop if long else last >= stop:
                    hit = ("TrailingStop", "CreateByTrailingStop", stop)
        if hit is None:
            return
        stop_type, create_type, trigger = hit
        inst = self._inst(symbol)
        now = self._now()
        side = "Sell" if long else "Buy"
        o = _Order(
            order_id=str(uuid.uuid4()), link_id="", symbol=symbol, side=side, order_type="Market", qty=pos.size,
            price=self._protection_price(inst, side, trigger), tif="IOC", reduce_only=True, take_profit=None,
            stop_loss=None, created=now, last_on_created=inst.price(last), close_on_trigger=True,
            stop_order_type=stop_type, create_type=create_type, trigger_price=trigger, updated=now, processed=True,
        )  # fmt: skip
        self._orders[o.order_id] = o
        self._fill_order(o, trigger, maker=False)

    def _charge_funding(self, boundary_ms: int) -> None:
        for symbol in self._instruments():
            pos = self._positions.get(symbol)
            if pos is None or pos.size == 0:
                continue
            inst = self._inst(symbol)
            m = self._market(symbol)
            mark = m.mark_price or pos.entry
            value = pos.size * mark
            fee = value * m.funding_rate * pos.direction  # > 0: paid
            self._balance -= fee
            self._cum_realised -= fee
            pos.cur_realised -= fee
            pos.cum_realised -= fee
            pos.updated, pos.seq = boundary_ms, self._next_seq()
            row = {
                "symbol": symbol, "orderType": "UNKNOWN", "underlyingPrice": "", "orderLinkId": "", "side": pos.side,
                "indexPrice": "", "orderId": "", "stopOrderType": "", "leavesQty": "0", "execTime": str(boundary_ms),
                "feeCurrency": "USDT", "isMaker": False, "execFee": _num(fee), "feeRate": _num(m.funding_rate),
                "execId": str(uuid.uuid4()), "tradeIv": "", "blockTradeId": "", "markPrice": inst.price(mark),
                "execPrice": inst.price(mark), "markIv": "", "orderQty": "0", "orderPrice": "0",
                "execValue": _num(value), "execType": "Funding", "execQty": inst.qty(pos.size), "closedSize": "0",
                "extraFees": "", "seq": pos.seq, "execPnl": "0", "createType": "", "isLeverage": "0",
                "marketUnit": "",
            }  # fmt: skip
            self._executions.append(row)
            self.private.push("execution", [{**row, "category": "linear", "extraFees": []}], boundary_ms)
            self._push_position(symbol, ts_ms=boundary_ms)
            self._push_wallet(ts_ms=boundary_ms)

    # --- shapes and pushes -----------------------------------------------------------------------------

    def _push_order(self, o: _Order) -> None:
        row = self._order_dict(o)
        row.update(
            category="linear", closedPnl=_num(o.closed_pnl), feeCurrency="", rpiTakerAccess=False, rpiMatchedQty="0"
        )
        self.private.push("order", [row], o.updated or self._now())

    def _push_position(self, symbol: str, *, ts_ms: int | None = None) -> None:
        row = self._position_dict(self._pos(symbol), ws=True)
        self.private.push("position", [row], ts_ms if ts_ms is not None else self._now())

    def _push_wallet(self, *, ts_ms: int | None = None) -> None:
        self.private.push("wallet", [self._wallet_dict()], ts_ms if ts_ms is not None else self._now())

    def _order_dict(self, o: _Order) -> dict[str, Any]:
        inst = self._inst(o.symbol)
        avg = o.cum_value / o.cum_qty if o.cum_qty else _ZERO
        tpsl = o.take_profit is not None or o.stop_loss is not None
        return {
            "orderId": o.order_id, "orderLinkId": o.link_id, "blockTradeId": "", "symbol": o.symbol,
            "price": inst.price(o.price), "qty": inst.qty(o.qty), "side": o.side, "isLeverage": "", "positionIdx": 0,
            "orderStatus": o.status, "createType": o.create_type, "cancelType": o.cancel_type,
            "rejectReason": o.reject_reason, "avgPrice": _num(avg) if o.cum_qty else "0",
            "leavesQty": inst.qty(o.leaves), "leavesValue": _num(o.leaves * o.price), "cumExecQty": inst.qty(o.cum_qty),
            "cumExecValue": _num(o.cum_value), "cumExecFee": _num(o.cum_fee), "timeInForce": o.tif,
            "orderType": o.order_type, "stopOrderType": o.stop_order_type, "orderIv": "",
            "triggerPrice": inst.price(o.trigger_price) if o.trigger_price is not None else "0",
            "takeProfit": inst.price(o.take_profit) if o.take_profit is not None else "",
            "stopLoss": inst.price(o.stop_loss) if o.stop_loss is not None else "",
            "tpTriggerBy": "LastPrice" if o.take_profit is not None else "",
            "slTriggerBy": "LastPrice" if o.stop_loss is not None else "", "triggerDirection": 0,
            "triggerBy": "LastPrice" if o.trigger_price is not None else "",
            "lastPriceOnCreated": o.last_on_created, "reduceOnly": o.reduce_only, "closeOnTrigger": o.close_on_trigger,
            "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpslMode": "Full" if tpsl else "",
            "tpLimitPrice": "", "slLimitPrice": "", "placeType": "", "createdTime": str(o.created),
            "updatedTime": str(o.updated or o.created), "cumFeeDetail": {"USDT": _num(o.cum_fee)} if o.cum_fee else {},
        }  # fmt: skip

    def _position_dict(self, p: _Position, *, ws: bool = False) -> dict[str, Any]:
        inst = self._inst(p.symbol)
        m = self._market(p.symbol)
        mark = m.mark_price
        open_ = p.size > 0
        value = p.size * p.entry
        value_mp = p.size * (mark or p.entry)
        fee = self.taker_fee_rate
        liq = bust = breakeven = _ZERO
        if open_:
            long = p.side == "Buy"
            lev = p.leverage
            liq = p.entry * (1 - 1 / lev + MAINT_MARGIN_RATE) if long else p.entry * (1 + 1 / lev - MAINT_MARGIN_RATE)
            bust = p.entry * (1 - 1 / lev) if long else p.entry * (1 + 1 / lev)
            breakeven = p.entry * (1 + fee) / (1 - fee) if long else p.entry * (1 - fee) / (1 + fee)
        row: dict[str, Any] = {
            "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": p.symbol, "side": p.side,
            "size": inst.qty(p.size), ("entryPrice" if ws else "avgPrice"): _num(p.entry) if open_ else "0",
            "positionValue": _num(value), "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0,
            "adlRankIndicator": 2 if open_ else 0, "leverage": _num(p.leverage),
            "breakEvenPrice": inst.price(breakeven) if open_ else "0", "positionBalance": _num(value / p.leverage),
            "markPrice": inst.price(mark) if mark is not None else "0",
            "liqPrice": inst.price(max(liq, _ZERO)) if open_ else "",
            "bustPrice": inst.price(max(bust, _ZERO)) if open_ else "",
            "positionMM": _num(value * MAINT_MARGIN_RATE), "positionMMByMp": _num(value_mp * MAINT_MARGIN_RATE),
            "positionIM": _num(value / p.leverage), "positionIMByMp": _num(value_mp / p.leverage), "tpslMode": "Full",
            "takeProfit": inst.price(p.take_profit) if p.take_profit is not None else "0",
            "stopLoss": inst.price(p.stop_loss) if p.stop_loss is not None else "0",
            "trailingStop": inst.price(p.trailing) if p.trailing is not None else "0",
            "unrealisedPnl": _num(self._upl(p)), "curRealisedPnl": _num(p.cur_realised),
            "cumRealisedPnl": _num(p.cum_realised), "seq": p.seq, "isReduceOnly": False, "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "", "sessionAvgPrice": "", "createdTime": str(p.created),
            "updatedTime": str(p.updated),
        }  # fmt: skip
        if ws:
            row["category"] = "linear"
        return row

    def _wallet_dict(self) -> dict[str, Any]:
        positions = [p for p in self._positions.values() if p.size > 0]
        upl = sum((self._upl(p) for p in positions), _ZERO)
        pos_im = self._position_im()
        order_im = self._order_im()
        mm = sum((p.size * p.entry * MAINT_MARGIN_RATE for p in positions), _ZERO)
        marks = {p.symbol: self._market(p.symbol).mark_price or p.entry for p in positions}
        im_mp = sum((p.size * marks[p.symbol] / p.leverage for p in positions), _ZERO) + order_im
        mm_mp = sum((p.size * marks[p.symbol] * MAINT_MARGIN_RATE for p in positions), _ZERO)
        equity = self._balance + upl
        im = pos_im + order_im

        def rate(x: Decimal) -> str:
            return _num((x / equity).quantize(Decimal("1e-4"))) if equity > 0 else "0"

        coin = {
            "coin": "USDT", "equity": _num(equity), "usdValue": _num(equity), "walletBalance": _num(self._balance),
            "availableToWithdraw": "", "availableToBorrow": "", "borrowAmount": "0", "accruedInterest": "0",
            "totalOrderIM": _num(order_im), "totalPositionIM": _num(pos_im), "totalPositionMM": _num(mm),
            "unrealisedPnl": _num(upl), "cumRealisedPnl": _num(self._cum_realised), "bonus": "0",
            "collateralSwitch": True, "marginCollateral": True, "locked": "0", "spotHedgingQty": "0",
            "spotBorrow": "0",
        }  # fmt: skip
        return {
            "accountIMRate": rate(im), "accountIMRateByMp": rate(im_mp), "accountMMRate": rate(mm),
            "accountMMRateByMp": rate(mm_mp), "totalEquity": _num(equity), "totalWalletBalance": _num(self._balance),
            "totalMarginBalance": _num(equity), "totalAvailableBalance": _num(equity - im), "totalPerpUPL": _num(upl),
            "totalInitialMargin": _num(im), "totalInitialMarginByMp": _num(im_mp), "totalMaintenanceMargin": _num(mm),
            "totalMaintenanceMarginByMp": _num(mm_mp), "accountLTV": "0", "accountType": "UNIFIED", "coin": [coin],
        }  # fmt: skip


# --- helpers ----------------------------------------------------------------------------------------


def _dec(x: Any) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, bool):
        raise ValueError(f"expected a number, was {x!r}")
    try:
        d = Decimal(str(x))
    except InvalidOperation:
        raise ValueError(f"expected a number, was {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"expected a finite number, was {x!r}")
    return d


def _dec_or_none(x: Any) -> Decimal | None:
    if x is None:
        return None
    try:
        return _dec(x)
    except ValueError:
        return None


def _nonzero(d: Decimal | None) -> Decimal | None:
    return None if d is None or d == 0 else d


def _num(d: Decimal) -> str:
    """Money and other free numbers: up to 8 decimals, no trailing zeros, never an exponent."""
    text = format(d.quantize(_EIGHT, rounding=ROUND_HALF_EVEN).normalize(), "f")
    return "0" if text in ("0", "-0") else text


def _opt(d: Decimal | None) -> str | None:
    return None if d is None else _num(d)


def _str(q: Mapping[str, Any], key: str) -> str:
    v = q.get(key)
    if v is None or v == "":
        raise BybitError(10001, f"params error: {key} is required")
    return str(v)


def _param_dec(q: Mapping[str, Any], key: str, *, required: bool = False) -> Decimal | None:
    v = q.get(key)
    if v is None or v == "":
        if required:
            raise BybitError(10001, f"params error: {key} is required")
        return None
    try:
        return _dec(v)
    except ValueError:
        raise BybitError(10001, f"params error: {key} invalid: {v!r}") from None


def _int_param(q: Mapping[str, Any], key: str, default: int | None) -> Any:
    v = q.get(key)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise BybitError(10001, f"params error: {key} must be an integer, was {v!r}") from None


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("true", "1"):
        return True
    if str(v).lower() in ("false", "0", ""):
        return False
    raise BybitError(10001, f"params error: expected a boolean, was {v!r}")


def _linear(q: Mapping[str, Any]) -> None:
    category = q.get("category")
    if category != "linear":
        raise BybitError(
            10001, f"params error: category {category or '(missing)'} is not served by the fake (linear only)"
        )


def _check_position_idx(q: Mapping[str, Any]) -> None:
    idx = q.get("positionIdx", 0)
    if idx not in (0, "0", None, ""):
        raise BybitError(10001, "position idx not match position mode")


__all__: Sequence[str] = ("PRIVATE", "PRIVATE_TOPICS", "PrivateChannel", "TradingFault", "TradingSide")
