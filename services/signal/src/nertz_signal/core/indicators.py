"""Incremental indicators: triple EMA trend, Wilder's ATR, and the ATR median behind the volatility regimes.

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
#: ``digesting`` and ``panic``: the ATR above 1.3× and 2.5× its 30-day median (the six-agent seed's regimes)
Regime = Literal["normal", "digesting", "panic", "unknown"]

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

    def state(self) -> tuple[float | None, int]:
        """Return ``(value, count)``: everything an update depends on."""
        return self.value, self.count

    def restore(self, state: tuple[float | None, int]) -> None:
        """Put back a :meth:`state`."""
        self.value, self.count = state


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
        # the three Ema.update calls, inlined (this runs once per closed bar of every series)
        f, m, s = self.fast, self.mid, self.slow
        v = f.value
        f.value = fv = close if v is None else v + f._alpha * (close - v)
        f.count += 1
        v = m.value
        m.value = mv = close if v is None else v + m._alpha * (close - v)
        m.count += 1
        v = s.value
        s.value = sv = close if v is None else v + s._alpha * (close - v)
        s.count += 1
        if s.count < s.period:
            return "flat"
        if fv > mv > sv:
            return "up"
        if fv < mv < sv:
            return "down"
        return "flat"

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
        f, m, s = self.fast, self.mid, self.slow
        return (
            f.value if f.count >= f.period else None,
            m.value if m.count >= m.period else None,
            s.value if s.count >= s.period else None,
        )


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
        pc = self._prev_close
        tr = high - low  # true_range, inlined
        if pc is not None:
            a = high - pc if high > pc else pc - high
            b = low - pc if low > pc else pc - low
            if a > tr:
                tr = a
            if b > tr:
                tr = b
        self._prev_close = close
        self.count += 1
        if self.value is None:
            self._seed += tr
            if self.count >= self.period:
                self.value = self._seed / self.period
        else:
            self.value += (tr - self.value) / self.period
        return self.value

    def state(self) -> tuple[float | None, int, float, float | None]:
        """Return ``(value, count, seed sum, previous close)``."""
        return self.value, self.count, self._seed, self._prev_close

    def restore(self, state: tuple[float | None, int, float, float | None]) -> None:
        """Put back a :meth:`state`."""
        self.value, self.count, self._seed, self._prev_close = state


class RollingWindow:
    """The last ``n`` values of a series with their mean and population variance, O(1) per value.

    Sums are kept of deviations from a pivot (a recent value), and recomputed exactly from the window
    every ``n`` values, and whenever a far value leaving the window made the sum of squares cancel, so
    rounding never accumulates and a constant window has a variance of exactly 0. Agrees with
    ``numpy.mean``/``numpy.var`` (``ddof=0``) of the window to ~1e-12 relative.

    Parameters
    ----------
    n : int
        Window length (>= 1).

    Raises
    ------
    ValueError
        If ``n < 1``.
    """

    __slots__ = ("_k", "_s1", "_s2", "_since", "n", "values")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"expected n >= 1, was {n}")
        self.n = n
        self.values: deque[float] = deque(maxlen=n)
        self._k = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._since = 0

    def push(self, x: float) -> None:
        """Append ``x``; the oldest value leaves once the window is full."""
        self.push_stats(x)

    def _repivot(self) -> None:
        k = self._k = self.values[-1]
        s1 = s2 = 0.0
        for x in self.values:
            d = x - k
            s1 += d
            s2 += d * d
        self._s1, self._s2, self._since = s1, s2, 0

    def push_stats(self, x: float) -> tuple[float, float] | None:
        """Push ``x``; return ``(mean, variance)`` of the window once it is full, else None."""
        v = self.values
        n = self.n
        self._since += 1
        if self._since >= n:
            v.append(x)
            self._repivot()
        else:  # push(), inlined: this runs twice per closed bar of every series
            k = self._k
            d = x - k
            if len(v) == n:
                o = v[0] - k
                o2 = o * o
                self._s1 += d - o
                self._s2 += d * d - o2
                v.append(x)
                if self._s2 < o2 * 1e-6:  # a far value left: the subtraction cancelled, recompute exactly
                    self._repivot()
            else:
                self._s1 += d
                self._s2 += d * d
                v.append(x)
        if len(v) != n:
            return None
        a = self._s1 / n
        var = self._s2 / n - a * a
        return self._k + a, var if var > 0.0 else 0.0

    @property
    def full(self) -> bool:
        """True once ``n`` values are held."""
        return len(self.values) == self.n

    @property
    def mean(self) -> float:
        """Mean of the held values (0.0 when empty)."""
        m = len(self.values)
        return self._k + self._s1 / m if m else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the held values (>= 0; 0.0 when empty)."""
        m = len(self.values)
        if not m:
            return 0.0
        a = self._s1 / m
        var = self._s2 / m - a * a
        return var if var > 0.0 else 0.0

    def state(self) -> tuple[list[float], float, float, float, int]:
        """Return the values and the running sums (everything a push depends on)."""
        return list(self.values), self._k, self._s1, self._s2, self._since

    def restore(self, state: tuple[list[float], float, float, float, int]) -> None:
        """Put back a :meth:`state`."""
        values, self._k, self._s1, self._s2, self._since = state
        self.values = deque(values, maxlen=self.n)


@dataclass(slots=True)
class AtrMedian:
    """The median of ATR samples over a trailing event-time window, for the DIGESTING and PANIC regimes.

    Cheap and deterministic: the ATR is sampled at the first update of every ``sample_ns`` bucket of
    event time (``ts_event // sample_ns``; hourly by default), samples older than ``window_ns`` (30 days)
    are dropped, and the median is read from a sorted list kept with ``bisect`` (O(log n) search,
    at most ``window_ns / sample_ns`` = 720 samples by default). The regime is ``"unknown"`` until
    ``min_samples`` samples are held (24 = one day by default), then ``"panic"`` when
    ``atr > panic_multiple × median`` (2.5, ARCHITECTURE.md §3 signal), ``"digesting"`` when
    ``atr > digesting_multiple × median`` (1.3, the six-agent seed's market digesting news) and
    ``"normal"`` otherwise.

    Attributes
    ----------
    sample_ns, window_ns : int
        Sampling bucket and window length, ns of event time.
    min_samples : int
        Samples needed before the regime is known.
    panic_multiple : float
        ATR / median ratio above which the regime is PANIC.
    digesting_multiple : float
        ATR / median ratio above which the regime is DIGESTING (below ``panic_multiple``).
    """

    sample_ns: int = HOUR_NS
    window_ns: int = 30 * DAY_NS
    min_samples: int = 24
    panic_multiple: float = 2.5
    digesting_multiple: float = 1.3
    _samples: deque[tuple[int, float]] = field(default_factory=deque)
    _sorted: list[float] = field(default_factory=list)
    _last_bucket: int | None = None
    _median: float | None = None

    def update(self, ts_ns: int, atr: float | None) -> None:
        """Offer the ATR (USDT) at event time ``ts_ns`` (UNIX ns); it is kept if it opens a new bucket."""
        changed = False
        samples = self._samples
        while samples and samples[0][0] <= ts_ns - self.window_ns:
            _, old = samples.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            changed = True
        if atr is not None:
            bucket = ts_ns // self.sample_ns
            if bucket != self._last_bucket:
                self._last_bucket = bucket
                samples.append((ts_ns, atr))
                bisect.insort(self._sorted, atr)
                changed = True
        if changed:
            self._median = self._compute_median()

    def _compute_median(self) -> float | None:
        srt = self._sorted
        n = len(srt)
        if n < max(self.min_samples, 1):
            return None
        mid = n // 2
        return srt[mid] if n % 2 else (srt[mid - 1] + srt[mid]) / 2.0

    @property
    def median(self) -> float | None:
        """The median of the held samples (USDT), None when there are fewer than ``min_samples``."""
        return self._median

    def regime(self, atr: float | None) -> Regime:
        """Return the regime of ``atr`` (USDT) against the median: ``panic``, ``digesting``, ``normal`` or
        ``unknown``."""
        med = self._median
        if atr is None or med is None:
            return "unknown"
        if atr > self.panic_multiple * med:
            return "panic"
        return "digesting" if atr > self.digesting_multiple * med else "normal"

    def __len__(self) -> int:
        return len(self._sorted)

    def state(self) -> tuple[list[tuple[int, float]], int | None]:
        """Return the held ``(ts_ns, atr)`` samples and the last bucket."""
        return list(self._samples), self._last_bucket

    def restore(self, state: tuple[list[tuple[int, float]], int | None]) -> None:
        """Put back a :meth:`state`."""
        samples, self._last_bucket = state
        self._samples = deque((int(t), float(a)) for t, a in samples)
        self._sorted = sorted(a for _, a in self._samples)
        self._median = self._compute_median()


#: Bybit's fixed-length kline intervals → their length in ns (``"M"`` has no fixed length)
TIMEFRAMES_NS: dict[str, int] = {
    **{str(m): m * 60_000_000_000 for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": DAY_NS,
    "W": 7 * DAY_NS,
}
#: Where a timeframe's bars start, ns after the UNIX epoch: Bybit's weekly candles open on Mondays
#: (1970-01-05), every other one at a multiple of its length (UTC midnight for ``"D"``)
TIMEFRAME_OFFSETS_NS: dict[str, int] = {"W": 4 * DAY_NS}


class TimeframeAtr:
    """Wilder's ATR of the bars of a longer timeframe, aggregated from a series' closed bars.

    Closed bars (1 minute, say) are grouped into the timeframe's bars (4 h, say) by open time, aligned
    as Bybit aligns its candles (``(open - offset) // timeframe``). A timeframe bar is finished by the
    bar that closes at its end (or, after a gap, by the first bar of a later one); its true range is
    ``max(high - low, |high - prev close|, |low - prev close|)`` with the previous timeframe bar's
    close. The series' first timeframe bar counts only if the series starts at its open: a partial one
    would understate the range (its close still serves as the next one's previous close).

    The ATR is the mean of the true ranges seen until ``period`` of them, then Wilder's smoothing
    ``atr += (tr - atr) / period`` (at ``period`` both are Wilder's seed); it is reported once
    ``min_bars`` timeframe bars were seen. A timeframe no longer than the series' bars makes every bar
    its own timeframe bar (the ATR of the series itself).

    Parameters
    ----------
    timeframe_ns : int
        Length of the timeframe's bars, ns (> 0).
    period : int
        Wilder period, in timeframe bars (14).
    min_bars : int
        Timeframe bars needed before the ATR is reported (1 .. ``period``).
    offset_ns : int
        Open time of a timeframe bar modulo its length, ns (0; 4 days for Bybit's weekly candles).

    Raises
    ------
    ValueError
        If ``timeframe_ns <= 0``, ``period < 1`` or ``min_bars`` is not in ``[1, period]``.

    Notes
    -----
    Source: Wilder (1978) for the ATR; the timeframe and the bounds are the six-agent seed's ("30 days
    of movement"), docs/decisions.md D19.
    """

    __slots__ = (
        "_atr", "_bucket", "_close", "_complete", "_high", "_low", "_prev_close", "_started", "_sum", "count",
        "min_bars", "offset_ns", "period", "timeframe_ns",
    )  # fmt: skip

    def __init__(self, timeframe_ns: int, period: int = 14, min_bars: int = 6, offset_ns: int = 0) -> None:
        if timeframe_ns <= 0:
            raise ValueError(f"expected timeframe_ns > 0, was {timeframe_ns}")
        if period < 1:
            raise ValueError(f"expected period >= 1, was {period}")
        if not 1 <= min_bars <= period:
            raise ValueError(f"expected 1 <= min_bars <= period ({period}), was {min_bars}")
        self.timeframe_ns, self.period, self.min_bars, self.offset_ns = timeframe_ns, period, min_bars, offset_ns
        self._bucket: int | None = None  # the open timeframe bar, None between two
        self._high = self._low = self._close = 0.0
        self._complete = False
        self._started = False
        self._prev_close: float | None = None
        self.count = 0
        self._sum = 0.0
        self._atr: float | None = None

    def update(self, open_ns: int, close_ns: int, high: float, low: float, close: float) -> float | None:
        """Add one closed bar (times in UNIX ns, prices in USDT); return the ATR (USDT) or None."""
        tf = self.timeframe_ns
        bucket = (open_ns - self.offset_ns) // tf
        if bucket != self._bucket:
            if self._bucket is not None:
                self._finish()  # its last bars are missing (a gap): it ends here
            self._bucket = bucket
            self._high, self._low = high, low
            self._complete = self._started or (open_ns - self.offset_ns) % tf == 0
            self._started = True
        else:
            if high > self._high:
                self._high = high
            if low < self._low:
                self._low = low
        self._close = close
        if close_ns >= (bucket + 1) * tf + self.offset_ns:
            self._finish()
        return self.value

    def _finish(self) -> None:
        if self._complete:
            h, lo, pc = self._high, self._low, self._prev_close
            tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))
            self.count += 1
            if self.count <= self.period:
                self._sum += tr
                self._atr = self._sum / self.count
            else:
                atr = self._atr
                self._atr = tr if atr is None else atr + (tr - atr) / self.period
        self._prev_close = self._close
        self._bucket = None

    @property
    def value(self) -> float | None:
        """The ATR in USDT, None until ``min_bars`` timeframe bars were seen."""
        return self._atr if self.count >= self.min_bars else None

    def state(self) -> tuple[int | None, float, float, float, bool, bool, float | None, int, float, float | None]:
        """Return everything an update depends on (the open timeframe bar, the sums, the ATR)."""
        return (
            self._bucket, self._high, self._low, self._close, self._complete, self._started, self._prev_close,
            self.count, self._sum, self._atr,
        )  # fmt: skip

    def restore(
        self, state: tuple[int | None, float, float, float, bool, bool, float | None, int, float, float | None]
    ) -> None:
        """Put back a :meth:`state`."""
        (
            self._bucket, self._high, self._low, self._close, self._complete, self._started, self._prev_close,
            self.count, self._sum, self._atr,
        ) = state  # fmt: skip
