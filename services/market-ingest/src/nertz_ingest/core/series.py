"""Keep every bar series moving forward: one bar per interval, never back in time.

A series is (symbol, interval). Bars reach the log in close-time order from every source (CSV, REST
backfill, WebSocket), and a closed bar's id names only (symbol, interval, open time). So, per series:

- a closed bar opening after the series' last closed bar is new;
- a closed bar with the same open time and the same prices and volume is an identical repeat (the
  same fact from another source, or sent twice): nothing new, dropped without a word; so is an update
  of a still-open bar whose interval has just closed (a frame that waited in a queue while the
  backfill published the closed bar);
- a closed bar with the same open time and other prices or volume is a second, different bar for one
  interval (``conflicting_bar``): it would share the first one's id, and the stream would keep whichever
  came first without a word, so it is refused instead;
- a bar opening before the series' last closed bar goes back in time (``out_of_order``), unless it
  repeats one of the series' last ``RECENT`` accepted bars: identical (or an update of that bar while
  it was open), it is known (a kline frame that waited in a queue while the backfill moved on);
  different, it conflicts with that bar.

Across a restart the guard starts from the log's tail: per symbol, the last ``Bar`` on the log (its
subject carries the symbol, not the interval). A bar of that bar's series is judged against it as
above; a bar of another interval of the symbol must not close before it (bars are published in
close-time order, so such a bar is older than where the log ends).

Pure: no I/O, no clock. Memory: ``RECENT`` bars' values per series and one bar per symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from nertz_common import events as ev
from nertz_ingest.core.rejection import Rejected

RECENT = 128
"""Accepted closed bars per series whose values are kept, to tell a late repeat from a bar back in time."""

Verdict = Literal["new", "known"]
"""``new``: publish it; ``known``: nothing new (an identical repeat, or an update of a bar that has closed)."""


class BarGuard:
    """Judge each bar against the last closed bar of its series (and the log's last bar of its symbol).

    Parameters
    ----------
    logged : mapping of str to Bar, optional
        Per symbol, the last ``Bar`` on the log (any interval, open or closed): where a restarted
        ingest resumes. None or empty = a fresh log.
    """

    __slots__ = ("_floor", "_last", "_recent", "known")

    def __init__(self, logged: Mapping[str, ev.Bar] | None = None) -> None:
        self._last: dict[tuple[str, str], ev.Bar] = {}
        # per series, open time (ns) -> values of its last RECENT accepted closed bars, oldest first
        self._recent: dict[tuple[str, str], dict[int, _Values]] = {}
        self._floor: dict[str, ev.Bar] = dict(logged or {})
        #: bars judged ``known`` so far
        self.known = 0

    def resume(self, logged: Mapping[str, ev.Bar]) -> None:
        """Start more symbols from the log's tail (a symbol the live feed begins to serve later on).

        ``logged``: per symbol, its last ``Bar`` on the log. A symbol the guard already judged bars of
        keeps what it knows (its own bars are newer).
        """
        seen = {symbol for symbol, _ in self._last}
        for symbol, bar in logged.items():
            if symbol not in seen:
                self._floor.setdefault(symbol, bar)

    def check(self, bar: ev.Bar) -> Verdict | Rejected:
        """Return ``"new"`` (publish it), ``"known"`` (nothing new: drop it) or the rejection.

        A new closed bar becomes the series' last bar; nothing else changes the guard.

        Returns
        -------
        "new", "known" or Rejected
            Rejections have reason ``out_of_order`` or ``conflicting_bar``, the bar's JSON as ``raw``,
            ``kline.<interval>.<symbol>`` as topic and the bar's ``ts_init`` as time.
        """
        key = (bar.symbol, bar.interval)
        last = self._last.get(key)
        if last is None:
            floor = self._floor.get(bar.symbol)
            if floor is not None:
                if floor.interval != bar.interval:
                    if bar.ts_event < floor.ts_event:
                        return _reject(
                            bar,
                            "out_of_order",
                            f"expected a {_name(bar)} bar closing at or after {_iso(floor.ts_event)} (the log's "
                            f"last bar of {bar.symbol}, interval {floor.interval}), was closing at "
                            f"{_iso(bar.ts_event)}",
                        )
                elif floor.closed:
                    last = floor
                elif bar.open_time_ns < floor.open_time_ns:
                    return _older(bar, floor.open_time_ns, "the log's last bar of its series, still open")
        if last is None or bar.open_time_ns > last.open_time_ns:
            if bar.closed:
                self._accept(key, bar)
            return "new"
        earlier = _values(last) if bar.open_time_ns == last.open_time_ns else None
        first = earlier or self._recent.get(key, {}).get(bar.open_time_ns)
        if first is None:
            return _older(bar, last.open_time_ns, "the last bar of its series")
        if not bar.closed or _values(bar) == first:
            self.known += 1
            return "known"
        return _reject(
            bar,
            "conflicting_bar",
            f"expected the {_name(bar)} bar opening at {_iso(bar.open_time_ns)} as first accepted "
            f"(open/high/low/close/volume {_fmt(first)}), was {_fmt(_values(bar))}",
        )

    def _accept(self, key: tuple[str, str], bar: ev.Bar) -> None:
        self._last[key] = bar
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = {}
        recent[bar.open_time_ns] = _values(bar)
        if len(recent) > RECENT:
            del recent[next(iter(recent))]


_Values = tuple[float, float, float, float, float]


def _values(bar: ev.Bar) -> _Values:
    return bar.open, bar.high, bar.low, bar.close, bar.volume


def _older(bar: ev.Bar, last_open_ns: int, what: str) -> Rejected:
    return _reject(
        bar,
        "out_of_order",
        f"expected a {_name(bar)} bar opening after {_iso(last_open_ns)} ({what}), "
        f"was opening at {_iso(bar.open_time_ns)}",
    )


def _reject(bar: ev.Bar, reason: Literal["out_of_order", "conflicting_bar"], detail: str) -> Rejected:
    raw = ev.encode(bar).decode()
    return Rejected(reason, detail, raw, topic=f"kline.{bar.interval}.{bar.symbol}", ts_ns=bar.ts_init)


def _name(bar: ev.Bar) -> str:
    return f"{bar.symbol} {bar.interval}"


def _fmt(values: _Values) -> str:
    return "/".join(f"{v:g}" for v in values)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")
