"""Entry filters: small named rules, each returning None (pass) or a veto reason.

A reason reads ``"<name>: <detail>"``; the name before the colon is constant (a metric label), the
detail says what was expected and what it was. Rules of ARCHITECTURE.md §3 signal ("Filters"), plus the
bar time-gap rule that resets a symbol's warm-up (the bundled data jumps a year between files).
All times are event times, UNIX ns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Side = Literal["long", "short"]
DataKind = Literal["book", "trade", "bar", "ticker", "any"]

SPREAD = "spread_too_wide"
FUNDING = "funding_extreme"
FEED_GAP = "stale_feed_gap"
FEED_STALE = "stale_feed"
BOOK_STALE = "stale_book"
BTC_DROP = "btc_drop"
FILTER_NAMES: tuple[str, ...] = (FEED_GAP, FEED_STALE, BOOK_STALE, SPREAD, FUNDING, BTC_DROP)

NS_PER_S = 1_000_000_000

#: Bybit topic prefix -> the data kind whose next update ends a FeedStale
_TOPIC_KINDS: dict[str, DataKind] = {
    "orderbook": "book",
    "publicTrade": "trade",
    "kline": "bar",
    "tickers": "ticker",
}


def veto_name(reason: str) -> str:
    """Return the constant name of a veto reason (the part before ``":"``)."""
    return reason.split(":", 1)[0]


def spread(best_bid: float | None, best_ask: float | None, max_spread: float = 0.002) -> str | None:
    """Veto when the spread exceeds ``max_spread`` of the mid (0.2 %); pass without a book.

    Parameters
    ----------
    best_bid, best_ask : float or None
        Best prices, USDT; None when no book was seen.
    max_spread : float
        Largest spread allowed, fraction of mid.
    """
    if best_bid is None or best_ask is None:
        return None
    mid = (best_bid + best_ask) / 2.0
    s = (best_ask - best_bid) / mid
    if s > max_spread:
        return f"{SPREAD}: expected spread <= {max_spread:.4%}, was {s:.4%}"
    return None


def funding(rate: float | None, interval_h: int | None, max_8h: float = 0.0025) -> str | None:
    """Veto when the funding rate, normalised to 8 h, is beyond ``±max_8h`` (0.25 %).

    Parameters
    ----------
    rate : float or None
        Funding rate per funding interval, fraction (Bybit ``fundingRate``); None passes.
    interval_h : int or None
        Funding interval in hours; None or 0 means Bybit's default 8 h.
    max_8h : float
        Largest |rate| per 8 h allowed, fraction.
    """
    if rate is None:
        return None
    hours = interval_h or 8
    per_8h = rate * 8.0 / hours
    if abs(per_8h) > max_8h:
        return f"{FUNDING}: expected |funding| <= {max_8h:.4%} per 8h, was {per_8h:+.4%}"
    return None


def stale(health: FeedHealth, book_ts_ns: int | None, now_ns: int, max_book_age_s: float = 30.0) -> str | None:
    """Veto while a feed gap is open, a FeedStale is unresolved, or the book is older than ``max_book_age_s``.

    Parameters
    ----------
    health : FeedHealth
        The symbol's feed status.
    book_ts_ns : int or None
        ``ts_event`` of the latest book, ns; None when none was seen (the age rule is skipped).
    now_ns : int
        Event time of the decision (the closed bar's ``ts_event``), ns.
    max_book_age_s : float
        Largest book age allowed, seconds of event time.
    """
    if health.gaps:
        return f"{FEED_GAP}: feed gap open since {min(health.gaps.values())} ns ({','.join(sorted(health.gaps))})"
    if health.stale:
        kinds = ",".join(sorted(health.stale))
        return f"{FEED_STALE}: no update since FeedStale ({kinds})"
    if book_ts_ns is not None:
        age_s = (now_ns - book_ts_ns) / NS_PER_S
        if age_s > max_book_age_s:
            return f"{BOOK_STALE}: expected book age <= {max_book_age_s:g}s, was {age_s:.1f}s"
    return None


def btc_drop(side: Side, symbol: str, btc_symbol: str, btc_change: float | None, max_drop: float = 0.02) -> str | None:
    """Veto longs on alts while BTC fell more than ``max_drop`` over the look-back window (4 h).

    Parameters
    ----------
    side : "long" or "short"
    symbol : str
        The intent's symbol; the rule never applies to ``btc_symbol`` itself.
    btc_symbol : str
        The market leader ("BTCUSDT").
    btc_change : float or None
        BTC's close-to-close change over the window, fraction; None (no BTC bars seen) passes.
    max_drop : float
        Largest drop allowed, positive fraction (0.02).
    """
    if side != "long" or symbol == btc_symbol or btc_change is None:
        return None
    if btc_change < -max_drop:
        return f"{BTC_DROP}: expected {btc_symbol} change >= {-max_drop:+.2%}, was {btc_change:+.2%}"
    return None


def bar_gap(prev_open_ns: int | None, open_ns: int, bar_ns: int | None, max_intervals: float = 5.0) -> bool:
    """Return True when a closed bar breaks the series: it opens more than ``max_intervals`` bar lengths
    after the previous one, or not after it (time went backwards or repeated).

    Parameters
    ----------
    prev_open_ns : int or None
        Open time of the previous closed bar, ns; None for the first bar (no break).
    open_ns : int
        Open time of this bar, ns.
    bar_ns : int or None
        Bar length, ns; None (unknown) checks only the ordering.
    max_intervals : float
        Largest gap, in bar lengths, still treated as one series (5).
    """
    if prev_open_ns is None:
        return False
    if open_ns <= prev_open_ns:
        return True
    return bar_ns is not None and open_ns - prev_open_ns > max_intervals * bar_ns


@dataclass(slots=True)
class FeedHealth:
    """A symbol's feed status folded from ``md.status`` and data events, in log order.

    ``gaps`` maps a topic ("" = the whole symbol) to the ``ts_event`` of its open :class:`FeedGap`; a
    :class:`FeedResynced` closes its topic, and one with an empty topic closes every gap of the symbol.
    ``stale`` holds the data kinds named by unresolved :class:`FeedStale` events; the next update of
    that kind ends it ("any" is ended by any data event).
    """

    gaps: dict[str, int] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

    def on_gap(self, topic: str, ts_ns: int) -> None:
        """Open a gap on ``topic`` at ``ts_ns``."""
        self.gaps.setdefault(topic, ts_ns)

    def on_resynced(self, topic: str) -> None:
        """Close the gap on ``topic`` (every gap when ``topic`` is empty)."""
        if topic:
            self.gaps.pop(topic, None)
        else:
            self.gaps.clear()

    def on_stale(self, topic: str) -> None:
        """Mark the data kind of ``topic`` stale (``"any"`` when the topic is unknown)."""
        self.stale.add(kind_of_topic(topic))

    def on_data(self, kind: DataKind) -> None:
        """Record an update of ``kind``: it ends a FeedStale of that kind and of ``"any"``."""
        if self.stale:
            self.stale.discard(kind)
            self.stale.discard("any")

    def state(self) -> tuple[dict[str, int], list[str]]:
        """Return the open gaps and the stale kinds."""
        return dict(self.gaps), sorted(self.stale)

    @classmethod
    def from_state(cls, state: tuple[dict[str, int], list[str]]) -> FeedHealth:
        """Build a health from :meth:`state`."""
        gaps, stale = state
        return cls(dict(gaps), set(stale))


def kind_of_topic(topic: str) -> DataKind:
    """Return the data kind of a Bybit topic (``orderbook.50.BTCUSDT`` → ``book``), ``any`` if unknown."""
    return _TOPIC_KINDS.get(topic.split(".", 1)[0], "any")


@dataclass(slots=True)
class PriceWindow:
    """Closes of one series over a trailing event-time window, for the BTC filter.

    Parameters
    ----------
    window_ns : int
        Look-back, ns of event time (4 h).
    """

    window_ns: int
    _points: deque[tuple[int, float]] = field(default_factory=deque)

    def add(self, ts_ns: int, close: float) -> None:
        """Append a close (USDT) at event time ``ts_ns``; a time earlier than the last one restarts it."""
        if self._points and ts_ns < self._points[-1][0]:
            self._points.clear()
        self._points.append((ts_ns, close))
        self._prune(ts_ns)

    def change(self, now_ns: int) -> float | None:
        """Return ``last / first - 1`` over the closes in ``[now - window, now]``; None with fewer than two."""
        self._prune(now_ns)
        pts = [p for p in self._points if p[0] <= now_ns]
        if len(pts) < 2:
            return None
        return pts[-1][1] / pts[0][1] - 1.0

    def _prune(self, now_ns: int) -> None:
        while self._points and self._points[0][0] < now_ns - self.window_ns:
            self._points.popleft()

    def state(self) -> list[tuple[int, float]]:
        """Return the held ``(ts_ns, close)`` points."""
        return list(self._points)

    def restore(self, points: list[tuple[int, float]]) -> None:
        """Put back a :meth:`state`."""
        self._points = deque((int(t), float(c)) for t, c in points)
