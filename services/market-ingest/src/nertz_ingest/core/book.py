"""A Bybit V5 order book for one topic (``orderbook.<depth>.<symbol>``), with conflated top-N output.

Rules (Bybit docs ``websocket/public/orderbook``, WIRE.md §4.3):

- a snapshot replaces the book; ``u == 1`` (snapshot or delta) means the server restarted: reset too;
- a delta must carry ``u == last_u + 1``, otherwise updates were lost (a gap);
- in a delta, size 0 deletes the level, an unknown price inserts it, a known one updates it;
- a crossed or locked book (best bid >= best ask) after applying a frame is a gap as well.

On a gap the book emits :class:`~nertz_common.events.FeedGap` once and publishes nothing until the next
snapshot, which emits :class:`~nertz_common.events.FeedResynced` and then a ``BookSnapshot``.

Output is conflated: at most one ``BookSnapshot`` per ``min_interval_ns`` of exchange time (``ts``),
plus the first one right after every snapshot frame. Level-1 books (``orderbook.1``) consist of
snapshots only, so for them only a snapshot that (re)starts the book bypasses the interval.

Layout (for speed: the core must apply well over 500k level updates/s with its top-N snapshots, see
``bench/bench_ingest.py``): each side is two parallel lists sorted by ascending price, the prices
(searched with ``bisect``: O(log n) C comparisons) and the ``(price, size)`` levels themselves. An update
of a known price stores the incoming level tuple as is (no allocation); an insert or delete is one short
memmove per list (a Bybit book has at most 1000 levels). Best bid and ask are the ends of the lists, so
the crossed-book check is O(1), and the top N levels of a side are one slice (O(N), no sorting, no new
tuples), which is what makes a snapshot per delta cheap.

Time is the frame's: ``ts_event`` is Bybit's ``ts`` and ``ts_init`` the frame's receive time (ns).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Sequence
from typing import Literal

from nertz_common import events as ev
from nertz_common.ids import NERTZ_NAMESPACE, derive_id

Level = tuple[float, float]
"""``(price, size)``: price in USDT, size in base currency; size 0 deletes the level in a delta."""

BookStatus = Literal["new", "live", "gapped"]


class OrderBook:
    """The maintained book of one Bybit ``orderbook.<depth>.<symbol>`` topic.

    Parameters
    ----------
    symbol : str
        Exchange symbol, e.g. ``BTCUSDT``.
    depth : int
        The topic's depth (1, 50, 200, 1000); part of event ids and the ``FeedGap`` topic.
    top_n : int
        Levels per side in each published ``BookSnapshot``.
    min_interval_ns : int
        Minimum exchange time between two published snapshots, ns (100 ms = ``100_000_000``).

    Attributes
    ----------
    status : {"new", "live", "gapped"}
        ``new`` before the first snapshot, ``gapped`` after a gap until the next snapshot.
    last_u : int
        Bybit update id ``u`` of the last applied frame (0 before any).
    seq : int
        Bybit cross sequence of the last applied frame.
    gaps, resyncs : int
        How many gaps and resyncs this book went through.
    """

    __slots__ = (
        "_ask_px",
        "_asks",
        "_bid_px",
        "_bids",
        "_id_prefix",
        "_id_suffix",
        "_last_pub_ns",
        "depth",
        "gaps",
        "last_u",
        "min_interval_ns",
        "resyncs",
        "seq",
        "status",
        "symbol",
        "top_n",
        "topic",
    )

    def __init__(self, symbol: str, depth: int, *, top_n: int = 50, min_interval_ns: int = 100_000_000) -> None:
        if top_n < 1:
            raise ValueError(f"expected top_n >= 1, was {top_n}")
        if min_interval_ns < 0:
            raise ValueError(f"expected min_interval_ns >= 0, was {min_interval_ns}")
        self.symbol = symbol
        self.depth = depth
        self.topic = f"orderbook.{depth}.{symbol}"  # Bybit's topic name, not a NATS subject
        self.top_n = top_n
        self.min_interval_ns = min_interval_ns
        self._bid_px: list[float] = []  # ascending; best bid is the last
        self._bids: list[Level] = []  # the levels of _bid_px, same order
        self._ask_px: list[float] = []  # ascending; best ask is the first
        self._asks: list[Level] = []
        self.status: BookStatus = "new"
        self.last_u = 0
        self.seq = 0
        self.gaps = 0
        self.resyncs = 0
        self._last_pub_ns: int | None = None
        # BookSnapshot ids are derive_id("BookSnapshot", symbol, depth, u, top_n): hash the constant
        # prefix once (half the cost of an id, and an id is made for almost every delta)
        self._id_prefix = hashlib.sha1(NERTZ_NAMESPACE.bytes + f"BookSnapshot|{symbol}|{depth}|".encode())
        self._id_suffix = f"|{top_n}"

    # --- frames -------------------------------------------------------------------------------------

    def on_snapshot(
        self, bids: Sequence[Level], asks: Sequence[Level], u: int, seq: int, ts_ns: int, recv_ns: int
    ) -> list[ev.Event]:
        """Replace the book with a snapshot and return the events it causes.

        Parameters
        ----------
        bids, asks : sequence of (price, size)
            Validated levels (price > 0, size >= 0, finite); any order; size-0 levels are ignored.
        u : int
            Bybit update id.
        seq : int
            Bybit cross sequence.
        ts_ns : int
            Exchange time of the frame (``ts``), UNIX ns.
        recv_ns : int
            Receive time of the frame, UNIX ns (``ts_init`` of the events).

        Returns
        -------
        list of Event
            ``[FeedResynced, BookSnapshot]`` after a gap, ``[BookSnapshot]`` normally, ``[]`` when a
            level-1 snapshot is conflated away, ``[FeedGap]`` if the snapshot itself is crossed.
        """
        was = self.status
        self._bid_px, self._bids = _side(bids)
        self._ask_px, self._asks = _side(asks)
        self.last_u = u
        self.seq = seq
        if self._crossed():
            if was == "gapped":
                return []
            return self._gap(self._crossed_reason(), u, ts_ns, recv_ns)
        out: list[ev.Event] = []
        if was == "gapped":
            self.resyncs += 1
            out.append(
                ev.FeedResynced(
                    event_id=derive_id("FeedResynced", self.symbol, self.depth, u, ts_ns),
                    ts_event=ts_ns,
                    ts_init=recv_ns,
                    symbol=self.symbol,
                    topic=self.topic,
                    update_id=u,
                )
            )
        self.status = "live"
        restarted = was != "live" or u == 1
        if self.depth != 1 or restarted or self._due(ts_ns):
            out.append(self._publish(ts_ns, recv_ns))
        return out

    def on_delta(
        self, bids: Sequence[Level], asks: Sequence[Level], u: int, seq: int, ts_ns: int, recv_ns: int
    ) -> list[ev.Event]:
        """Apply a delta and return the events it causes (parameters as :meth:`on_snapshot`).

        Returns
        -------
        list of Event
            ``[BookSnapshot]`` when one is due, ``[FeedGap]`` on a gap or a crossed book, ``[]`` while
            conflating or while gapped (deltas are dropped until the next snapshot).
        """
        if u == 1:
            return self.on_snapshot(bids, asks, u, seq, ts_ns, recv_ns)
        if self.status != "live":
            if self.status == "new":
                return self._gap("delta before the first snapshot", u, ts_ns, recv_ns)
            return []
        if u != self.last_u + 1:
            return self._gap(f"expected u={self.last_u + 1}, was {u}", u, ts_ns, recv_ns)
        if bids:
            _apply(self._bid_px, self._bids, bids)
        if asks:
            _apply(self._ask_px, self._asks, asks)
        self.last_u = u
        self.seq = seq
        bid_px = self._bid_px
        ask_px = self._ask_px
        if bid_px and ask_px and bid_px[-1] >= ask_px[0]:
            return self._gap(self._crossed_reason(), u, ts_ns, recv_ns)
        last = self._last_pub_ns
        if last is None or ts_ns - last >= self.min_interval_ns:
            return [self._publish(ts_ns, recv_ns)]
        return []

    def invalidate(self, reason: str, ts_ns: int, recv_ns: int) -> list[ev.Event]:
        """Mark the book untrusted (e.g. one of its frames was rejected); return ``[FeedGap]`` if it was live."""
        if self.status != "live":
            return []
        return self._gap(reason, self.last_u, ts_ns, recv_ns)

    # --- views --------------------------------------------------------------------------------------

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        """Return the best ``n`` levels per side (new lists): bids by price descending, asks ascending."""
        return self._bids[: -n - 1 : -1], self._asks[:n]

    @property
    def best_bid(self) -> float | None:
        """Best bid price (USDT), None when the bid side is empty."""
        return self._bid_px[-1] if self._bid_px else None

    @property
    def best_ask(self) -> float | None:
        """Best ask price (USDT), None when the ask side is empty."""
        return self._ask_px[0] if self._ask_px else None

    def __len__(self) -> int:
        return len(self._bid_px) + len(self._ask_px)

    # --- internals ----------------------------------------------------------------------------------

    def _crossed(self) -> bool:
        return bool(self._bid_px and self._ask_px and self._bid_px[-1] >= self._ask_px[0])

    def _crossed_reason(self) -> str:
        kind = "locked" if self._bid_px[-1] == self._ask_px[0] else "crossed"
        return f"{kind} book: best bid {self._bid_px[-1]} >= best ask {self._ask_px[0]}"

    def _due(self, ts_ns: int) -> bool:
        return self._last_pub_ns is None or ts_ns - self._last_pub_ns >= self.min_interval_ns

    def _gap(self, reason: str, u: int, ts_ns: int, recv_ns: int) -> list[ev.Event]:
        self.status = "gapped"
        self.gaps += 1
        self._last_pub_ns = None
        return [
            ev.FeedGap(
                event_id=derive_id("FeedGap", self.symbol, self.depth, u, ts_ns, reason),
                ts_event=ts_ns,
                ts_init=recv_ns,
                symbol=self.symbol,
                reason=reason,
                topic=self.topic,
            )
        ]

    def _snapshot_id(self, u: int) -> str:
        # the same uuid5 as derive_id("BookSnapshot", symbol, depth, u, top_n) (tests/ingest/test_book.py)
        h = self._id_prefix.copy()
        h.update(f"{u}{self._id_suffix}".encode())
        x = h.hexdigest()
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"

    def _publish(self, ts_ns: int, recv_ns: int) -> ev.BookSnapshot:
        self._last_pub_ns = ts_ns
        bids, asks = self.top(self.top_n)
        return ev.BookSnapshot(
            event_id=self._snapshot_id(self.last_u),
            ts_event=ts_ns,
            ts_init=recv_ns,
            symbol=self.symbol,
            bids=bids,
            asks=asks,
            depth=self.top_n,
            update_id=self.last_u,
            seq=self.seq,
        )


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""RFC 4122 variant bits applied to the 17th hex digit of a uuid (``10xx``)."""


def _side(levels: Sequence[Level]) -> tuple[list[float], list[Level]]:
    by_price = {p: (p, q) for p, q in levels if q > 0.0}  # a repeated price: the last one wins
    prices = sorted(by_price)
    return prices, [by_price[p] for p in prices]


def _apply(prices: list[float], side: list[Level], levels: Sequence[Level]) -> None:
    # the incoming (price, size) tuples are stored as they are: no allocation for an update
    n = len(prices)
    for level in levels:
        p = level[0]
        i = bisect_left(prices, p)
        if i < n and prices[i] == p:
            if level[1]:
                side[i] = level
            else:
                del prices[i]
                del side[i]
                n -= 1
        elif level[1]:
            prices.insert(i, p)
            side.insert(i, level)
            n += 1
