"""Indicators: EMA, triple-EMA trend, Wilder ATR and the ATR median (hand values and properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_signal.core.indicators import HOUR_NS, Atr, AtrMedian, Ema, TripleEma, true_range


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
    assert m.regime(5.0) == "normal"  # 5 <= 2.5 × 2
    assert m.regime(5.01) == "panic"


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
