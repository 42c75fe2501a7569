"""Indicators: EMA, triple-EMA trend, Wilder ATR, the timeframe ATR and the ATR median (hand values and
properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_signal.core.indicators import (
    DAY_NS,
    HOUR_NS,
    TIMEFRAME_OFFSETS_NS,
    TIMEFRAMES_NS,
    Atr,
    AtrMedian,
    Ema,
    TimeframeAtr,
    TripleEma,
    true_range,
)


def test_ema_period_three_matches_hand_values():
    # alpha = 2 / (3 + 1) = 0.5; seeded with 1: 1 → 1.5 → 2.25
    e = Ema(3)
    assert [e.update(x) for x in (1, 2, 3)] == [1.0, 1.5, 2.25]
    assert e.warm


def test_ema_before_period_is_not_warm():
    e = Ema(3)
    e.update(1.0)
    e.update(2.0)
    assert not e.warm


@given(st.floats(min_value=1e-6, max_value=1e9), st.integers(1, 200), st.integers(1, 300))
def test_ema_constant_series_is_that_constant(c, period, n):
    e = Ema(period)
    for _ in range(n):
        assert e.update(c) == c


def test_ema_zero_period_raises():
    with pytest.raises(ValueError, match="expected period >= 1"):
        Ema(0)


def test_triple_ema_rising_series_is_flat_until_warm_then_up():
    t = TripleEma(9, 21, 55)
    trends = [t.update(100.0 + i) for i in range(60)]
    assert set(trends[:54]) == {"flat"}
    assert trends[54:] == ["up"] * 6
    assert all(v is not None for v in t.values())


def test_triple_ema_falling_series_is_down():
    t = TripleEma(2, 3, 4)
    assert [t.update(100.0 - i) for i in range(5)][-1] == "down"


def test_triple_ema_constant_series_is_flat():
    t = TripleEma(2, 3, 4)
    assert {t.update(5.0) for _ in range(10)} == {"flat"}


def test_triple_ema_values_none_until_each_period():
    t = TripleEma(2, 3, 4)
    t.update(1.0)
    t.update(1.0)
    assert t.values() == (1.0, None, None)


def test_triple_ema_unordered_periods_raise():
    with pytest.raises(ValueError, match="fast < mid < slow"):
        TripleEma(21, 9, 55)


def test_true_range_gap_up_uses_previous_close():
    # high-low 1, |15 - 10| = 5, |14 - 10| = 4 → 5
    assert true_range(15, 14, 10) == 5
    assert true_range(15, 14, None) == 1


def test_atr_period_three_matches_wilder_by_hand():
    # TRs: 2 (first bar: high-low), max(2, 2, 0) = 2, max(3, 2, 1) = 3 → seed 7/3
    # next TR max(1, 0, 1) = 1 → 7/3 + (1 - 7/3) / 3 = 17/9
    a = Atr(3)
    assert a.update(10, 8, 9) is None
    assert a.update(11, 9, 10) is None
    assert a.update(12, 9, 11) == pytest.approx(7 / 3)
    assert a.update(11, 10, 10.5) == pytest.approx(17 / 9)


def test_atr_median_unknown_until_min_samples_then_normal():
    m = AtrMedian(min_samples=3)
    for h in range(2):
        m.update(h * HOUR_NS, 1.0)
    assert m.regime(1.0) == "unknown"
    m.update(2 * HOUR_NS, 1.0)
    assert m.median == 1.0 and m.regime(1.0) == "normal"


def test_atr_median_samples_once_per_hour():
    m = AtrMedian(min_samples=1)
    for minute in range(120):
        m.update(minute * 60_000_000_000, float(minute))
    assert len(m) == 2 and m.median == pytest.approx((0.0 + 60.0) / 2)


def test_atr_median_atr_above_multiple_is_panic():
    m = AtrMedian(min_samples=3, panic_multiple=2.5)
    for h, atr in enumerate((1.0, 2.0, 3.0)):
        m.update(h * HOUR_NS, atr)
    assert m.regime(5.0) == "digesting"  # 5 <= 2.5 × 2, > 1.3 × 2
    assert m.regime(5.01) == "panic"


def test_atr_median_atr_above_digesting_multiple_is_digesting():
    m = AtrMedian(min_samples=3, panic_multiple=2.5, digesting_multiple=1.3)
    for h, atr in enumerate((1.0, 2.0, 3.0)):
        m.update(h * HOUR_NS, atr)
    assert m.regime(2.6) == "normal"  # 2.6 <= 1.3 × 2
    assert m.regime(2.61) == "digesting"


def test_atr_median_drops_samples_older_than_window():
    m = AtrMedian(window_ns=3 * HOUR_NS, min_samples=1)
    for h, atr in enumerate((100.0, 1.0, 1.0, 1.0)):
        m.update(h * HOUR_NS, atr)
    assert len(m) == 3 and m.median == 1.0


@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=400),
    st.integers(2, 40),
)
def test_rolling_window_mean_and_variance_match_numpy_over_every_window(xs, n):
    import numpy as np

    from nertz_signal.core.indicators import RollingWindow

    w = RollingWindow(n)
    for i, x in enumerate(xs):
        stats = w.push_stats(x)
        window = np.asarray(xs[max(0, i + 1 - n) : i + 1])
        if len(window) < n:
            assert stats is None
            continue
        assert stats is not None
        mean, var = stats
        assert mean == pytest.approx(float(window.mean()), rel=1e-12, abs=1e-9)
        scale = max(1.0, float(window.mean()) ** 2)
        assert var == pytest.approx(float(window.var()), rel=1e-7, abs=1e-15 * scale)


def test_rolling_window_constant_series_has_exactly_zero_variance():
    from nertz_signal.core.indicators import RollingWindow

    w = RollingWindow(20)
    stats = None
    for _ in range(100):
        stats = w.push_stats(104_217.5)
    assert stats == (104_217.5, 0.0)


# --- the ATR of a longer timeframe -------------------------------------------------------------------

MIN_NS = 60_000_000_000


def _minutes(n: int, start_min: int = 0, seed: int = 7) -> list[tuple[int, int, float, float, float]]:
    """``n`` 1m bars ``(open_ns, close_ns, high, low, close)`` from minute ``start_min`` of the epoch."""
    out, close, x = [], 100.0, seed
    for i in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        prev, close = close, close * (1 + ((x % 2001) - 1000) / 1e6)
        o = (start_min + i) * MIN_NS
        out.append((o, o + MIN_NS, max(prev, close) * 1.0004, min(prev, close) * 0.9996, close))
    return out


def _by_hand(bars: list[tuple[int, int, float, float, float]], tf_ns: int, period: int) -> list[float]:
    """The ATR after each complete timeframe bar, from the grouped bars (mean of TRs, then Wilder)."""
    groups: dict[int, list[tuple[int, int, float, float, float]]] = {}
    for b in bars:
        groups.setdefault(b[0] // tf_ns, []).append(b)
    keys = sorted(groups)
    atrs, atr, prev_close = [], None, None
    for n, k in enumerate(keys):
        g = groups[k]
        h, lo, c = max(b[2] for b in g), min(b[3] for b in g), g[-1][4]
        if n == 0 and g[0][0] % tf_ns:  # partial first bar: only its close is used
            prev_close = c
            continue
        if g[-1][1] % tf_ns:  # the last one, not finished yet
            break
        tr = h - lo if prev_close is None else max(h - lo, abs(h - prev_close), abs(lo - prev_close))
        count = len(atrs) + 1
        atr = tr if atr is None else atr + (tr - atr) / count if count <= period else atr + (tr - atr) / period
        atrs.append(atr)
        prev_close = c
    return atrs


@pytest.mark.parametrize("start_min", [0, 39, 239])
def test_timeframe_atr_of_4h_bars_matches_grouping_by_hand(start_min):
    bars = _minutes(240 * 30, start_min)
    tf = TIMEFRAMES_NS["240"]
    atr = TimeframeAtr(tf, period=14, min_bars=1)
    seen = []
    for b in bars:
        before = atr.count
        v = atr.update(*b)
        if atr.count != before:
            seen.append(v)
            assert b[1] % tf == 0  # reported at the close of the bar that ends the 4 h bar
    assert seen == pytest.approx(_by_hand(bars, tf, 14), rel=1e-12)
    assert len(seen) == 30 - (start_min % 240 != 0)


def test_timeframe_atr_none_until_min_bars_then_the_mean_then_wilder():
    tf = 10 * MIN_NS
    atr = TimeframeAtr(tf, period=3, min_bars=2)
    ranges = [1.0, 3.0, 2.0, 6.0]
    values = []
    for k, r in enumerate(ranges):  # one 10-minute bar each, flat closes at 100, range r around it
        for m in range(10):
            o = (k * 10 + m) * MIN_NS
            values.append(atr.update(o, o + MIN_NS, 100.0 + r / 2, 100.0 - r / 2, 100.0))
    at_closes = values[9::10]
    assert at_closes == [None, 2.0, 2.0, pytest.approx(2.0 + (6.0 - 2.0) / 3)]
    assert all(v is None for v in values[:19])


def test_timeframe_atr_not_longer_than_the_bars_is_their_own_atr():
    bars = _minutes(100)
    own = Atr(14)
    tf_atr = TimeframeAtr(MIN_NS, period=14, min_bars=14)
    for o, c_ns, h, lo, c in bars:
        mine, wilder = tf_atr.update(o, c_ns, h, lo, c), own.update(h, lo, c)
        assert (mine is None and wilder is None) or mine == pytest.approx(wilder, rel=1e-12)


def test_timeframe_atr_gap_ends_the_open_bar_and_weekly_bars_open_on_mondays():
    tf = 60 * MIN_NS
    atr = TimeframeAtr(tf, period=14, min_bars=1)
    for o, c_ns, h, lo, c in _minutes(30):  # half an hour, then nothing until 02:00
        atr.update(o, c_ns, h, lo, c)
    assert atr.count == 0  # the first hour is not finished
    o = 120 * MIN_NS
    atr.update(o, o + MIN_NS, 101.0, 99.0, 100.0)
    assert atr.count == 1  # the 00:00 bar ended (its last 30 minutes missing) when 02:00 opened
    assert TIMEFRAME_OFFSETS_NS["W"] == 4 * DAY_NS and (4 * DAY_NS) // DAY_NS == 4  # 1970-01-05, a Monday


def test_timeframe_atr_bad_arguments_raise():
    with pytest.raises(ValueError, match="timeframe_ns > 0"):
        TimeframeAtr(0)
    with pytest.raises(ValueError, match="min_bars <= period"):
        TimeframeAtr(MIN_NS, period=3, min_bars=4)


@given(st.integers(0, 600), st.integers(0, 239))
def test_timeframe_atr_state_restored_anywhere_continues_identically(cut, start_min):
    bars = _minutes(600, start_min)
    whole = TimeframeAtr(TIMEFRAMES_NS["60"], 14, 3)
    expected = [whole.update(*b) for b in bars]
    first = TimeframeAtr(TIMEFRAMES_NS["60"], 14, 3)
    head = [first.update(*b) for b in bars[:cut]]
    second = TimeframeAtr(TIMEFRAMES_NS["60"], 14, 3)
    second.restore(first.state())
    assert head + [second.update(*b) for b in bars[cut:]] == expected
