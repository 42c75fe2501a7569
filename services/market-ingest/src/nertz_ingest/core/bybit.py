"""Parse raw Bybit V5 public linear WebSocket frames into ``md.*`` events.

One :class:`BybitParser` holds the state that frames build on (an :class:`~nertz_ingest.core.book.OrderBook`
per ``orderbook`` topic, the merged state per ``tickers`` topic). The live feed and the replayer hand it
the same raw frame text with the frame's receive time, so both paths emit identical events.

Topics (Bybit docs ``websocket/public/*``, WIRE.md §4.3):

=========================== ==================================================================
``orderbook.<depth>.<sym>`` snapshot/delta → maintained book → conflated ``BookSnapshot``,
                            ``FeedGap``/``FeedResynced`` (see :mod:`nertz_ingest.core.book`)
``publicTrade.<sym>``       → one ``TradeBatch`` per frame (trades in match order)
``kline.<interval>.<sym>``  → one ``Bar`` per kline in the frame (``closed`` = ``confirm``)
``tickers.<sym>``           snapshot + partial deltas → the merged full-state ``Ticker``
=========================== ==================================================================

Subscribe acks and pongs (frames with ``op`` and no ``topic``) yield nothing; a failed request yields
a rejection. Exchange milliseconds become nanoseconds; ``ts_init`` of every event is the frame's
receive time (ns). Event ids are uuid5 of what identifies the event, so re-ingesting a frame gives the
same id. Bad frames never raise: they come back as :class:`~nertz_ingest.core.rejection.Rejected`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeAlias

import msgspec
from msgspec import Raw, Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_ingest.core.bars import make_bar
from nertz_ingest.core.book import Level, OrderBook
from nertz_ingest.core.rejection import (
    BadInput,
    Rejected,
    check_finite,
    check_price,
    check_size,
    from_validation_error,
    to_float,
)

MS = 1_000_000
"""Nanoseconds per millisecond."""
I64 = 2**63 - 1
MAX_MS = I64 // MS
"""Latest representable time, ms (int64 nanoseconds end in 2262)."""

_INF = math.inf
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")

#: Bybit kline interval -> duration, ms ("M" is a calendar month: its close time is ``end`` + 1 ms)
KLINE_INTERVAL_MS: dict[str, int | None] = {
    **{str(m): m * 60_000 for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": 86_400_000,
    "W": 7 * 86_400_000,
    "M": None,
}

Output: TypeAlias = ev.Event | Rejected
"""What a frame yields: events to publish, in order, and rejections to count and dead-letter."""


class _Envelope(Struct):
    topic: str = ""
    type: str = ""
    ts: int | None = None
    cs: int | None = None
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""
    data: Raw = Raw(b"")


class _BookData(Struct):
    s: str
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    u: int
    seq: int = 0


class _Trade(Struct):
    T: int
    s: str
    S: str
    v: float
    p: float
    i: str


class _Kline(Struct):
    start: int
    end: int
    interval: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    confirm: bool
    turnover: float | None = None


def _ms_to_ns(value: Any, what: str) -> int:
    if isinstance(value, str):
        value = to_float(value, what)
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MS:
        raise BadInput("bad_timestamp", f"expected {what} in [0, {MAX_MS}] ms, was {value!r}")
    return value * MS


def _hours(value: Any, what: str) -> int:
    h = to_float(value, what)
    if not (math.isfinite(h) and 0 <= h <= 10_000 and h == int(h)):
        raise BadInput("bad_field", f"expected {what} a whole number of hours in [0, 10000], was {value!r}")
    return int(h)


#: ticker field (Bybit name, Ticker attribute, converter); absent or "" means "unchanged" in a delta
_TICKER_FIELDS: tuple[tuple[str, str, Callable[[Any, str], Any]], ...] = (
    ("lastPrice", "last_price", lambda v, w: check_price(to_float(v, w), w)),
    ("markPrice", "mark_price", lambda v, w: check_price(to_float(v, w), w)),
    ("indexPrice", "index_price", lambda v, w: check_price(to_float(v, w), w)),
    ("bid1Price", "bid1_price", lambda v, w: check_price(to_float(v, w), w)),
    ("ask1Price", "ask1_price", lambda v, w: check_price(to_float(v, w), w)),
    ("fundingRate", "funding_rate", lambda v, w: check_finite(to_float(v, w), w)),
    ("fundingIntervalHour", "funding_interval_h", _hours),
    ("nextFundingTime", "next_funding_time_ns", _ms_to_ns),
    ("openInterest", "open_interest", lambda v, w: check_size(to_float(v, w), w)),
    ("turnover24h", "turnover_24h", lambda v, w: check_size(to_float(v, w), w)),
    ("volume24h", "volume_24h", lambda v, w: check_size(to_float(v, w), w)),
)


class BybitParser:
    """Turn raw Bybit V5 public linear frames into events, keeping books and tickers per topic.

    Parameters
    ----------
    top_n : int
        Levels per side in each ``BookSnapshot`` (default 50).
    min_interval_ms : int
        Minimum exchange time between two ``BookSnapshot`` of one book, ms (default 100).
    symbols : collection of str, optional
        Only these symbols are parsed; frames of others yield nothing. None = all.

    Attributes
    ----------
    books : dict of str to OrderBook
        The maintained books, by Bybit topic.
    """

    def __init__(self, *, top_n: int = 50, min_interval_ms: int = 100, symbols: Collection[str] | None = None) -> None:
        if top_n < 1:
            raise ValueError(f"expected top_n >= 1, was {top_n}")
        if min_interval_ms < 0:
            raise ValueError(f"expected min_interval_ms >= 0, was {min_interval_ms}")
        self.top_n = top_n
        self.min_interval_ns = min_interval_ms * MS
        self.symbols = frozenset(symbols) if symbols is not None else None
        self.books: dict[str, OrderBook] = {}
        self._tickers: dict[str, dict[str, Any]] = {}
        self._good_symbols: set[str] = set()
        self._env = msgspec.json.Decoder(_Envelope)
        self._book = msgspec.json.Decoder(_BookData, strict=False)
        self._trades = msgspec.json.Decoder(list[_Trade], strict=False)
        self._klines = msgspec.json.Decoder(list[_Kline], strict=False)
        self._object = msgspec.json.Decoder(dict[str, Any])

    def serve(self, symbols: Collection[str]) -> None:
        """Parse only ``symbols`` from now on; the books and tickers of the others are forgotten, so a
        symbol served again starts from its next snapshot."""
        self.symbols = frozenset(symbols)
        for state in (self.books, self._tickers):
            for topic in [t for t in state if t.rsplit(".", 1)[-1] not in self.symbols]:
                del state[topic]

    def feed(self, raw: str | bytes, recv_ns: int) -> list[Output]:
        """Parse one frame.

        Parameters
        ----------
        raw : str or bytes
            The frame exactly as received (JSON text).
        recv_ns : int
            When the frame was received, UNIX ns: the ``ts_init`` of the events it yields.

        Returns
        -------
        list of Event or Rejected
            The events to publish, in order (often none: acks, conflated deltas, other symbols), or a
            rejection; a rejected ``orderbook`` frame of a live book also yields that book's ``FeedGap``
            (the book missed an update).
        """
        try:
            env = self._env.decode(raw)
        except msgspec.ValidationError as e:
            bad = from_validation_error(e, "frame")
            return [self._reject(raw, bad, "", recv_ns)]
        except msgspec.DecodeError as e:
            return [Rejected("invalid_json", f"expected a JSON object, {e}", _text(raw), ts_ns=recv_ns)]
        topic = env.topic
        if not topic:
            if env.op is None and env.success is None:
                return [Rejected("missing_field", "expected a 'topic' or an 'op'", _text(raw), ts_ns=recv_ns)]
            if env.success is False:
                detail = f"{env.op or 'request'} failed: {env.ret_msg!r}"
                return [Rejected("request_failed", detail, _text(raw), ts_ns=recv_ns)]
            return []  # subscribe ack, pong
        parts = topic.split(".")
        symbol = parts[-1]
        if self.symbols is not None and symbol not in self.symbols:
            return []
        kind = parts[0]
        try:
            if symbol not in self._good_symbols:
                self._check_symbol(symbol, topic)
            if env.ts is None:
                raise BadInput("missing_field", "expected the frame's 'ts' (ms)")
            if not 0 <= env.ts <= MAX_MS:
                raise BadInput("bad_timestamp", f"expected ts in [0, {MAX_MS}] ms, was {env.ts}")
            if not env.data:
                raise BadInput("missing_field", "expected the frame's 'data'")
            ts_ns = env.ts * MS
            if kind == "orderbook" and len(parts) == 3 and parts[1].isdigit():
                return self._on_book(env, symbol, int(parts[1]), ts_ns, recv_ns)  # type: ignore[return-value]
            if kind == "publicTrade" and len(parts) == 2:
                return self._on_trades(env, symbol, ts_ns, recv_ns)
            if kind == "kline" and len(parts) == 3:
                return self._on_klines(env, symbol, parts[1], ts_ns, recv_ns)  # type: ignore[return-value]
            if kind == "tickers" and len(parts) == 2:
                return self._on_ticker(env, symbol, ts_ns, recv_ns)
            raise BadInput(
                "unknown_topic", f"expected an orderbook, publicTrade, kline or tickers topic, was {topic!r}"
            )
        except BadInput as bad:
            out: list[Output] = [self._reject(raw, bad, topic, recv_ns)]
            book = self.books.get(topic)
            if book is not None:
                ts_ns = env.ts * MS if env.ts is not None and 0 <= env.ts <= MAX_MS else recv_ns
                out.extend(book.invalidate(f"rejected frame ({bad.reason})", ts_ns, recv_ns))
            return out

    # --- topics -------------------------------------------------------------------------------------

    def _on_book(self, env: _Envelope, symbol: str, depth: int, ts_ns: int, recv_ns: int) -> list[ev.Event]:
        if env.type not in ("snapshot", "delta"):
            raise BadInput("bad_field", f"expected type 'snapshot' or 'delta', was {env.type!r}")
        try:
            d = self._book.decode(env.data)
        except msgspec.ValidationError as e:
            raise from_validation_error(e, "data") from None
        if d.s != symbol:
            raise BadInput("bad_field", f"expected data.s {symbol!r} as in the topic, was {d.s!r}")
        if not (0 <= d.u <= I64 and 0 <= d.seq <= I64):
            raise BadInput("bad_field", f"expected u and seq in [0, 2^63), was u={d.u} seq={d.seq}")
        _check_levels(d.b, "b")
        _check_levels(d.a, "a")
        book = self.books.get(env.topic)
        if book is None:
            book = self.books[env.topic] = OrderBook(
                symbol, depth, top_n=self.top_n, min_interval_ns=self.min_interval_ns
            )
        if env.type == "snapshot":
            return book.on_snapshot(d.b, d.a, d.u, d.seq, ts_ns, recv_ns)
        return book.on_delta(d.b, d.a, d.u, d.seq, ts_ns, recv_ns)

    def _on_trades(self, env: _Envelope, symbol: str, ts_ns: int, recv_ns: int) -> list[Output]:
        try:
            rows = self._trades.decode(env.data)
        except msgspec.ValidationError as e:
            raise from_validation_error(e, "data") from None
        if not rows:
            return []
        trades = []
        for i, t in enumerate(rows):
            where = f"data[{i}]"
            if t.s != symbol:
                raise BadInput("bad_field", f"expected {where}.s {symbol!r} as in the topic, was {t.s!r}")
            if t.S not in ("Buy", "Sell"):
                raise BadInput("bad_field", f"expected {where}.S 'Buy' or 'Sell', was {t.S!r}")
            if not t.i:
                raise BadInput("missing_field", f"expected a trade id in {where}.i")
            trades.append(
                ev.Trade(
                    ts_event=_ms_to_ns(t.T, f"{where}.T"),
                    price=check_price(t.p, f"{where}.p"),
                    qty=check_size(t.v, f"{where}.v"),
                    side=t.S,  # type: ignore[arg-type]
                    trade_id=t.i,
                )
            )
        return [
            ev.TradeBatch(
                event_id=derive_id("TradeBatch", symbol, env.ts, rows[0].i, rows[-1].i, len(rows)),
                ts_event=ts_ns,
                ts_init=recv_ns,
                symbol=symbol,
                trades=trades,
            )
        ]

    def _on_klines(self, env: _Envelope, symbol: str, interval: str, ts_ns: int, recv_ns: int) -> list[ev.Event]:
        if interval not in KLINE_INTERVAL_MS:
            raise BadInput("unknown_topic", f"expected a kline interval in {list(KLINE_INTERVAL_MS)}, was {interval!r}")
        try:
            rows = self._klines.decode(env.data)
        except msgspec.ValidationError as e:
            raise from_validation_error(e, "data") from None
        out: list[ev.Event] = []
        dur_ms = KLINE_INTERVAL_MS[interval]
        for i, k in enumerate(rows):
            where = f"data[{i}]"
            if k.interval != interval:
                raise BadInput(
                    "bad_field", f"expected {where}.interval {interval!r} as in the topic, was {k.interval!r}"
                )
            open_ns = _ms_to_ns(k.start, f"{where}.start")
            check_ohlc(k.open, k.high, k.low, k.close, where)
            volume = check_size(k.volume, f"{where}.volume")
            turnover = None if k.turnover is None else check_size(k.turnover, f"{where}.turnover")
            if not k.confirm:
                ts_bar = ts_ns  # an open bar's event time is the update's
            elif dur_ms is not None:
                ts_bar = open_ns + dur_ms * MS
            else:  # D/W/M: the close time is the kline's end
                ts_bar = _ms_to_ns(k.end + 1, f"{where}.end")
            out.append(
                make_bar(
                    symbol,
                    interval,
                    open_ns,
                    ts_event=ts_bar,
                    ts_init=recv_ns,
                    open=k.open,
                    high=k.high,
                    low=k.low,
                    close=k.close,
                    volume=volume,
                    turnover=turnover,
                    closed=k.confirm,
                )
            )
        return out

    def _on_ticker(self, env: _Envelope, symbol: str, ts_ns: int, recv_ns: int) -> list[Output]:
        if env.type not in ("snapshot", "delta"):
            raise BadInput("bad_field", f"expected type 'snapshot' or 'delta', was {env.type!r}")
        try:
            data = self._object.decode(env.data)
        except msgspec.ValidationError as e:
            raise from_validation_error(e, "data") from None
        if data.get("symbol", symbol) != symbol:
            raise BadInput("bad_field", f"expected data.symbol {symbol!r} as in the topic, was {data['symbol']!r}")
        state = {} if env.type == "snapshot" else dict(self._tickers.get(env.topic, {}))
        for src, dst, convert in _TICKER_FIELDS:
            value = data.get(src)
            if value is None or value == "":
                continue
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise BadInput("not_numeric", f"expected a number for data.{src}, was {value!r}")
            state[dst] = convert(value, f"data.{src}")
        self._tickers[env.topic] = state
        return [
            ev.Ticker(
                event_id=derive_id("Ticker", symbol, env.cs, env.ts),
                ts_event=ts_ns,
                ts_init=recv_ns,
                symbol=symbol,
                **state,
            )
        ]

    # --- helpers ------------------------------------------------------------------------------------

    def _check_symbol(self, symbol: str, topic: str) -> None:
        if not _SYMBOL.fullmatch(symbol):
            raise BadInput("bad_symbol", f"expected a symbol of 2-30 of A-Z 0-9 in topic, was {topic!r}")
        self._good_symbols.add(symbol)

    @staticmethod
    def _reject(raw: str | bytes, bad: BadInput, topic: str, recv_ns: int) -> Rejected:
        return Rejected(bad.reason, bad.detail, _text(raw), topic=topic, ts_ns=recv_ns)


def check_ohlc(o: float, h: float, lo: float, c: float, where: str) -> None:
    """Check a bar's prices: each finite and > 0, ``high >= low``, open and close within [low, high].

    Raises
    ------
    BadInput
        ``nan``, ``infinite``, ``non_positive_price``, ``high_below_low`` or ``ohlc_inconsistent``.
    """
    check_price(o, f"{where}.open")
    check_price(h, f"{where}.high")
    check_price(lo, f"{where}.low")
    check_price(c, f"{where}.close")
    if h < lo:
        raise BadInput("high_below_low", f"expected {where} high >= low, was high {h} < low {lo}")
    if not (lo <= o <= h and lo <= c <= h):
        raise BadInput("ohlc_inconsistent", f"expected {where} open and close in [low {lo}, high {h}], was {o}, {c}")


def _check_levels(levels: Sequence[Level], side: str) -> None:
    for p, q in levels:
        if not (0.0 < p < _INF and 0.0 <= q < _INF):
            break
    else:
        return
    for i, (p, q) in enumerate(levels):
        check_price(p, f"price at {side}[{i}]")
        check_size(q, f"size at {side}[{i}]")


def _text(raw: str | bytes) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
