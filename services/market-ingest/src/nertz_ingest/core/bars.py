"""The one constructor of ``Bar`` events, whatever the source (kline CSV, REST, WebSocket).

A closed bar's id depends only on (symbol, interval, open time), so the same bar from a CSV, a REST
backfill or a confirmed WebSocket kline is the same event and the log stores it once.
"""

from __future__ import annotations

from nertz_common import events as ev
from nertz_common.ids import derive_id


def make_bar(
    symbol: str,
    interval: str,
    open_ns: int,
    *,
    ts_event: int,
    ts_init: int,
    open: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    turnover: float | None = None,
    closed: bool = True,
) -> ev.Bar:
    """Return the ``Bar``: closed (``ts_event`` = close time) or still open (``ts_event`` = update time).

    Parameters
    ----------
    symbol, interval : str
        Bybit symbol and kline interval (``"1"``, ``"5"``, ``"D"``...).
    open_ns, ts_event, ts_init : int
        Bar open time, event time and object time, UNIX ns.
    open, high, low, close : float
        Prices, USDT (validated by the caller).
    volume : float
        Base currency; ``turnover`` in USDT, None when the source lacks it.
    closed : bool
        An open bar's id also names its update time: each update is a distinct event.
    """
    update: tuple[int, ...] = () if closed else (ts_event,)
    return ev.Bar(
        event_id=derive_id("Bar", symbol, interval, open_ns, closed, *update),
        ts_event=ts_event,
        ts_init=ts_init,
        symbol=symbol,
        interval=interval,
        open_time_ns=open_ns,
        open=open,
        high=high,
        low=low,
        close=close,
        volume=volume,
        turnover=turnover,
        closed=closed,
    )
