"""Bar series and books shared by the signal tests (factories for the scenarios the engine must see)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.testing import factories as f


def _trend_then_jump(symbol: str = "ETHUSDT", n: int = 80, direction: int = 1, start: int = 0) -> list[ev.Bar]:
    """``n`` bars drifting by 0.1 % per bar in ``direction``, then one bar jumping 2 % on 4× volume.

    The drift makes fast > mid > slow EMAs (or the reverse); the last bar drives EGM near ±0.97 and
    PIO to ±1, so the bars-only combined score is about ±9.8: a LONG (SHORT) candidate at the default
    threshold 9.5.
    """
    bars = []
    close = 100.0
    for i in range(n):
        prev, close = close, close * (1 + direction * 0.001)
        bars.append(f.bar(start + i, symbol=symbol, open=prev, close=close, volume=10.0))
    prev, close = close, close * (1 + direction * 0.02)
    bars.append(f.bar(start + n, symbol=symbol, open=prev, close=close, volume=40.0))
    return bars


@pytest.fixture
def trend_then_jump() -> Callable[..., list[ev.Bar]]:
    """Return the builder of a bar series whose last bar is an intent candidate (see ``_trend_then_jump``)."""
    return _trend_then_jump


def _skewed_book(
    ts_ns: int, symbol: str, mid: float, spread_frac: float = 0.0002, bid_qty: float = 10.0, ask_qty: float = 1.0
) -> ev.BookSnapshot:
    """Return a 10-level book around ``mid`` with ``bid_qty`` per bid level and ``ask_qty`` per ask level."""
    half = mid * spread_frac / 2
    tick = mid * 0.0001
    bids = [(mid - half - i * tick, bid_qty) for i in range(10)]
    asks = [(mid + half + i * tick, ask_qty) for i in range(10)]
    return f.book(ts_ns, symbol=symbol, bids=bids, asks=asks, event_id=derive_id("BookSnapshot", symbol, ts_ns, mid))


@pytest.fixture
def skewed_book() -> Callable[..., ev.BookSnapshot]:
    """Return the builder of a bid-heavy book (ILD and ROL near +0.8)."""
    return _skewed_book
