"""The Bybit venue adapter: sends the executor's orders to Bybit and records what Bybit says on the log.

The executor's pure core decides; the log is its outbox (ARCHITECTURE.md §3). This adapter, in the
executor's process, is the only code that talks to Bybit's private side:

- **orders**: it reads ``exec.order.*`` on its own durable consumer (``venue-bybit``), in log order. An
  ``OrderSubmitted`` for Bybit becomes ``set-leverage`` (110043 "not modified" is fine) and a Market
  ``order/create`` with ``orderLinkId`` = the order's id, exchange-native ``takeProfit``/``stopLoss``
  (``tpslMode=Full``) or ``reduceOnly``; Bybit's answer is an ``OrderAccepted`` or an ``OrderRefused``
  (its retCode and message). A duplicate ``orderLinkId`` (110072: the order was sent before a crash or
  a lost answer) and a timeout after which the outcome is unknown are resolved by looking the
  ``orderLinkId`` up — never by submitting again blindly. An ``EntryExpired`` cancels the entry. The
  message is acknowledged only once the answer is on the log, so a SIGKILL between submit and answer
  redelivers it, and the look-up finds the order: no duplicate order, ever.
- **exit management** (the open position): the scaled plan's TP1 is a reduce-only ``Limit`` order
  (``orderLinkId`` derived from the intent, leg ``tp1``: a retry is refused as a duplicate and looked
  up); a ``StopMoved`` becomes ``/v5/position/trading-stop`` (``stopLoss``, the ``takeProfit`` of TP2, or
  Bybit's native ``trailingStop`` distance with its ``activePrice``), never a replaced order — setting
  the same stops again is harmless (34040 "not modified"), so a redelivery after a crash is too. A TP1
  still working when a new entry of its symbol is sent is cancelled first (it must never reduce the next
  position).
- **private stream** (pybit ``WebSocket(channel_type="private")``: ``order``, ``execution``,
  ``position``, ``wallet``): executions become ``OrderFilled`` (partial fills too) and
  ``FundingSettled``, orders that end unfilled ``OrderCanceled``/``OrderRefused``, positions and wallet
  ``PositionSnapshot(source="stream")``/``WalletSnapshot``.
- **reconciliation** on start and after every reconnect of the private stream: executions since the
  last one on the log (a fill that happened while Nertz was down, or whose stream message was lost, is
  published as the fill), every order the log sent without an answer looked up, then each symbol's
  position as ``PositionSnapshot(source="reconcile")`` — taken when the executions are stable around it —
  and the wallet. The executor compares those snapshots with its lock (adopts or halts, closes what the
  venue no longer holds).

Every report's id is derived from Bybit's ids (:mod:`nertz_executor.core.venue.bybit`), and the adapter
keeps the ids already on the log, so a report seen twice is recorded once. Replays never run this
adapter: the reports are on the log and are served back from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from pybit.unified_trading import WebSocket
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.node.effects import EffectRunner
from nertz_common.node.log import read_log
from nertz_executor.adapters.bybit_rest import BybitRest, OutcomeUnknown, Refused
from nertz_executor.core.venue import bybit as by

log = logging.getLogger("nertz.executor.bybit")
T = TypeVar("T")

VENUE = by.VENUE
#: private WebSocket host per BYBIT_ENV (WIRE.md §3.1; demo trading has its own private stream)
WS_URLS: dict[str, str] = {
    "mainnet": "wss://stream.bybit.com",
    "testnet": "wss://stream-testnet.bybit.com",
    "demo": "wss://stream-demo.bybit.com",
}
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
_PUBLISH_TRANSIENT: tuple[type[BaseException], ...] = (bus.PublishError, *bus.OUTAGE)
#: Bybit's retCode for a duplicate orderLinkId
DUPLICATE = 110072
#: the code of a call that still failed after every attempt (no answer of Bybit's to act on)
EXHAUSTED = -1
#: Bybit's retCode for an order that does not exist (cancel of a filled or unknown order)
NO_ORDER = 110001
#: Bybit's retCode for a trading-stop that changes nothing (the stops are already so)
STOPS_NOT_MODIFIED = 34040
#: tries of a trading-stop whose outcome is unknown (it is idempotent: sending it again is harmless)
STOP_ATTEMPTS = 3


class PrivateSocket(WebSocket):
    """pybit's private ``WebSocket`` with an optional base URL and a status hook.

    ``on_status("connected" | "reconnected")`` is called on pybit's thread after each (re)connect
    (pybit authenticates and resubscribes on its own); callbacks never raise into pybit's thread.
    """

    def __init__(
        self,
        on_status: Callable[[str], None],
        *,
        base_url: str | None = None,
        topics: int = len(PRIVATE_TOPICS),
        **kwargs: Any,
    ) -> None:
        self._base_ws_url = base_url.rstrip("/") if base_url else None
        self._status_sink = on_status
        self._connects = 0
        self._expected = topics
        self._acked: set[str] = set()
        self._subscribed = threading.Event()
        self.closing = False
        super().__init__("private", **kwargs)

    def _connect(self, url: str) -> None:
        if self._base_ws_url and "{SUBDOMAIN}" in url:
            url = self._base_ws_url + url[url.index("/v5/") :]
        if self.closing:
            return
        self._acked = set()
        self._subscribed.clear()
        super()._connect(url)
        self._connects += 1
        with contextlib.suppress(Exception):
            self._status_sink("reconnected" if self._connects > 1 else "connected")

    def _process_subscription_message(self, message: dict[str, Any]) -> None:
        super()._process_subscription_message(message)
        if message.get("success") is True:
            self._acked.add(str(message.get("req_id") or len(self._acked)))
            if len(self._acked) >= self._expected:
                self._subscribed.set()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Block until Bybit acknowledged every topic of this connection; False after ``timeout_s``.

        (A fill pushed before its topic's subscription took effect is not sent to us: the
        reconciliation that follows this wait is what finds it.)
        """
        return self._subscribed.wait(timeout_s)


@dataclass
class Known:
    """What the log says the adapter already did and heard (read back at start, kept up to date)."""

    refs: dict[str, by.OrderRef] = field(default_factory=dict)
    orders: dict[str, ev.OrderSubmitted] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    canceled: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    execs: set[str] = field(default_factory=set)
    position_of: dict[str, str] = field(default_factory=dict)
    last_exec_ms: int = 0
    leverage: dict[str, str] = field(default_factory=dict)
    tp1_of: dict[str, by.OrderRef] = field(default_factory=dict)

    def take(self, e: ev.Event) -> None:
        """Note one event of the log (or one the adapter just published)."""
        if isinstance(e, ev.OrderSubmitted) and e.venue_name == VENUE:
            self.orders[e.order_id] = e
            self.refs[e.order_id] = by.OrderRef(e.order_id, e.symbol, e.correlation_id, e.event_id, e.reduce_only)
            if not e.reduce_only:
                self.position_of[e.symbol] = e.correlation_id
            elif e.order_type == "Limit":  # TP1: cancelled before the symbol's next entry if still working
                self.tp1_of[e.symbol] = self.refs[e.order_id]
        elif isinstance(e, ev.EntryExpired):
            self.expired.add(e.order_id)
        elif isinstance(e, (ev.OrderAccepted, ev.OrderRefused)):
            self.answered.add(e.order_id)
        elif isinstance(e, ev.OrderCanceled):
            self.canceled.add(e.order_id)
        elif isinstance(e, (ev.OrderFilled, ev.FundingSettled)) and e.venue_name == VENUE:
            self.execs.add(e.fill_id)
            self.last_exec_ms = max(self.last_exec_ms, e.ts_event // by.MS)


class BybitVenueAdapter:
    """Orders to Bybit, Bybit's reports to the log, reconciliation (see the module docstring).

    Parameters
    ----------
    js, nc : JetStreamContext, NATS
    publisher : bus.Publisher
    rest : BybitRest
        Signed REST calls.
    socket : callable, optional
        ``socket(on_message, on_status) -> PrivateSocket`` (blocking: run in a thread); None = no
        private stream (tests of the order path alone).
    symbols : iterable of str
        Symbols to reconcile beyond those the log names.
    stop : asyncio.Event
    batch : int
        Orders pulled per request.
    on_report : callable, optional
        Called with every report once it is on the log, and with None for one refused as invalid (metrics).
    """

    def __init__(
        self,
        *,
        js: JetStreamContext,
        nc: NATS,
        publisher: bus.Publisher,
        rest: BybitRest,
        socket: Callable[[Callable[[dict[str, Any]], None], Callable[[str], None]], PrivateSocket] | None,
        symbols: Iterable[str],
        stop: asyncio.Event,
        batch: int = 16,
        stream: str = subjects.STREAM,
        on_report: Callable[[ev.Event | None], None] | None = None,
    ) -> None:
        self.js, self.nc, self.publisher, self.rest = js, nc, publisher, rest
        self.symbols = sorted(set(symbols))
        self.stop = stop
        self.batch = batch
        self.stream = stream
        self.known = Known()
        self.spec = topology.VENUE_CONSUMERS[VENUE]
        self._socket_factory = socket
        self._socket: PrivateSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=100_000)
        self._lock = asyncio.Lock()  # one publisher of reports at a time: reconciliation vs the stream
        self.reconciliations = 0
        self.ready = asyncio.Event()
        self._on_report = on_report or (lambda e: None)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read back the log, connect the private stream, reconcile, then send orders until stopped."""
        self._loop = asyncio.get_running_loop()
        await topology.ensure_consumer(self.js, self.spec, self.stream)
        await self.load()
        if self._socket_factory is not None:
            factory = self._socket_factory
            self._socket = await asyncio.to_thread(factory, self._on_ws_message, self._on_ws_status)
            await self._subscribed()
        await self._reconcile_until_done("start")
        self.ready.set()
        orders = EffectRunner(
            js=self.js, nc=self.nc, spec=self.spec, effect=self.handle, stop=self.stop, batch=self.batch,
            stream=self.stream,
        )  # fmt: skip
        tasks = [asyncio.ensure_future(orders.run()), asyncio.ensure_future(self._stream())]
        try:
            stopper = asyncio.ensure_future(self.stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Close the private stream and the REST client."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(sock.exit), 10)
        self.rest.close()

    async def load(self) -> None:
        """Read back the log: our orders, their answers, the executions already recorded."""
        filters = (subjects.filter_of("exec", "order"), *subjects.venue_filters(VENUE))
        for r in await read_log(self.js, filters=filters, stream=self.stream):
            self.known.take(r.event)
        log.info(
            "bybit.loaded",
            extra={"orders": len(self.known.orders), "answered": len(self.known.answered),
                   "executions": len(self.known.execs)},
        )  # fmt: skip

    # --- orders ---------------------------------------------------------------------------------------

    async def handle(self, event: ev.Event) -> None:
        """Act on one ``exec.order`` event (see :meth:`act`), retrying while Bybit stays unreachable.

        A call still failing after its attempts (HTTP 5xx, timeouts of a read, repeated rate limits)
        is tried again with backoff, for as long as it takes: the message stays unacknowledged, so an
        order is never dropped; sending it again is safe (its ``orderLinkId``).
        """
        await _until_done(
            lambda: self.act(event), transient=_exhausted, stop=self.stop, what="bybit.unreachable",
            event_id=event.event_id,
        )  # fmt: skip

    async def act(self, event: ev.Event) -> None:
        """Act on one ``exec.order`` event: send an order for Bybit, cancel an expired entry, move stops."""
        self.known.take(event)
        if isinstance(event, ev.OrderSubmitted) and event.venue_name == VENUE:
            if event.order_id in self.known.answered:
                return  # answered before a restart: nothing to send again
            if event.order_id in self.known.expired:
                return  # expired before it could be sent (the adapter was down): never send it
            if not event.reduce_only:
                await self._cancel_leftover_tp1(event)
            await self.submit(event)
        elif isinstance(event, ev.EntryExpired) and event.order_id in self.known.refs:
            await self.cancel(event)
        elif isinstance(event, ev.StopMoved) and event.venue_name == VENUE:
            await self.move_stop(event)

    async def submit(self, order: ev.OrderSubmitted) -> None:
        """Send ``order`` once; publish Bybit's answer (see the module docstring)."""
        ref = self.known.refs[order.order_id]
        if not order.reduce_only:
            await self._set_leverage(order)
        params: dict[str, Any] = {
            "category": "linear", "symbol": order.symbol, "side": order.side, "orderType": order.order_type,
            "qty": by.fmt(order.qty), "orderLinkId": order.order_id, "positionIdx": 0,
            "reduceOnly": order.reduce_only,
        }  # fmt: skip
        if order.order_type == "Limit":  # TP1: rests until the market reaches its price
            params["price"] = by.fmt(order.price or order.price_ref)
            params["timeInForce"] = "GTC"
        if not order.reduce_only:
            if order.take_profit is not None:
                params["takeProfit"] = by.fmt(order.take_profit)
            if order.stop_loss is not None:
                params["stopLoss"] = by.fmt(order.stop_loss)
            params["tpslMode"] = "Full"
        try:
            answer = await self.rest.call("place_order", **params)
        except Refused as e:
            if e.code == EXHAUSTED:
                raise  # no answer of Bybit's: handle() tries again; a refusal is only what Bybit said
            if e.code == DUPLICATE:
                log.warning("bybit.duplicate_order", extra={"order_id": order.order_id})
                await self._look_up(ref)
                return
            await self._publish([by.refused(ref, e.code, e.message, 0, time.time_ns())])
            return
        except OutcomeUnknown as e:
            log.warning("bybit.order_outcome_unknown", extra={"order_id": order.order_id, "error": str(e)})
            if not await self._look_up(ref):
                await self.submit(order)  # Bybit does not have it: sending it again cannot duplicate it
            return
        vid = str(answer.result.get("orderId") or "")
        await self._publish([by.accepted(ref, vid, answer.server_ms, time.time_ns())])

    async def _set_leverage(self, order: ev.OrderSubmitted) -> None:
        """Set the symbol's leverage to the entry's, floored to a whole number (never above what the
        risk guard chose; and a symbol's leverage changes rarely, since each change is a REST call
        before the entry). Bybit's 110043 "not modified" is a success."""
        lev = order.leverage
        if not lev:
            return
        text = str(max(1, math.floor(lev)))
        if self.known.leverage.get(order.symbol) == text:
            return
        try:
            await self.rest.call(
                "set_leverage", category="linear", symbol=order.symbol, buyLeverage=text, sellLeverage=text
            )
        except Refused as e:  # the order itself will tell whether the margin suffices
            if e.code == EXHAUSTED:
                raise  # unreachable: handle() tries again
            log.warning("bybit.leverage_refused", extra={"symbol": order.symbol, "code": e.code, "error": e.message})
            return
        self.known.leverage[order.symbol] = text

    async def _look_up(self, ref: by.OrderRef) -> bool:
        """Find an order by its ``orderLinkId``; publish it as accepted (with its end and its
        executions, if it ended or filled). False when Bybit does not have it."""
        async with self._lock:
            return await self._look_up_locked(ref)

    async def _look_up_locked(self, ref: by.OrderRef) -> bool:
        found = await self._find(ref)
        if found is None:
            return False
        row, server_ms = found
        now = time.time_ns()
        out: list[ev.Event] = [by.accepted(ref, str(row.get("orderId") or ""), server_ms, now)]
        end = by.order_update(row, ref, now)
        if end is not None:
            out.append(end)
        await self._publish_locked(out)
        await self._publish_locked(await self._order_executions(ref.symbol, str(row.get("orderId") or "")))
        return True

    async def _find(self, ref: by.OrderRef) -> tuple[Mapping[str, Any], int] | None:
        for method in ("get_open_orders", "get_order_history"):  # recent orders are found by the first
            answer = await self.rest.call(method, category="linear", symbol=ref.symbol, orderLinkId=ref.order_id)
            rows = [r for r in answer.result.get("list") or [] if r.get("orderLinkId") == ref.order_id]
            if rows:
                return rows[0], answer.server_ms
        return None

    async def move_stop(self, moved: ev.StopMoved) -> None:
        """Set the position's stops at Bybit (``/v5/position/trading-stop``, ``tpslMode=Full``): the stop-loss,
        and what the phase moved — TP2's ``takeProfit`` (``entry``) or the trailing stop (``trail``:
        ``trailingStop`` distance and ``activePrice``). A refusal is logged (the stops in force stay)."""
        params: dict[str, Any] = {
            "category": "linear", "symbol": moved.symbol, "tpslMode": "Full", "positionIdx": 0,
            "stopLoss": by.fmt(moved.stop_loss),
        }  # fmt: skip
        if moved.phase == "entry" and moved.take_profit is not None:
            params["takeProfit"] = by.fmt(moved.take_profit)
        if moved.phase == "trail" and moved.trailing_distance:
            params["trailingStop"] = by.fmt(moved.trailing_distance)
            if moved.active_price:
                params["activePrice"] = by.fmt(moved.active_price)
        fields = {"symbol": moved.symbol, "event_id": moved.event_id, "phase": moved.phase}
        for attempt in range(1, STOP_ATTEMPTS + 1):
            try:
                await self.rest.call("set_trading_stop", **params)
            except Refused as e:
                if e.code == EXHAUSTED:
                    raise  # unreachable: handle() tries again
                if e.code != STOPS_NOT_MODIFIED:  # e.g. the position closed meanwhile, or the price passed it
                    log.warning("bybit.trading_stop_refused", extra={**fields, "code": e.code, "error": e.message})
                return
            except OutcomeUnknown as e:
                log.warning("bybit.trading_stop_outcome_unknown", extra={**fields, "attempt": attempt, "error": str(e)})
                continue
            log.info("bybit.stop_moved", extra={**fields, **{k: v for k, v in params.items() if k != "category"}})
            return
        log.error("bybit.trading_stop_unknown", extra=fields)

    async def _cancel_leftover_tp1(self, entry: ev.OrderSubmitted) -> None:
        ref = self.known.tp1_of.pop(entry.symbol, None)
        if ref is not None and ref.correlation_id != entry.correlation_id:
            await self._cancel(ref)  # (filled, or cancelled with its closed position: 110001, fine)

    async def cancel(self, expired: ev.EntryExpired) -> None:
        """Cancel an expired entry at Bybit (one that already filled or ended is left to its reports)."""
        await self._cancel(self.known.refs[expired.order_id])

    async def _cancel(self, ref: by.OrderRef) -> None:
        try:
            await self.rest.call("cancel_order", category="linear", symbol=ref.symbol, orderLinkId=ref.order_id)
        except Refused as e:
            if e.code == EXHAUSTED:
                raise  # unreachable: handle() tries again
            if e.code != NO_ORDER:
                log.warning(
                    "bybit.cancel_refused", extra={"order_id": ref.order_id, "code": e.code, "error": e.message}
                )
        except OutcomeUnknown as e:
            log.warning("bybit.cancel_outcome_unknown", extra={"order_id": ref.order_id, "error": str(e)})

    # --- the private stream ---------------------------------------------------------------------------

    async def _subscribed(self, timeout_s: float = 10.0) -> None:
        sock = self._socket
        if sock is not None and not await asyncio.to_thread(sock.wait_subscribed, timeout_s):
            log.warning("bybit.private_not_subscribed", extra={"timeout_s": timeout_s})

    def _on_ws_message(self, msg: dict[str, Any]) -> None:  # pybit's thread
        self._hand(("message", msg))

    def _on_ws_status(self, status: str) -> None:  # pybit's thread
        self._hand(("status", status))

    def _hand(self, item: tuple[str, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:  # the reconciliation after the next reconnect finds what is dropped
            log.error("bybit.stream_queue_full")

    async def _stream(self) -> None:
        while not self.stop.is_set():
            kind, item = await self._inbox.get()
            if kind == "status":
                if item == "reconnected":
                    await self._subscribed()
                    await self._reconcile_until_done("reconnect")
                continue
            try:
                events = self.translate(item, time.time_ns())
            except Exception as e:  # a malformed message: counted and logged, never fatal
                log.error("bybit.bad_stream_message", extra={"error": repr(e), "raw": json.dumps(item)[:500]})
                continue
            await self._publish(events)
            # a fill of an order placed outside Nertz: the executor decides on the whole position
            foreign = sorted({e.symbol for e in events if isinstance(e, ev.OrderFilled) and self._foreign(e)})
            if foreign:
                await self.reconcile_positions(foreign, "foreign_fill")

    def translate(self, msg: Mapping[str, Any], recv_ns: int) -> list[ev.Event]:
        """Return the events of one private-stream message (none for a topic or row that is not ours)."""
        topic = str(msg.get("topic") or "")
        rows = msg.get("data") or []
        out: list[ev.Event] = []
        for row in rows if isinstance(rows, list) else [rows]:
            if topic.startswith("execution"):
                e = self._execution(row, recv_ns)
                if e is not None:
                    out.append(e)
            elif topic == "order":
                ref = self.known.refs.get(str(row.get("orderLinkId") or ""))
                if ref is not None:
                    update = by.order_update(row, ref, recv_ns)
                    if update is not None:
                        out.append(update)
            elif topic == "position":
                p = by.position(row, "stream", recv_ns)
                if p is not None:
                    out.append(p)
            elif topic == "wallet":
                key = str(msg.get("id") or msg.get("creationTime") or recv_ns)
                ts = int(msg.get("creationTime") or 0) * by.MS or recv_ns
                out.append(by.wallet(row, recv_ns, key=key, ts_ns=ts))
        return out

    def _execution(self, row: Mapping[str, Any], recv_ns: int) -> ev.OrderFilled | ev.FundingSettled | None:
        ref = self.known.refs.get(str(row.get("orderLinkId") or ""))
        symbol = str(row.get("symbol") or "")
        return by.execution(row, ref, self.known.position_of.get(symbol, ""), recv_ns)

    def _foreign(self, fill: ev.OrderFilled) -> bool:
        """True for a fill of an order that is not ours (nor one Bybit made for our position's TP/SL)."""
        return fill.order_id not in self.known.refs and fill.exit_reason is None

    # --- reconciliation -------------------------------------------------------------------------------

    async def reconcile_positions(self, symbols: list[str], why: str) -> None:
        """Publish the positions of ``symbols`` as reconciliation snapshots (after a foreign fill)."""
        round_id = f"{why}-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        async with self._lock:
            await self._publish_locked(await self._positions(symbols, round_id))
        log.info("bybit.positions_reconciled", extra={"why": why, "symbols": symbols})

    async def _reconcile_until_done(self, why: str) -> None:
        """Reconcile, trying again with backoff while Bybit is unreachable (orders wait meanwhile)."""
        with contextlib.suppress(Refused, OutcomeUnknown):  # raised only once stopping
            await _until_done(
                lambda: self.reconcile(why), transient=lambda e: isinstance(e, (Refused, OutcomeUnknown)),
                stop=self.stop, what="bybit.reconcile_failed", why=why,
            )  # fmt: skip

    async def reconcile(self, why: str) -> None:
        """Publish what the log lacks: missed executions, unanswered orders, then positions and wallet."""
        t0 = time.monotonic()
        round_id = f"{why}-{time.time_ns()}-{uuid.uuid4().hex[:8]}"  # one name per round (ids derive from it)
        async with self._lock:
            symbols = sorted({*self.symbols, *(r.symbol for r in self.known.refs.values())})
            for ref in list(self.known.refs.values()):  # sent before a crash, its answer never recorded
                if ref.order_id not in self.known.answered and ref.order_id not in self.known.expired:
                    await self._look_up_locked(ref)  # not found: never sent; the redelivery sends it
            missed = 0
            for _ in range(5):  # positions are taken when no execution landed around them
                before = await self._missed_executions(symbols)
                missed += await self._publish_locked(before)
                positions = await self._positions(symbols, round_id)
                after = await self._missed_executions(symbols)
                if not after:
                    break
                missed += await self._publish_locked(after)
            await self._publish_locked(positions)
            wallet = await self._wallet(round_id)
            if wallet is not None:
                await self._publish_locked([wallet])
        self.reconciliations += 1
        log.info(
            "bybit.reconciled",
            extra={"why": why, "symbols": len(symbols), "missed_executions": missed,
                   "elapsed_ms": round((time.monotonic() - t0) * 1000, 1)},
        )  # fmt: skip

    async def _missed_executions(self, symbols: list[str]) -> list[ev.Event]:
        start = max(0, self.known.last_exec_ms - 60_000) if self.known.last_exec_ms else None
        out: list[ev.Event] = []
        for symbol in symbols:
            for row in await self._execution_rows(symbol, start):
                if str(row.get("execId") or "") in self.known.execs:
                    continue
                e = self._execution(row, time.time_ns())
                if e is not None:
                    out.append(e)
        out.sort(key=lambda e: e.ts_event)
        return out

    async def _execution_rows(self, symbol: str, start_ms: int | None, order_id: str | None = None) -> list[Any]:
        rows: list[Any] = []
        cursor = ""
        for _ in range(50):  # 50 pages of 100: far beyond what one outage leaves
            params: dict[str, Any] = {"category": "linear", "symbol": symbol, "limit": 100}
            if start_ms is not None:
                params["startTime"] = start_ms
            if order_id:
                params["orderId"] = order_id
            if cursor:
                params["cursor"] = cursor
            answer = await self.rest.call("get_executions", **params)
            rows.extend(answer.result.get("list") or [])
            cursor = str(answer.result.get("nextPageCursor") or "")
            if not cursor:
                break
        return rows

    async def _order_executions(self, symbol: str, order_id: str) -> list[ev.Event]:
        """The executions of one order the log lacks (after a look-up found the order)."""
        out: list[ev.Event] = []
        for row in await self._execution_rows(symbol, None, order_id=order_id):
            if str(row.get("execId") or "") not in self.known.execs:
                e = self._execution(row, time.time_ns())
                if e is not None:
                    out.append(e)
        out.sort(key=lambda e: e.ts_event)
        return out

    async def _positions(self, symbols: list[str], round_id: str) -> list[ev.Event]:
        out: list[ev.Event] = []
        for symbol in symbols:
            answer = await self.rest.call("get_positions", category="linear", symbol=symbol)
            rows = answer.result.get("list") or [{"symbol": symbol, "side": "", "size": "0"}]
            for row in rows:
                p = by.position(row, "reconcile", time.time_ns(), round_id=round_id, server_ms=answer.server_ms)
                if p is not None and p.symbol == symbol:
                    out.append(p)
        return out

    async def _wallet(self, round_id: str) -> ev.WalletSnapshot | None:
        answer = await self.rest.call("get_wallet_balance", accountType="UNIFIED", coin="USDT")
        rows = answer.result.get("list") or []
        if not rows:
            return None
        now = time.time_ns()
        return by.wallet(rows[0], now, key=round_id, ts_ns=answer.server_ms * by.MS if answer.server_ms else now)

    # --- publishing ------------------------------------------------------------------------------------

    async def _publish(self, events: list[ev.Event]) -> int:
        async with self._lock:
            return await self._publish_locked(events)

    async def _publish_locked(self, events: list[ev.Event]) -> int:
        """Publish the reports the log lacks (an execution already recorded is dropped); return how many."""
        n = 0
        for e in events:
            if isinstance(e, (ev.OrderFilled, ev.FundingSettled)) and e.fill_id in self.known.execs:
                continue
            try:  # what Bybit said must make a valid event: a value out of range is logged, never recorded
                ev.decode(ev.encode(e))
            except msgspec.ValidationError as err:
                log.error("bybit.invalid_report", extra={"error": str(err), "event": repr(e)[:500]})
                self._on_report(None)
                continue
            await _publish_until_acked(self.publisher, e, self.stop)
            self.known.take(e)
            self._on_report(e)
            n += 1
            log.info(_LOG_NAMES.get(type(e), "bybit.report"), extra=_log_fields(e))
        return n


_LOG_NAMES: dict[type[ev.Event], str] = {
    ev.OrderAccepted: "venue.accepted",
    ev.OrderRefused: "venue.refused",
    ev.OrderCanceled: "venue.canceled",
    ev.OrderFilled: "venue.filled",
    ev.FundingSettled: "venue.funding",
    ev.PositionSnapshot: "venue.position",
    ev.WalletSnapshot: "venue.wallet",
}


def _log_fields(e: ev.Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": e.event_id}
    for k in ("symbol", "order_id", "fill_id", "qty", "price", "ret_code", "ret_msg", "reason", "source", "side",
              "equity_usdt", "exit_reason"):  # fmt: skip
        if hasattr(e, k):
            out[k] = getattr(e, k)
    return out


async def _publish_until_acked(publisher: bus.Publisher, e: ev.Event, stop: asyncio.Event) -> None:
    """Publish ``e``, waiting out a bus outage of any length (a report must not be lost)."""
    await _until_done(
        lambda: publisher.publish(e), transient=lambda err: isinstance(err, _PUBLISH_TRANSIENT), stop=stop,
        what="bybit.publish_retry", first_s=0.2, max_s=5.0, event_id=e.event_id,
    )  # fmt: skip


def _exhausted(e: BaseException) -> bool:
    """A call that still failed after every attempt: Bybit gave no answer to act on."""
    return isinstance(e, Refused) and e.code == EXHAUSTED


async def _until_done(
    fn: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    stop: asyncio.Event,
    what: str,
    first_s: float = 1.0,
    max_s: float = 30.0,
    **extra: Any,
) -> T:
    """Return ``await fn()``, trying again with exponential backoff (``first_s`` doubling up to ``max_s``)
    after every failure ``transient`` accepts, for as long as it takes, each logged as ``what``; what
    else it raises, or anything once ``stop`` is set, is raised."""

    def again(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        return error is not None and transient(error) and not stop.is_set()

    def say(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(what, extra={**extra, "error": repr(error), "retry_in_s": round(wait, 2)})

    async for attempt in AsyncRetrying(
        retry=again, wait=wait_exponential(multiplier=first_s, max=max_s), before_sleep=say, reraise=True
    ):
        with attempt:
            return await fn()
    raise AssertionError("unreachable")  # pragma: no cover


def private_socket_factory(
    *, api_key: str, api_secret: str, env: str, base_url: str | None
) -> Callable[[Callable[[dict[str, Any]], None], Callable[[str], None]], PrivateSocket]:
    """Return a factory of the private socket for ``env`` (or ``base_url``, e.g. a fake), subscribed to
    :data:`PRIVATE_TOPICS` (blocking: call it in a thread)."""

    def build(on_message: Callable[[dict[str, Any]], None], on_status: Callable[[str], None]) -> PrivateSocket:
        sock = PrivateSocket(
            on_status, base_url=base_url, testnet=env == "testnet", demo=env == "demo", api_key=api_key,
            api_secret=api_secret, private_auth_expire=10, retries=0, restart_on_error=True,
        )  # fmt: skip

        def safe(msg: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):
                on_message(msg)

        for topic in PRIVATE_TOPICS:
            getattr(sock, f"{topic}_stream")(safe)
        return sock

    return build
