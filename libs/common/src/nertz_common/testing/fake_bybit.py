"""A fake Bybit V5 server on 127.0.0.1 that the real pybit talks to (tests and local runs only).

Shaped after ``../shared/docs/WIRE.md`` §3 (REST) and §4 (WebSocket), and the three pybit pitfalls of
§0: every ``subscribe`` ack is delayed (``ack_delay_s``, 50 ms) and echoes the client's ``req_id``; a
``success:false`` ack is sent only for topics a test rejects on purpose; a ``10006`` answer always
carries an ``X-Bapi-Limit-Reset-Timestamp`` in the future.

What it serves
--------------
- **Public WebSocket** ``/v5/public/linear`` (:class:`PublicLinear`): ``subscribe``/``unsubscribe``/``ping``
  with the real ack shapes; frames only for the topics a connection subscribed to. Frames are scripted
  by a test (:meth:`PublicLinear.publish`, :meth:`PublicLinear.set_book`, :meth:`PublicLinear.book_delta`,
  :meth:`PublicLinear.set_ticker`) or played from a real recording (:meth:`PublicLinear.play`,
  :func:`recorded_frames`). The fake keeps each order book and ticker it has sent, so every
  (re)subscribe gets a fresh snapshot (§4.5.4).
- **REST** ``/v5/market/kline`` (newest first, ``start``/``end``/``limit`` ≤ 1000, the bundled 1m CSVs
  aggregated to Bybit's other intervals), ``/v5/market/instruments-info`` (``symbol``, ``limit``,
  ``cursor``), ``/v5/market/orderbook``, ``/v5/market/tickers`` and ``/v5/market/time``, in Bybit's
  envelope ``{retCode, retMsg, result, retExtInfo, time}`` with the ``X-Bapi-Limit*`` headers.
- **Trading** (:meth:`FakeBybit.enable_trading`, module :mod:`nertz_common.testing.fake_bybit_trading`):
  the signed REST endpoints (orders, executions, positions, leverage, TP/SL, wallet), the private
  WebSocket ``/v5/private`` (``order``/``execution``/``position``/``wallet``), a small matching engine
  driven by :meth:`TradingSide.set_price` and by the frames sent on the public channel, and trading
  faults (rejects, clock skew, an answer delayed or lost after the order was taken, private drops
  during a fill, duplicated executions).

Fault injection: :meth:`PublicLinear.drop` (close frame or TCP abort), :meth:`PublicLinear.skip_next_delta`
(a ``u`` goes missing), :meth:`PublicLinear.cross_book`, :meth:`PublicLinear.send_raw` (malformed JSON),
:meth:`PublicLinear.stall`, :meth:`PublicLinear.refuse` (WebSocket upgrades answered 503) and, on REST,
:meth:`FakeBybit.fault` (``10006`` + reset header, HTTP 5xx, a delay, any retCode).

It grows by tables: ``FakeBybit.rest_routes`` maps ``(method, path)`` to a handler and
``FakeBybit.ws_channels`` maps a WebSocket path to a channel object with an ``async handle(request)``
(and ``async close()``); the trading side adds ``/v5/private`` and the trading endpoints there.

Run it by hand (``python -m nertz_common.testing.fake_bybit --help``) to point ``python -m nertz_ingest live``
at it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gzip
import ipaddress
import itertools
import json
import logging
import lzma
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from nertz_common.testing.fake_bybit_trading import TradingSide

log = logging.getLogger("nertz.fake_bybit")

HOST = "127.0.0.1"
PUBLIC_LINEAR = "/v5/public/linear"
MINUTE_MS = 60_000
#: Bybit kline interval -> length, ms (W and M are not served)
INTERVAL_MS: dict[str, int] = {
    **{str(m): m * MINUTE_MS for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": 1440 * MINUTE_MS,
}

RestHandler = Callable[[web.Request, dict[str, str]], Awaitable[Any]]
#: the server's time of a request, ms (skew included): set by the dispatcher, read by handlers
NOW_MS = web.RequestKey("fake.now_ms", int)
#: a handler's own name for how a request was answered (e.g. a trading fault), recorded in RestCall
ANSWER = web.RequestKey("fake.answer", str)


class BybitError(Exception):
    """Raised by a REST handler: answered as Bybit's envelope with this ``retCode`` (HTTP 200)."""

    def __init__(self, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"{ret_code} {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg


@dataclass
class RestFault:
    """A scripted failure of the next ``times`` calls to one REST path.

    Attributes
    ----------
    kind : {"rate_limit", "http_status", "delay", "ret_code"}
        ``rate_limit``: retCode 10006 "Too many visits!" with ``X-Bapi-Limit-Reset-Timestamp`` =
        now + ``reset_in_ms``; ``http_status``: an HTML error page with HTTP ``status``; ``delay``:
        answer normally after ``delay_s`` seconds; ``ret_code``: the envelope with ``ret_code``.
    """

    kind: Literal["rate_limit", "http_status", "delay", "ret_code"]
    times: int = 1
    status: int = 503
    reset_in_ms: int = 300
    delay_s: float = 0.0
    ret_code: int = 10016
    ret_msg: str = "Server error"


@dataclass(frozen=True, slots=True)
class RestCall:
    """One REST request the fake received (``query`` decoded; ``raw_query`` as sent, for signatures;
    ``body`` the raw body of a POST, as sent)."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    time_ms: int
    answer: str  # "ok", "rate_limit", "http_<status>", "ret_<code>", or a trading fault's name
    body: str = ""


# --- data: klines and instruments -----------------------------------------------------------------


class KlineStore:
    """1m klines per symbol (from Bybit kline CSVs), aggregated on demand to Bybit's longer intervals.

    Rows are Bybit's REST shape ``[startTime, open, high, low, close, volume, turnover]``, all strings.
    The bundled CSVs have no turnover column: the fake serves ``volume × close`` there (an
    approximation, documented as such; nothing reads it for decisions).
    """

    def __init__(self) -> None:
        self._one: dict[str, list[list[str]]] = {}
        self._cache: dict[tuple[str, str], tuple[list[int], list[list[str]]]] = {}

    @property
    def symbols(self) -> list[str]:
        """Symbols with data."""
        return sorted(self._one)

    def add_rows(self, symbol: str, rows: Iterable[Sequence[str]]) -> None:
        """Add 1m rows ``[start_ms, o, h, l, c, v, turnover]`` (strings, any order; a repeated start keeps the last)."""
        merged = {int(r[0]): [str(x) for x in r] for r in self._one.get(symbol, [])}
        merged.update({int(r[0]): [str(x) for x in r] for r in rows})
        self._one[symbol] = [merged[k] for k in sorted(merged)]
        self._cache = {k: v for k, v in self._cache.items() if k[0] != symbol}

    def add_csv(self, path: Path, limit: int | None = None) -> str:
        """Load ``<SYMBOL>_1m.csv[.xz|.gz]`` (``timestamp,open,high,low,close,volume``); return the symbol.

        ``limit`` keeps only the last ``limit`` rows.
        """
        name = path.name.removesuffix(".xz").removesuffix(".gz")
        symbol, _, rest = name.partition("_")
        if rest != "1m.csv":
            raise ValueError(f"expected a file named <SYMBOL>_1m.csv[.xz|.gz], was {path.name}")
        rows = []
        with _open_text(path) as fh:
            next(fh)  # header
            for line in fh:
                ts, o, h, lo, c, v = line.strip().split(",")
                start = int(datetime.fromisoformat(ts).timestamp() * 1000)
                rows.append([str(start), o, h, lo, c, v, _fmt(float(v) * float(c))])
        self.add_rows(symbol, rows[-limit:] if limit else rows)
        return symbol

    def series(self, symbol: str, interval: str) -> tuple[list[int], list[list[str]]]:
        """Return ``(starts, rows)`` of ``symbol`` at ``interval``, ascending (empty if unknown).

        Raises
        ------
        KeyError
            If ``interval`` is not served (W, M or unknown).
        """
        dur = INTERVAL_MS[interval]
        key = (symbol, interval)
        if key not in self._cache:
            one = self._one.get(symbol, [])
            if interval == "1":
                rows = one
            else:
                rows = []
                for _, group in itertools.groupby(one, key=lambda r: int(r[0]) // dur):
                    g = list(group)
                    rows.append(
                        [
                            str(int(g[0][0]) // dur * dur),
                            g[0][1],
                            _fmt(max(float(r[2]) for r in g)),
                            _fmt(min(float(r[3]) for r in g)),
                            g[-1][4],
                            _fmt(sum(float(r[5]) for r in g)),
                            _fmt(sum(float(r[6]) for r in g)),
                        ]
                    )
            self._cache[key] = ([int(r[0]) for r in rows], rows)
        return self._cache[key]

    def query(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int, now_ms: int
    ) -> list[list[str]]:
        """Bybit's ``/v5/market/kline`` list: rows with ``start <= startTime <= end`` (and not after now),
        the newest ``limit`` of them, newest first. The candle containing ``now_ms`` is open."""
        starts, rows = self.series(symbol, interval)
        hi_ms = now_ms if end is None else min(end, now_ms)
        hi = bisect.bisect_right(starts, hi_ms)
        lo = 0 if start is None else bisect.bisect_left(starts, start)
        lo = max(lo, hi - limit)
        return [list(r) for r in reversed(rows[lo:hi])] if hi > lo else []


def load_instruments(path: Path) -> list[dict[str, Any]]:
    """Read instruments-info entries from a JSON file: a list, or an object with ``list`` (or ``result.list``)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("list") or data.get("result", {}).get("list", [])
    return cast(list[dict[str, Any]], data)


# --- the WebSocket side ---------------------------------------------------------------------------


@dataclass
class _Book:
    """The fake's own copy of one ``orderbook.<depth>.<symbol>`` book (prices and sizes as strings)."""

    topic: str
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    u: int = 0
    seq: int = 0
    ts: int = 0
    cts: int = 0

    @property
    def symbol(self) -> str:
        return self.topic.rsplit(".", 1)[-1]

    @property
    def depth(self) -> int:
        return int(self.topic.split(".")[1])

    def apply(self, msg: Mapping[str, Any]) -> None:
        data = msg["data"]
        if msg.get("type") == "snapshot" or data.get("u") == 1:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, data.get("b", [])), (self.asks, data.get("a", []))):
            for p, q in levels:
                if float(q) == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.u = int(data.get("u", self.u))
        self.seq = int(data.get("seq", self.seq))
        self.ts = int(msg.get("ts", self.ts))
        self.cts = int(msg.get("cts", self.cts) or self.cts)

    def best(self) -> tuple[float | None, float | None]:
        bid = max((float(p) for p in self.bids), default=None)
        ask = min((float(p) for p in self.asks), default=None)
        return bid, ask

    def levels(self, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return [list(x) for x in bids], [list(x) for x in asks]

    def snapshot_frame(self) -> str:
        b, a = self.levels(self.depth)
        return _dumps(
            {
                "topic": self.topic,
                "type": "snapshot",
                "ts": self.ts,
                "data": {"s": self.symbol, "b": b, "a": a, "u": self.u, "seq": self.seq},
                "cts": self.cts or self.ts,
            }
        )


@dataclass(eq=False)
class WsConn:
    """One client connection of a channel."""

    ws: web.WebSocketResponse
    conn_id: str
    transport: asyncio.Transport | None = None
    topics: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)  # topics not sent; "*" = every topic
    out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    ops: asyncio.Queue[tuple[float, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    sent: int = 0
    closed: bool = False
    silent: bool = False  # a hard stall: nothing at all is sent any more (acks and pongs included)

    def wants(self, topic: str) -> bool:
        return topic in self.topics and "*" not in self.stalled and topic not in self.stalled


class WsChannel:
    """What every fake WebSocket channel does with its connections: accept, read control requests,
    write queued frames in order, drop, close. A channel (:class:`PublicLinear`, the trading side's
    ``PrivateChannel``) says what a request means (:meth:`_on_request`) and answers its queued
    control requests (:meth:`_run_ops`).

    Attributes
    ----------
    conns : list of WsConn
        The open connections.
    requests : list of (conn_id, op, req_id, args)
        Every control request received, in order.
    sent : Counter
        Data frames sent, by topic (counted once per connection and copy).
    connections_total : int
        WebSocket connections accepted so far.
    """

    path = ""
    #: what the id of a channel's connections says after the random part (``p`` for private)
    conn_tag = ""

    def __init__(self, ack_delay_s: float = 0.05) -> None:
        self.ack_delay_s = ack_delay_s
        self.conns: list[WsConn] = []
        self.requests: list[tuple[str, str, str, list[str]]] = []
        self.sent: Counter[str] = Counter()
        self.connections_total = 0
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket connection until it closes."""
        refused = self._admit()
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        conn = WsConn(ws, f"{uuid.uuid4().hex[:20]}-{self.conn_tag}{self.connections_total}", request.transport)
        self.connections_total += 1
        self.conns.append(conn)
        writer = asyncio.create_task(self._write(conn))
        ops = asyncio.create_task(self._run_ops(conn))
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            conn.closed = True
            if conn in self.conns:
                self.conns.remove(conn)
            self._forget(conn)
            conn.out.put_nowait(None)
            conn.ops.put_nowait(None)
            for t in (writer, ops):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self._notify()
        return ws

    def _admit(self) -> web.StreamResponse | None:
        """An answer instead of the upgrade (a refused connection), or None to accept it."""
        return None

    def _forget(self, conn: WsConn) -> None:
        """Drop what the channel holds of a closed connection beyond :attr:`conns`."""

    def _on_text(self, conn: WsConn, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            log.warning("fake.ws.bad_request", extra={"path": self.path, "text": text[:200]})
            return
        if not isinstance(req, dict):
            return
        op = str(req.get("op", ""))
        req_id = str(req.get("req_id", ""))
        self.requests.append((conn.conn_id, op, req_id, [str(a) for a in req.get("args") or []]))
        self._on_request(conn, op, req_id, req)

    def _on_request(self, conn: WsConn, op: str, req_id: str, req: dict[str, Any]) -> None:
        """Answer or queue one control request (``ping``, ``subscribe``...)."""
        raise NotImplementedError

    async def _run_ops(self, conn: WsConn) -> None:
        """Answer the queued control requests of ``conn`` in order, each when it is due."""
        raise NotImplementedError

    async def _write(self, conn: WsConn) -> None:
        while (frame := await conn.out.get()) is not None:
            try:
                if conn.silent:
                    continue
                await conn.ws.send_str(frame)
                conn.sent += 1
            except (ConnectionError, RuntimeError):
                return
            finally:
                conn.out.task_done()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued frame was written to the sockets."""
        async with asyncio.timeout(timeout_s):
            for conn in list(self.conns):
                if not conn.closed:
                    await conn.out.join()

    async def drop(self, mode: Literal["close", "abort"] = "close") -> int:
        """Drop every open connection: a close frame (1000) or a TCP abort; return how many
        (pybit reconnects and replays its subscriptions, WIRE.md §2.2)."""
        conns = [c for c in self.conns if not c.closed]
        for conn in conns:
            await self._drop_one(conn, mode)
        return len(conns)

    async def _drop_one(self, conn: WsConn, mode: str, *, flush: bool = False) -> None:
        if flush:  # what was already queued goes out first
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.out.join()
        if mode == "close":
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1000, message=b"fake: dropped")
        elif conn.transport is not None:
            conn.transport.abort()

    async def close(self) -> None:
        for conn in list(self.conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"fake: shutting down")


class PublicLinear(WsChannel):
    """The public linear WebSocket channel (``/v5/public/linear``).

    Parameters
    ----------
    clock_ms : callable
        The fake's wall clock (ms), for pong and control frames.
    ack_delay_s : float
        Delay of every subscribe/unsubscribe ack, s (≥ 0.02 keeps pybit alive, WIRE.md §0 rule 1).

    Attributes
    ----------
    books : dict of str to _Book
        The last state of each book topic the fake sent (snapshot on every (re)subscribe).
    tickers : dict of str to dict
        The merged state of each ``tickers`` topic sent.
    requests : list of (conn_id, op, req_id, args)
        Every control request received, in order.
    sent : Counter
        Data frames sent, by topic (counted once per connection they went to).
    connections_total : int
        WebSocket connections accepted so far.
    listeners : list of callable(frame)
        Called with every frame :meth:`publish` applies to the fake's state (the parsed dict, after
        the state was updated): the trading side's prices follow the market this way.
    """

    path = PUBLIC_LINEAR

    def __init__(self, clock_ms: Callable[[], int], ack_delay_s: float = 0.05) -> None:
        super().__init__(ack_delay_s)
        self.clock_ms = clock_ms
        self.books: dict[str, _Book] = {}
        self.tickers: dict[str, dict[str, Any]] = {}
        self.reject_topics: set[str] = set()
        self._refuse = 0
        self._skip: set[str] = set()
        self._exchange_ms = 0
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    # --- serving ------------------------------------------------------------------------------------

    def _admit(self) -> web.StreamResponse | None:
        if self._refuse > 0:
            self._refuse -= 1
            return web.Response(status=503, text="503 Service Temporarily Unavailable")
        return None

    def _on_request(self, conn: WsConn, op: str, req_id: str, req: dict[str, Any]) -> None:
        if op == "ping":
            pong = {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id, "req_id": req_id, "op": "ping"}
            conn.out.put_nowait(_dumps(pong))
        elif op in ("subscribe", "unsubscribe"):
            conn.ops.put_nowait((time.monotonic() + self.ack_delay_s, req))

    async def _run_ops(self, conn: WsConn) -> None:
        # control requests are acked in order, each ack_delay_s after it arrived (pybit pitfall 1)
        while (item := await conn.ops.get()) is not None:
            due, req = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            op = req["op"]
            args = [str(a) for a in req.get("args") or []]
            ack: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn.conn_id}
            ack["req_id"] = str(req.get("req_id", ""))
            ack["op"] = op
            if op == "subscribe":
                bad = [a for a in args if a in self.reject_topics]
                if bad:
                    ack["success"] = False
                    ack["ret_msg"] = f"error:handler not found,topic:{bad[0]}"
                    conn.out.put_nowait(_dumps(ack))
                    continue
                conn.out.put_nowait(_dumps(ack))
                for topic in args:
                    conn.topics.add(topic)
                    conn.stalled.discard(topic)
                    if "*" in conn.stalled:  # a resubscribe unsticks that topic only
                        conn.stalled.discard("*")
                        conn.stalled.update(t for t in conn.topics if t != topic)
                    for frame in self._initial_frames(topic):
                        self._send(conn, topic, frame)
            else:
                for topic in args:
                    conn.topics.discard(topic)
                conn.out.put_nowait(_dumps(ack))
            await self._notify()

    def _initial_frames(self, topic: str) -> list[str]:
        book = self.books.get(topic)
        if book is not None and book.u:
            return [book.snapshot_frame()]
        state = self.tickers.get(topic)
        if state is not None:
            ts = state.get("_ts", 0)
            data = {k: v for k, v in state.items() if not k.startswith("_")}
            frame = {"topic": topic, "type": "snapshot", "data": data, "cs": state.get("_cs", 0), "ts": ts}
            return [_dumps(frame)]
        return []

    def _send(self, conn: WsConn, topic: str, frame: str) -> None:
        conn.out.put_nowait(frame)
        self.sent[topic] += 1

    # --- scripting ----------------------------------------------------------------------------------

    def publish(self, frame: str | Mapping[str, Any], *, apply: bool = True) -> int:
        """Send a data frame to every connection subscribed to its topic; return how many got it.

        ``frame`` is sent as given (a str verbatim, a mapping as compact JSON). Order book and ticker
        frames also update the fake's state (unless ``apply`` is False), so later subscribers get a
        snapshot. A frame whose topic cannot be read is sent to every connection.
        """
        text = frame if isinstance(frame, str) else _dumps(frame)
        try:
            msg = json.loads(text) if isinstance(frame, str) else dict(frame)
        except ValueError:
            msg = {}
        topic = str(msg.get("topic", "")) if isinstance(msg, dict) else ""
        skip = False
        if topic.startswith("orderbook.") and isinstance(msg.get("data"), dict):
            if apply:
                self.books.setdefault(topic, _Book(topic)).apply(msg)
            if msg.get("type") == "delta" and topic in self._skip:
                self._skip.discard(topic)
                skip = True
        elif topic.startswith("tickers.") and isinstance(msg.get("data"), dict) and apply:
            state = {} if msg.get("type") == "snapshot" else self.tickers.get(topic, {})
            state.update(msg["data"])
            state["_ts"], state["_cs"] = msg.get("ts", 0), msg.get("cs", 0)
            self.tickers[topic] = state
        if apply and topic and isinstance(msg, dict):
            for listener in list(self.listeners):
                listener(msg)
        if skip:
            return 0
        n = 0
        for conn in list(self.conns):
            if (conn.wants(topic) if topic else "*" not in conn.stalled) and not conn.closed:
                self._send(conn, topic, text)
                n += 1
        return n

    def next_ts(self, step_ms: int = 100) -> int:
        """Advance the exchange clock of scripted frames by ``step_ms`` and return it (ms)."""
        if not self._exchange_ms:
            self._exchange_ms = self.clock_ms()
        self._exchange_ms += step_ms
        return self._exchange_ms

    def set_ticker(self, symbol: str, **fields: str | float) -> int:
        """Send a ``tickers.<symbol>`` snapshot: the fake's last state of it with ``fields`` (Bybit's
        names, e.g. ``turnover24h=5e7, bid1Price="0.5", ask1Price="0.5001"``) changed; return how many
        connections got it. The REST ``/v5/market/tickers`` serves every symbol set so, subscribed or not
        (the coin hunter's view of the market)."""
        topic = f"tickers.{symbol}"
        state = {k: v for k, v in self.tickers.get(topic, {}).items() if not k.startswith("_")}
        data = {**state, "symbol": symbol, **{k: _s(v) for k, v in fields.items()}}
        cs = int(self.tickers.get(topic, {}).get("_cs", 0)) + 1
        return self.publish({"topic": topic, "type": "snapshot", "data": data, "cs": cs, "ts": self.next_ts()})

    def set_book(
        self,
        topic: str,
        bids: Sequence[tuple[str | float, str | float]],
        asks: Sequence[tuple[str | float, str | float]],
        *,
        u: int = 1000,
        seq: int | None = None,
    ) -> int:
        """Replace a book's state and send it as a snapshot to the subscribers; return how many got it."""
        ts = self.next_ts()
        frame = book_frame(topic, "snapshot", bids, asks, u=u, seq=seq if seq is not None else u * 10, ts=ts)
        return self.publish(frame)

    def book_delta(
        self,
        topic: str,
        bids: Sequence[tuple[str | float, str | float]] = (),
        asks: Sequence[tuple[str | float, str | float]] = (),
    ) -> int:
        """Send the next delta of a scripted book (``u`` + 1); return how many connections got it.

        Raises
        ------
        KeyError
            If the book was never set (:meth:`set_book`) or sent.
        """
        book = self.books[topic]
        frame = book_frame(topic, "delta", bids, asks, u=book.u + 1, seq=book.seq + 1, ts=self.next_ts())
        return self.publish(frame)

    async def play(self, frames: Iterable[str], *, speed: float | None = None, subscribed_only: bool = True) -> int:
        """Send recorded frames in order (those without a topic, e.g. old acks, are skipped).

        Parameters
        ----------
        frames : iterable of str
            Raw frame texts, e.g. :func:`recorded_frames`.
        speed : float, optional
            None = as fast as the connections take them; otherwise paced by the frames' ``ts``
            differences divided by ``speed``.
        subscribed_only : bool
            Count only frames some connection was subscribed to (all are applied to the state).

        Returns
        -------
        int
            Frames sent to at least one connection.
        """
        sent = 0
        t0: float | None = None
        ts0 = 0
        for i, text in enumerate(frames):
            msg = json.loads(text)
            if not msg.get("topic"):
                continue
            if speed is not None and isinstance(msg.get("ts"), int):
                if t0 is None:
                    t0, ts0 = time.monotonic(), msg["ts"]
                delay = t0 + (msg["ts"] - ts0) / 1000 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            n = self.publish(text)
            sent += n > 0 or not subscribed_only
            if i % 200 == 0:
                await asyncio.sleep(0)
        return sent

    async def wait_subscribed(self, topics: Iterable[str], *, connections: int = 1, timeout_s: float = 20.0) -> None:
        """Wait until ``connections`` open connections are subscribed to every topic of ``topics``.

        Raises
        ------
        TimeoutError
            If that does not happen within ``timeout_s``.
        """
        wanted = set(topics)
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(
                lambda: sum(wanted <= c.topics for c in self.conns if not c.closed) >= connections
            )

    async def wait_requests(self, op: str, topic: str, count: int, timeout_s: float = 20.0) -> None:
        """Wait until ``count`` ``op`` requests naming ``topic`` were received and acked."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.count_requests(op, topic) >= count)

    def count_requests(self, op: str, topic: str) -> int:
        """How many ``op`` requests named ``topic`` so far."""
        return sum(1 for _, o, _, args in self.requests if o == op and topic in args)

    # --- faults -------------------------------------------------------------------------------------

    def skip_next_delta(self, topic: str) -> None:
        """Apply the topic's next delta to the fake's book but do not send it: the client sees ``u`` jump."""
        self._skip.add(topic)

    def cross_book(self, topic: str, *, locked: bool = False) -> int:
        """Send a delta (next ``u``) that puts a bid above the best ask (``locked``: at it): a crossed
        book. The fake's own book is not changed (only its ``u`` advances), so the next snapshot is sane."""
        book = self.books[topic]
        _, ask = book.best()
        if ask is None:
            raise ValueError(f"expected asks in {topic} to cross")
        price = _fmt(ask) if locked else _fmt(ask * 1.001)
        frame = book_frame(topic, "delta", [(price, "1")], [], u=book.u + 1, seq=book.seq + 1, ts=self.next_ts())
        book.u += 1
        book.seq += 1
        return self.publish(frame, apply=False)

    def send_raw(self, text: str, topic: str | None = None) -> int:
        """Send ``text`` as is (e.g. malformed JSON) to the subscribers of ``topic`` (None = everyone)."""
        n = 0
        for conn in list(self.conns):
            if not conn.closed and (conn.wants(topic) if topic else "*" not in conn.stalled):
                self._send(conn, topic or "", text)
                n += 1
        return n

    def stall(self, topic: str | None = None, *, hard: bool = False) -> None:
        """Stop sending data frames (of ``topic``, or all) on the open connections; control frames are
        still answered and a (re)subscribe of a topic resumes it. ``hard``: the open connections send
        nothing at all any more (no acks, no JSON pongs, no snapshots); only a new connection works."""
        for conn in self.conns:
            conn.stalled.add(topic or "*")
            conn.silent = conn.silent or hard

    def unstall(self) -> None:
        """Resume every stalled topic on the open connections."""
        for conn in self.conns:
            conn.stalled.clear()

    def refuse(self, n: int) -> None:
        """Answer the next ``n`` WebSocket upgrades with HTTP 503 (the client cannot connect)."""
        self._refuse = n


# --- the server -----------------------------------------------------------------------------------


class FakeBybit:
    """The fake Bybit V5 server: start it, point pybit at :attr:`base_url` / :attr:`ws_url`, script it.

    Parameters
    ----------
    instruments : sequence of dict, optional
        instruments-info entries (Bybit's JSON, e.g. :func:`load_instruments`).
    klines : KlineStore, optional
        Kline data for ``/v5/market/kline``.
    now_ms : int or callable, optional
        The server's clock (ms): the envelope's ``time``, which klines are visible and which one is
        still open. None = the wall clock. A test may reassign :attr:`now_ms`.
    ack_delay_s : float
        Delay of WebSocket subscribe acks, s.
    host, port : str, int
        Where to listen; port 0 picks a free one.
    api_key, api_secret : str, optional
        Given both: the trading side is switched on at once (:meth:`enable_trading`) with this key.
    balance_usdt : float
        The trading side's starting wallet balance, USDT (with ``api_key``).

    Attributes
    ----------
    public : PublicLinear
        The ``/v5/public/linear`` channel (scripting and faults).
    trading : TradingSide or None
        The trading side once :meth:`enable_trading` was called.
    calls : list of RestCall
        Every REST request, in order.
    rest_routes : dict
        ``(method, path)`` → handler(request, query) returning the ``result`` object (or raising
        :class:`BybitError`).
    ws_channels : dict
        WebSocket path → channel with ``async handle(request)``.
    """

    def __init__(
        self,
        *,
        instruments: Sequence[Mapping[str, Any]] = (),
        klines: KlineStore | None = None,
        now_ms: int | Callable[[], int] | None = None,
        ack_delay_s: float = 0.05,
        host: str = HOST,
        port: int = 0,
        api_key: str | None = None,
        api_secret: str | None = None,
        balance_usdt: float = 10_000.0,
    ) -> None:
        self.instruments = [dict(i) for i in instruments]
        self.klines = klines or KlineStore()
        self.now_ms = now_ms
        self.host = host
        self.port = port
        self.public = PublicLinear(self.clock_ms, ack_delay_s)
        self.calls: list[RestCall] = []
        self.rest_limit = 600
        self._faults: dict[str, list[RestFault]] = {}
        self._used: Counter[tuple[str, int]] = Counter()
        self.rest_routes: dict[tuple[str, str], RestHandler] = {
            ("GET", "/v5/market/time"): self._time,
            ("GET", "/v5/market/kline"): self._kline,
            ("GET", "/v5/market/instruments-info"): self._instruments,
            ("GET", "/v5/market/orderbook"): self._orderbook,
            ("GET", "/v5/market/tickers"): self._tickers,
        }
        self.ws_channels: dict[str, Any] = {self.public.path: self.public}
        self._runner: web.AppRunner | None = None
        self.ack_delay_s = ack_delay_s
        self.clock_skew_ms = 0
        self._skew_left: int | None = None
        self.trading: TradingSide | None = None
        if api_key is not None and api_secret is not None:
            self.enable_trading(api_key=api_key, api_secret=api_secret, balance_usdt=balance_usdt)

    def enable_trading(
        self, *, api_key: str = "key", api_secret: str = "secret", balance_usdt: float = 10_000.0, **kw: Any
    ) -> TradingSide:
        """Switch on the trading side (signed REST, ``/v5/private``, the matching engine) and return it.

        Also reachable as :attr:`trading`. ``kw`` goes to :class:`~nertz_common.testing.fake_bybit_trading.TradingSide`
        (fee rates, default leverage, default funding rate).
        """
        from nertz_common.testing.fake_bybit_trading import TradingSide

        self.trading = TradingSide(self, api_key=api_key, api_secret=api_secret, balance_usdt=balance_usdt, **kw)
        return self.trading

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> FakeBybit:
        """Listen on ``host:port`` (a free port when 0)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port when 0 was asked
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        for channel in list(self.ws_channels.values()):
            await channel.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBybit:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """REST base URL, e.g. ``http://127.0.0.1:41234`` (pybit ``HTTP.endpoint``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL, e.g. ``ws://127.0.0.1:41234`` (the path ``/v5/public/linear`` follows)."""
        return f"ws://{self.host}:{self.port}"

    def clock_ms(self) -> int:
        """The server's clock, ms."""
        now = self.now_ms
        if now is None:
            return time.time_ns() // 1_000_000
        return now() if callable(now) else now

    def set_clock_skew(self, skew_ms: int, requests: int | None = None) -> None:
        """Run the server's clock ``skew_ms`` ahead (negative: behind) of :meth:`clock_ms` for the next
        ``requests`` REST requests (None: until set back to 0). It moves the envelope's ``time``,
        ``/v5/market/time`` and the time window of signed requests."""
        self.clock_skew_ms = skew_ms
        self._skew_left = requests if skew_ms else None

    def _take_skew(self) -> int:
        skew = self.clock_skew_ms
        if skew and self._skew_left is not None:
            self._skew_left -= 1
            if self._skew_left <= 0:
                self.clock_skew_ms, self._skew_left = 0, None
        return skew

    # --- REST ---------------------------------------------------------------------------------------

    def fault(self, path: str, kind: RestFault | str, times: int = 1, **kw: Any) -> None:
        """Make the next ``times`` calls to ``path`` fail (see :class:`RestFault` for ``kind`` and ``kw``)."""
        f = kind if isinstance(kind, RestFault) else RestFault(kind=kind, times=times, **kw)  # type: ignore[arg-type]
        self._faults.setdefault(path, []).append(f)

    def calls_to(self, path: str) -> list[RestCall]:
        """The REST calls made to ``path``, in order."""
        return [c for c in self.calls if c.path == path]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        channel = self.ws_channels.get(request.path)
        if channel is not None and request.headers.get("Upgrade", "").lower() == "websocket":
            return cast(web.StreamResponse, await channel.handle(request))
        handler = self.rest_routes.get((request.method, request.path))
        if handler is None:
            return web.Response(status=404, text="404 page not found")
        query = dict(request.query)
        body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        fault = self._take_fault(request.path)
        answer = "ok"
        now = self.clock_ms() + self._take_skew()
        request[NOW_MS] = now
        headers = self._limit_headers(request.path, now)
        try:
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay_s)
            if fault is not None and fault.kind == "http_status":
                answer = f"http_{fault.status}"
                return web.Response(
                    status=fault.status,
                    text=f"<html><body><h1>{fault.status} fake error</h1></body></html>",
                    content_type="text/html",
                )
            if fault is not None and fault.kind == "rate_limit":
                answer = "rate_limit"
                reset = time.time_ns() // 1_000_000 + max(1, fault.reset_in_ms)  # must be in the future
                headers["X-Bapi-Limit-Status"] = "0"
                headers["X-Bapi-Limit-Reset-Timestamp"] = str(reset)
                return _envelope(10006, "Too many visits!", {}, now, headers)
            if fault is not None and fault.kind == "ret_code":
                answer = f"ret_{fault.ret_code}"
                return _envelope(fault.ret_code, fault.ret_msg, {}, now, headers)
            try:
                result = await handler(request, query)
            except BybitError as e:
                answer = f"ret_{e.ret_code}"
                return _envelope(e.ret_code, e.ret_msg, {}, now, headers)
            if isinstance(result, web.StreamResponse):  # a handler's own answer (e.g. HTTP 401)
                answer = f"http_{result.status}"
                return result
            return _envelope(0, "OK", result, now, headers)
        finally:
            answer = request.get(ANSWER, answer)
            call = RestCall(request.method, request.path, query, request.query_string, now, answer, body)
            self.calls.append(call)

    def _take_fault(self, path: str) -> RestFault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        f = queue[0]
        f.times -= 1
        if f.times <= 0:
            queue.pop(0)
        return f

    def _limit_headers(self, path: str, now_ms: int) -> dict[str, str]:
        second = now_ms // 1000
        self._used[(path, second)] += 1
        left = max(0, self.rest_limit - self._used[(path, second)])
        return {
            "X-Bapi-Limit": str(self.rest_limit),
            "X-Bapi-Limit-Status": str(left),
            "X-Bapi-Limit-Reset-Timestamp": str(max(now_ms, time.time_ns() // 1_000_000)),
        }

    async def _time(self, request: web.Request, q: dict[str, str]) -> dict[str, Any]:
        now = request.get(NOW_MS, self.clock_ms())
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    async def _kline(self, request: web.Request, q: dict[str, str]) -> dict[str, Any]:
        category = q.get("category", "linear")
        symbol = q.get("symbol", "")
        interval = q.get("interval", "")
        if not symbol or not interval:
            raise BybitError(10001, "params error: symbol and interval are required")
        if category != "linear":
            raise BybitError(10001, f"params error: category {category} is not served by the fake")
        if interval not in INTERVAL_MS:
            raise BybitError(10001, f"params error: interval invalid: {interval}")
        limit = _int(q, "limit", 200)
        if not 1 <= limit <= 1000:
            raise BybitError(10001, f"params error: limit must be in [1, 1000], was {limit}")
        if symbol not in self.klines.symbols:
            raise BybitError(10001, "Not supported symbols")
        start = _int(q, "start", None)
        end = _int(q, "end", None)
        rows = self.klines.query(symbol, interval, start, end, limit, self.clock_ms())
        return {"symbol": symbol, "category": category, "list": rows}

    async def _instruments(self, request: web.Request, q: dict[str, str]) -> dict[str, Any]:
        category = q.get("category", "")
        if category != "linear":
            raise BybitError(10001, f"params error: category {category or '(missing)'} is not served by the fake")
        rows = [i for i in self.instruments if i.get("status", "Trading") == q.get("status", "Trading")]
        if "symbol" in q:
            rows = [i for i in rows if i.get("symbol") == q["symbol"]]
        if "baseCoin" in q:
            rows = [i for i in rows if i.get("baseCoin") == q["baseCoin"]]
        limit = _int(q, "limit", 500)
        if not 1 <= limit <= 1000:
            raise BybitError(10001, f"params error: limit must be in [1, 1000], was {limit}")
        offset = int(q.get("cursor") or 0)
        page = rows[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(rows) else ""
        return {"category": category, "list": page, "nextPageCursor": cursor}

    async def _orderbook(self, request: web.Request, q: dict[str, str]) -> dict[str, Any]:
        symbol = q.get("symbol", "")
        if q.get("category") != "linear" or not symbol:
            raise BybitError(10001, "params error: category=linear and symbol are required")
        limit = _int(q, "limit", 25)
        if not 1 <= limit <= 1000:
            raise BybitError(10001, f"params error: limit must be in [1, 1000], was {limit}")
        books = [b for b in self.public.books.values() if b.symbol == symbol]
        book = max(books, key=lambda b: (b.depth, b.ts), default=None)
        now = self.clock_ms()
        if book is None:
            return {"s": symbol, "b": [], "a": [], "ts": now, "u": 0, "seq": 0, "cts": now}
        b, a = book.levels(limit)
        return {"s": symbol, "b": b, "a": a, "ts": book.ts, "u": book.u, "seq": book.seq, "cts": book.cts}

    async def _tickers(self, request: web.Request, q: dict[str, str]) -> dict[str, Any]:
        if q.get("category") != "linear":
            raise BybitError(10001, "params error: category=linear is required")
        rows = []
        for topic, state in sorted(self.public.tickers.items()):
            data = {k: v for k, v in state.items() if not k.startswith("_")}
            data.setdefault("symbol", topic.split(".", 1)[1])
            if "symbol" not in q or data["symbol"] == q["symbol"]:
                rows.append(data)
        return {"category": "linear", "list": rows}


# --- frames and recordings ------------------------------------------------------------------------


def book_frame(
    topic: str,
    kind: Literal["snapshot", "delta"],
    bids: Sequence[tuple[str | float, str | float]],
    asks: Sequence[tuple[str | float, str | float]],
    *,
    u: int,
    seq: int,
    ts: int,
) -> str:
    """Return an ``orderbook`` frame as Bybit sends it (numbers as strings; ``cts`` = ``ts`` - 2 ms)."""
    symbol = topic.rsplit(".", 1)[-1]
    return _dumps(
        {
            "topic": topic,
            "type": kind,
            "ts": ts,
            "data": {
                "s": symbol,
                "b": [[_s(p), _s(q)] for p, q in bids],
                "a": [[_s(p), _s(q)] for p, q in asks],
                "u": u,
                "seq": seq,
            },
            "cts": ts - 2,
        }
    )


def trade_frame(symbol: str, trades: Sequence[tuple[str | float, str | float, str]], *, ts: int, seq: int = 1) -> str:
    """Return a ``publicTrade`` frame of ``(price, size, side)`` trades (trade ids are uuid4)."""
    data = [
        {"T": ts - 1, "s": symbol, "S": side, "v": _s(q), "p": _s(p), "L": "PlusTick", "i": str(uuid.uuid4()),
         "BT": False, "RPI": False, "seq": seq}
        for p, q, side in trades
    ]  # fmt: skip
    return _dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts, "data": data})


def kline_frame(symbol: str, interval: str, row: Sequence[str], *, confirm: bool, ts: int) -> str:
    """Return a ``kline`` frame for one REST-shaped row ``[start, o, h, l, c, volume, turnover]``."""
    start = int(row[0])
    k = {
        "start": start, "end": start + INTERVAL_MS[interval] - 1, "interval": interval, "open": row[1],
        "close": row[4], "high": row[2], "low": row[3], "volume": row[5], "turnover": row[6],
        "confirm": confirm, "timestamp": ts,
    }  # fmt: skip
    return _dumps({"topic": f"kline.{interval}.{symbol}", "data": [k], "ts": ts, "type": "snapshot"})


def recorded_frames(path: Path, *, symbols: Iterable[str] | None = None) -> list[str]:
    """Return the raw ``/v5/public/linear`` frames of a cryptofeed format-2 recording, in receive order.

    Only frames with a topic (data frames) are kept; ``symbols`` keeps those of these symbols.
    """
    wanted = set(symbols) if symbols is not None else None
    conns: dict[str, bool] = {}
    out = []
    with _open_text(path) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("t") == "connect":
                conns[rec["conn"]] = str(rec.get("addr", "")).endswith(PUBLIC_LINEAR)
            elif rec.get("t") == "recv" and conns.get(rec.get("conn", "")):
                topic = json.loads(rec["data"]).get("topic", "")
                if topic and (wanted is None or topic.rsplit(".", 1)[-1] in wanted):
                    out.append(rec["data"])
    return out


def shift_frame(text: str, delta_ms: int, u_delta: int = 0) -> str:
    """Return a frame with its times moved by ``delta_ms`` (``ts``, ``cts``, trade ``T``, kline times)
    and an order book's ``u`` and ``seq`` by ``u_delta`` (a replayed loop is then new data, not a repeat)."""
    msg = json.loads(text)
    for key in ("ts", "cts"):
        if isinstance(msg.get(key), int):
            msg[key] += delta_ms
    data = msg.get("data")
    if isinstance(data, dict) and u_delta:
        for key in ("u", "seq"):
            if isinstance(data.get(key), int) and data[key] > 1:
                data[key] += u_delta
    if isinstance(data, list):
        for row in data:
            for key in ("T", "start", "end", "timestamp"):
                if isinstance(row.get(key), int):
                    row[key] += delta_ms
    return _dumps(msg)


# --- a guard for tests: no traffic beyond loopback --------------------------------------------------


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse, while active, every socket connection and name lookup that is not loopback.

    Yields the list of refused destinations (empty when the code under test stayed local). Unix
    sockets are allowed.
    """
    refused: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(address: Any) -> None:
        if isinstance(address, tuple) and address:
            host = str(address[0])
            try:
                ok = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
            except ValueError:
                ok = host == "localhost"
            if not ok:
                refused.append(host)
                raise ConnectionRefusedError(f"loopback_only: refused a connection to {host}")

    def connect(self: socket.socket, address: Any) -> None:
        _check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in ("localhost", "127.0.0.1", "::1") and not str(name).startswith("127."):
            refused.append(str(name))
            raise socket.gaierror(socket.EAI_NONAME, f"loopback_only: refused to resolve {name}")
        return real_getaddrinfo(host, *args, **kw)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    try:
        yield refused
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


# --- helpers --------------------------------------------------------------------------------------


def _envelope(code: int, msg: str, result: Any, now_ms: int, headers: dict[str, str]) -> web.Response:
    body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}
    return web.Response(text=_dumps(body), content_type="application/json", headers=headers)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _fmt(x: float) -> str:
    text = f"{x:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def _s(x: str | float) -> str:
    return x if isinstance(x, str) else _fmt(x)


def _int(q: Mapping[str, str], key: str, default: int | None) -> Any:
    if key not in q or q[key] == "":
        return default
    try:
        return int(q[key])
    except ValueError:
        raise BybitError(10001, f"params error: {key} must be an integer, was {q[key]!r}") from None


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".xz"):
        return cast(IO[str], lzma.open(path, "rt", encoding="utf-8"))
    if path.name.endswith(".gz"):
        return cast(IO[str], gzip.open(path, "rt", encoding="utf-8"))
    return path.open(encoding="utf-8")


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[FakeBybit]:
    """``async with running(...) as fake:`` — a started :class:`FakeBybit`, stopped at the end."""
    fake = FakeBybit(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


# --- a scripted live market -----------------------------------------------------------------------


class MarketScript:
    """A deterministic live market for the fake's public channel, minute by minute, from 1m klines.

    Every scripted minute ``m`` (the bar opening at ``start_ms + m`` minutes) sends, for each symbol in
    turn and at ``steps`` points of the minute (1 s, 16 s, 31 s, 46 s for 4 steps): an order book
    frame (the first one a snapshot, then deltas with ``u`` + 1), one public trade, an update of the
    still open kline (``confirm: false``, its close moving from the bar's open towards its close) and,
    at the first point, a ticker snapshot; then, at the minute's end, the closed kline (``confirm:
    true``) — the very row ``/v5/market/kline`` serves, so a bar from the WebSocket and the same bar
    from REST are one fact. The fake's clock (:attr:`FakeBybit.now_ms`) is moved to each frame's time
    before it is sent, so REST answers see the same market as the socket.

    Everything is a function of the rows and the parameters: book levels (``levels`` per side, one
    tick apart around the minute's moving price, sizes leaning to the side the price moves to), trade
    ids, ``cs``, ``u`` and ``seq``. Two plays of one script send the same frames; what a client
    receives depends only on when it was connected.

    Parameters
    ----------
    klines : KlineStore
        The 1m rows (the same store the fake's REST serves).
    instruments : sequence of dict
        instruments-info entries of the symbols (tick size and quantity step).
    symbols : sequence of str
        The symbols, in the order their frames go out within a step.
    start_ms : int
        Open time of the first scripted bar, UNIX ms (a bar of every symbol must exist there).
    minutes : int
        Scripted bars per symbol.
    steps : int
        Points per minute with a book frame, a trade and an open-kline update (at most 59).
    levels : int
        Book levels per side.

    Raises
    ------
    ValueError
        If a symbol has no instrument or lacks a bar in the scripted range.
    """

    def __init__(
        self,
        klines: KlineStore,
        instruments: Sequence[Mapping[str, Any]],
        symbols: Sequence[str],
        *,
        start_ms: int,
        minutes: int,
        steps: int = 4,
        levels: int = 20,
    ) -> None:
        if not 1 <= steps <= 59:
            raise ValueError(f"expected 1 <= steps <= 59, was {steps}")
        self.symbols = list(symbols)
        self.start_ms = start_ms
        self.minutes = minutes
        self.steps = steps
        self.levels = levels
        self.rows: dict[str, list[list[str]]] = {}
        self._tick: dict[str, tuple[float, int]] = {}
        self._step: dict[str, tuple[float, int]] = {}
        specs = {str(i.get("symbol")): i for i in instruments}
        for s in self.symbols:
            spec = specs.get(s)
            if spec is None:
                raise ValueError(f"expected an instrument for {s}, was absent")
            self._tick[s] = _grid(str(spec["priceFilter"]["tickSize"]))
            self._step[s] = _grid(str(spec["lotSizeFilter"]["qtyStep"]))
            starts, rows = klines.series(s, "1")
            i = bisect.bisect_left(starts, start_ms)
            got = rows[i : i + minutes]
            if (
                len(got) != minutes
                or int(got[0][0]) != start_ms
                or int(got[-1][0]) != start_ms + (minutes - 1) * MINUTE_MS
            ):
                raise ValueError(f"expected {minutes} contiguous 1m bars of {s} from {start_ms}, was {len(got)}")
            self.rows[s] = got
        self._books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self._u: dict[str, int] = {}

    @property
    def end_ms(self) -> int:
        """Close time of the last scripted bar, UNIX ms (the fake's clock once the script is played)."""
        return self.start_ms + self.minutes * MINUTE_MS

    def book_topic(self, symbol: str) -> str:
        """The book topic the script sends (``orderbook.50.<symbol>``)."""
        return f"orderbook.50.{symbol}"

    def minute(self, m: int) -> list[tuple[int, str]]:
        """Return minute ``m``'s frames as ``(exchange time ms, frame)``, in send order.

        Minutes must be asked in order from 0 (the book deltas follow the previous minute's book).
        """
        open_ms = self.start_ms + m * MINUTE_MS
        out: list[tuple[int, str]] = []
        for j in range(self.steps):
            ts = open_ms + j * (MINUTE_MS // self.steps) + 1000
            for s in self.symbols:
                row = self.rows[s][m]
                o, c = float(row[1]), float(row[4])
                price = o + (c - o) * (j + 1) / (self.steps + 1)
                out.append((ts, self._book_frame(s, price, o, ts, f"{m}/{j}")))
                out.append((ts, self._trade_frame(s, price, "Buy" if c >= o else "Sell", ts, m, j)))
                out.append((ts, self._open_kline(s, row, price, (j + 1) / (self.steps + 1), ts)))
                if j == 0:
                    out.append((ts, self._ticker_frame(s, o, ts, m)))
        close_ms = open_ms + MINUTE_MS
        for s in self.symbols:
            out.append((close_ms, kline_frame(s, "1", self.rows[s][m], confirm=True, ts=close_ms)))
        return out

    async def play(self, fake: FakeBybit, *, pace_s: float, start: asyncio.Event | None = None) -> int:
        """Send every minute to ``fake``'s public channel, one every ``pace_s`` seconds of wall time
        (after ``start`` is set, when given), moving its clock along; return the frames sent.

        The pace is the exchange's: frames go out on time whether anyone is connected or not.
        """
        if start is not None:
            await start.wait()
        t0 = time.monotonic()
        n = 0
        for m in range(self.minutes):
            for ts, frame in self.minute(m):
                fake.now_ms = ts
                fake.public.publish(frame)
                n += 1
            fake.now_ms = self.start_ms + (m + 1) * MINUTE_MS
            await asyncio.sleep(max(0.0, t0 + (m + 1) * pace_s - time.monotonic()))
        return n

    def _fmt_price(self, symbol: str, ticks: int) -> str:
        tick, digits = self._tick[symbol]
        return f"{ticks * tick:.{digits}f}"

    def _fmt_qty(self, symbol: str, qty: float) -> str:
        step, digits = self._step[symbol]
        return f"{max(step, round(qty / step) * step):.{digits}f}"

    def _book_frame(self, symbol: str, price: float, open_: float, ts: int, salt: str) -> str:
        tick, _ = self._tick[symbol]
        step, _ = self._step[symbol]
        lean = max(-1.0, min(1.0, (price - open_) / open_ / 0.001))  # bids heavier when the price rises
        rng = random.Random(f"{symbol}/{salt}")
        best = int(price / tick)
        base = step * 400
        bids = {
            self._fmt_price(symbol, best - k): self._fmt_qty(symbol, base * rng.uniform(0.5, 1.5) * (1 + 0.8 * lean))
            for k in range(self.levels)
        }
        asks = {
            self._fmt_price(symbol, best + 1 + k): self._fmt_qty(
                symbol, base * rng.uniform(0.5, 1.5) * (1 - 0.8 * lean)
            )
            for k in range(self.levels)
        }
        topic = self.book_topic(symbol)
        old = self._books.get(topic)
        self._books[topic] = (bids, asks)
        if old is None:
            self._u[topic] = 1000
            return book_frame(topic, "snapshot", list(bids.items()), list(asks.items()), u=1000, seq=10_000, ts=ts)
        u = self._u[topic] = self._u[topic] + 1

        def delta(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str]]:
            gone = [(p, "0") for p in before if p not in after]
            return gone + [(p, q) for p, q in after.items() if before.get(p) != q]

        return book_frame(topic, "delta", delta(old[0], bids), delta(old[1], asks), u=u, seq=u * 10, ts=ts)

    def _trade_frame(self, symbol: str, price: float, side: str, ts: int, m: int, j: int) -> str:
        tick, _ = self._tick[symbol]
        step, _ = self._step[symbol]
        trade = {
            "T": ts - 1, "s": symbol, "S": side, "v": self._fmt_qty(symbol, step * (10 + (m * 7 + j * 3) % 50)),
            "p": self._fmt_price(symbol, round(price / tick)), "L": "PlusTick", "i": f"script-{symbol}-{m}-{j}",
            "BT": False, "RPI": False, "seq": m * self.steps + j + 1,
        }  # fmt: skip
        return _dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts, "data": [trade]})

    def _open_kline(self, symbol: str, row: Sequence[str], price: float, part: float, ts: int) -> str:
        tick, _ = self._tick[symbol]
        o = float(row[1])
        close = self._fmt_price(symbol, round(price / tick))
        hi = max(o, float(close))
        lo = min(o, float(close))
        vol = float(row[5]) * part
        partial = [row[0], row[1], _fmt(hi), _fmt(lo), close, _fmt(vol), _fmt(vol * float(close))]
        return kline_frame(symbol, "1", partial, confirm=False, ts=ts)

    def _ticker_frame(self, symbol: str, price: float, ts: int, m: int) -> str:
        tick, _ = self._tick[symbol]
        ticks = round(price / tick)
        eight_h = 8 * 60 * MINUTE_MS
        data = {
            "symbol": symbol, "lastPrice": self._fmt_price(symbol, ticks), "markPrice": self._fmt_price(symbol, ticks),
            "indexPrice": self._fmt_price(symbol, ticks), "bid1Price": self._fmt_price(symbol, ticks),
            "ask1Price": self._fmt_price(symbol, ticks + 1), "fundingRate": "0.0001", "fundingIntervalHour": "8",
            "nextFundingTime": str((ts // eight_h + 1) * eight_h), "openInterest": "50000", "turnover24h": "500000000",
            "volume24h": "10000",
        }  # fmt: skip
        return _dumps({"topic": f"tickers.{symbol}", "type": "snapshot", "data": data, "cs": m + 1, "ts": ts})


def _grid(text: str) -> tuple[float, int]:
    """A tick size or quantity step as a string ("0.10") → (its value, the decimals it needs)."""
    value = float(text)
    digits = len(text.rstrip("0").partition(".")[2])
    return value, digits


# --- by hand --------------------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[5]


async def _serve(args: argparse.Namespace) -> None:
    klines = KlineStore()
    for p in args.klines:
        klines.add_csv(Path(p))
    instruments = load_instruments(Path(args.instruments)) if args.instruments else []
    fake = FakeBybit(instruments=instruments, klines=klines, port=args.port)
    if args.api_key:
        fake.enable_trading(api_key=args.api_key, api_secret=args.api_secret, balance_usdt=args.balance)
    await fake.start()
    print(f"fake Bybit V5 on {fake.base_url} (REST) and {fake.ws_url}{PUBLIC_LINEAR} (WebSocket)", flush=True)
    if args.api_key:
        print(f"  trading side on: key {args.api_key!r}, private WebSocket {fake.ws_url}/v5/private", flush=True)
    print(
        f"  NERTZ_INGEST__LIVE__REST_URL={fake.base_url} NERTZ_INGEST__LIVE__WS_URL={fake.ws_url} "
        "python -m nertz_ingest live --depth 200",
        flush=True,
    )
    frames = recorded_frames(Path(args.recording)) if args.recording else []
    try:
        if not frames:
            await asyncio.Event().wait()
        first = json.loads(frames[0])["ts"]
        loop_ms = json.loads(frames[-1])["ts"] - first + 1000
        delta: int | None = None
        for n in itertools.count():
            while not any(c.topics for c in fake.public.conns):
                await asyncio.sleep(0.2)
            # rebase onto now, and move each loop on, so time (and each book's u) never goes backwards
            delta = time.time_ns() // 1_000_000 - first if delta is None else delta + loop_ms
            shifted = (shift_frame(f, delta, n * 100_000_000) for f in frames)
            sent = await fake.public.play(shifted, speed=args.speed)
            print(f"played the recording once more ({sent} frames sent)", flush=True)
            if not args.loop:
                await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake Bybit V5 until Ctrl-C (for running market-ingest live against it by hand)."""
    data = _REPO / "data"
    p = argparse.ArgumentParser(
        prog="python -m nertz_common.testing.fake_bybit",
        description="A fake Bybit V5 server on 127.0.0.1 (public linear WebSocket + market REST), for tests and demos.",
    )
    p.add_argument("--port", type=int, default=18080, help="port to listen on (0 = any free port; default 18080)")
    p.add_argument(
        "--instruments",
        default=str(_REPO / "tests" / "ingest" / "data" / "bybit_instruments_linear.json"),
        help="instruments-info JSON (default: the BTC/ETH/SOL sample of the tests)",
    )
    p.add_argument(
        "--klines",
        nargs="*",
        default=[str(x) for x in sorted((data / "bybit_kline_1m").glob("*_1m.csv.xz"))],
        help="kline CSVs served by /v5/market/kline (default: the bundled 30 days)",
    )
    p.add_argument(
        "--recording",
        default=str(data / "cryptofeed" / "BYBIT.linear.jsonl.xz"),
        help="cryptofeed recording whose linear frames are served once a client subscribes ('' = none)",
    )
    p.add_argument("--speed", type=float, default=1.0, help="playback speed of the recording (default 1 = real time)")
    p.add_argument("--loop", action="store_true", help="play the recording again and again (times moved on)")
    p.add_argument("--api-key", default="", help="switch on the trading side with this API key ('' = off)")
    p.add_argument("--api-secret", default="secret", help="the trading side's API secret (default 'secret')")
    p.add_argument("--balance", type=float, default=10_000.0, help="starting USDT wallet balance (default 10000)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
