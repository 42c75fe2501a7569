"""Incremental indicators: triple EMA trend, Wilder's ATR, and the ATR median behind the PANIC regime.

Each indicator is a small mutable object updated once per closed bar (O(1) or O(log n) per update) and
fully determined by the sequence of updates it has seen: no clock, no randomness. Time, where needed,
is the bar's ``ts_event`` in UNIX ns.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Trend = Literal["up", "down", "flat"]
Regime = Literal["normal", "panic", "unknown"]

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS


class Ema:
    """An exponential moving average of closes, ``alpha = 2 / (period + 1)``.

    Seeded with the first value, then ``ema += alpha × (x - ema)`` (this form keeps a constant series
    exactly constant). The value is reported as *warm* once ``period`` values were seen.

    Parameters
    ----------
    period : int
        Span in bars (>= 1).

    Raises
    ------
    ValueError
        If ``period < 1``.
    """

    __slots__ = ("_alpha", "count", "period", "value")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"expected period >= 1, was {period}")
        self.period = period
        self._alpha = 2.0 / (period + 1.0)
        self.value: float | None = None
        self.count = 0

    def update(self, x: float) -> float:
        """Add one close (USDT) and return the new EMA (USDT)."""
        if self.value is None:
            self.value = x
        else:
            self.value += self._alpha * (x - self.value)
        self.count += 1
        return self.value

    @property
    def warm(self) -> bool:
        """True once ``period`` values were seen."""
        return self.count >= self.period


class TripleEma:
    """Fast / mid / slow EMAs of closes and the trend they define.

    Trend is ``"up"`` when fast > mid > slow, ``"down"`` when fast < mid < slow, else ``"flat"``; it is
    ``"flat"`` during warm-up, until ``slow`` closes were seen. Source: ARCHITECTURE.md §3 signal.

    Parameters
    ----------
    fast, mid, slow : int
        EMA periods in bars (defaults 9, 21, 55); ``fast < mid < slow``.

    Raises
    ------
    ValueError
        If the periods are not strictly increasing or one is < 1.
    """

    __slots__ = ("fast", "mid", "slow")

    def __init__(self, fast: int = 9, mid: int = 21, slow: int = 55) -> None:
        if not fast < mid < slow:
            raise ValueError(f"expected fast < mid < slow, was {fast}, {mid}, {slow}")
        self.fast, self.mid, self.slow = Ema(fast), Ema(mid), Ema(slow)

    def update(self, close: float) -> Trend:
        """Add one close (USDT) and return the trend."""
        self.fast.update(close)
        self.mid.update(close)
        self.slow.update(close)
        return self.trend

    @property
    def trend(self) -> Trend:
        """The current trend; ``"flat"`` until the slow EMA is warm."""
        if not self.slow.warm:
            return "flat"
        f, m, s = self.fast.value, self.mid.value, self.slow.value
        assert f is not None and m is not None and s is not None
        if f > m > s:
            return "up"
        if f < m < s:
            return "down"
        return "flat"

    def values(self) -> tuple[float | None, float | None, float | None]:
        """Return ``(fast, mid, slow)`` in USDT, each None until its own period was seen."""
        return tuple(e.value if e.warm else None for e in (self.fast, self.mid, self.slow))  # type: ignore[return-value]


def true_range(high: float, low: float, prev_close: float | None) -> float:
    """Return Wilder's true range, USDT: ``max(high - low, |high - prev_close|, |low - prev_close|)``.

    Without a previous close it is ``high - low``.
    """
    if prev_close is None:
        return high - low
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


class Atr:
    """Wilder's Average True Range.

    The first value is the mean of the first ``period`` true ranges; afterwards
    ``atr += (tr - atr) / period``. Source: J. W. Wilder, *New Concepts in Technical Trading Systems*
    (1978); ARCHITECTURE.md §3 signal (ATR14).

    Parameters
    ----------
    period : int
        Smoothing period in bars (default 14).

    Raises
    ------
    ValueError
        If ``period < 1``.
    """

    __slots__ = ("_prev_close", "_seed", "count", "period", "value")

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ValueError(f"expected period >= 1, was {period}")
        self.period = period
        self.value: float | None = None
        self.count = 0
        self._seed = 0.0
        self._prev_close: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar (USDT prices) and return the ATR in USDT, None until ``period`` bars were seen."""
        tr = true_range(high, low, self._prev_close)
        self._prev_close = close
        self.count += 1
        if self.value is None:
            self._seed += tr
            if self.count >= self.period:
                self.value = self._seed / self.period
        else:
            self.value += (tr - self.value) / self.period
        return self.value


@dataclass(slots=True)
class AtrMedian:
    """The median of ATR samples over a trailing event-time window, for the PANIC regime.

    Cheap and deterministic: the ATR is sampled at the first update of every ``sample_ns`` bucket of
    event time (``ts_event // sample_ns``; hourly by default), samples older than ``window_ns`` (30 days)
    are dropped, and the median is read from a sorted list kept with ``bisect`` (O(log n) search,
    at most ``window_ns / sample_ns`` = 720 samples by default). The regime is ``"unknown"`` until
    ``min_samples`` samples are held (24 = one day by default), then ``"panic"`` when
    ``atr > panic_multiple × median`` (2.5, ARCHITECTURE.md §3 signal) and ``"normal"`` otherwise.

    Attributes
    ----------
    sample_ns, window_ns : int
        Sampling bucket and window length, ns of event time.
    min_samples : int
        Samples needed before the regime is known.
    panic_multiple : float
        ATR / median ratio above which the regime is PANIC.
    """

    sample_ns: int = HOUR_NS
    window_ns: int = 30 * DAY_NS
    min_samples: int = 24
    panic_multiple: float = 2.5
    _samples: deque[tuple[int, float]] = field(default_factory=deque)
    _sorted: list[float] = field(default_factory=list)
    _last_bucket: int | None = None

    def update(self, ts_ns: int, atr: float | None) -> None:
        """Offer the ATR (USDT) at event time ``ts_ns`` (UNIX ns); it is kept if it opens a new bucket."""
        while self._samples and self._samples[0][0] <= ts_ns - self.window_ns:
            _, old = self._samples.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        if atr is None:
            return
        bucket = ts_ns // self.sample_ns
        if bucket == self._last_bucket:
            return
        self._last_bucket = bucket
        self._samples.append((ts_ns, atr))
        bisect.insort(self._sorted, atr)

    @property
    def median(self) -> float | None:
        """The median of the held samples (USDT), None when there are fewer than ``min_samples``."""
        n = len(self._sorted)
        if n < max(self.min_samples, 1):
            return None
        mid = n // 2
        return self._sorted[mid] if n % 2 else (self._sorted[mid - 1] + self._sorted[mid]) / 2.0

    def regime(self, atr: float | None) -> Regime:
        """Return the regime of ``atr`` (USDT) against the median: ``panic``, ``normal`` or ``unknown``."""
        med = self.median
        if atr is None or med is None:
            return "unknown"
        return "panic" if atr > self.panic_multiple * med else "normal"

    def __len__(self) -> int:
        return len(self._sorted)
