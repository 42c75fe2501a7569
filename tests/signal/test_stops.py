"""Stops: clamp bounds, R:R, PANIC widening and halving, leverage bands and caps, fixed mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from nertz_signal.core import stops
from nertz_signal.core.config import SignalConfig

CFG = SignalConfig()
MINUTE_NS = 60_000_000_000


def test_atr_sl_distance_inside_bounds_is_one_and_a_half_atr():
    # 1.5 × 2 / 100 = 0.03
    assert stops.atr_sl_distance(2.0, 100.0) == pytest.approx(0.03)


def test_atr_sl_distance_tiny_atr_clamps_to_min():
    assert stops.atr_sl_distance(0.01, 100.0) == 0.003


def test_atr_sl_distance_huge_atr_clamps_to_max():
    assert stops.atr_sl_distance(50.0, 100.0) == 0.05


def test_atr_sl_distance_bad_price_raises():
    with pytest.raises(ValueError, match="expected price > 0"):
        stops.atr_sl_distance(1.0, 0.0)


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=1e-6, max_value=1e6))
def test_plan_any_atr_keeps_sl_in_bounds_and_tp_three_times_sl(atr, price):
    p = stops.plan("long", price, atr, "normal", CFG, MINUTE_NS)
    assert p is not None
    assert CFG.sl_min <= p.sl_distance <= CFG.sl_max
    assert p.tp_distance == pytest.approx(3.0 * p.sl_distance)
    assert p.stop_loss < price < p.take_profit
    assert 1.0 <= p.leverage <= CFG.max_leverage
    assert p.notional_usdt <= p.leverage * CFG.equity_usdt * (1 + 1e-12)


def test_plan_long_sets_prices_below_and_above_entry():
    # ATR 1 at 100 → SL 1.5 %, TP 4.5 %
    p = stops.plan("long", 100.0, 1.0, "normal", CFG, MINUTE_NS)
    assert p is not None
    assert (p.sl_distance, p.tp_distance) == (pytest.approx(0.015), pytest.approx(0.045))
    assert (p.stop_loss, p.take_profit) == (pytest.approx(98.5), pytest.approx(104.5))
    # risk 1 % of 10,000 = 100 USDT at a 1.5 % stop → 6,666.67 USDT notional, 66.67 units
    assert p.notional_usdt == pytest.approx(100 / 0.015)
    assert p.qty == pytest.approx(p.notional_usdt / 100.0)


def test_plan_short_mirrors_prices():
    p = stops.plan("short", 100.0, 1.0, "normal", CFG, MINUTE_NS)
    assert p is not None
    assert (p.stop_loss, p.take_profit) == (pytest.approx(101.5), pytest.approx(95.5))


def test_plan_panic_widens_stop_one_and_a_half_and_halves_size():
    # SL 1.5 % × 1.5 = 2.25 %; notional 100 / 0.0225 × 0.5 = 2,222.2 USDT
    p = stops.plan("long", 100.0, 1.0, "panic", CFG, MINUTE_NS)
    assert p is not None
    assert p.sl_distance == pytest.approx(0.0225)
    assert p.tp_distance == pytest.approx(3 * 0.0225)
    assert p.notional_usdt == pytest.approx(100 / 0.0225 * 0.5)


def test_plan_panic_widened_stop_still_clamped():
    p = stops.plan("long", 100.0, 3.0, "panic", CFG, MINUTE_NS)  # 4.5 % × 1.5 = 6.75 % → 5 %
    assert p is not None and p.sl_distance == 0.05


def test_plan_atr_mode_without_atr_is_none():
    assert stops.plan("long", 100.0, None, "unknown", CFG, MINUTE_NS) is None


def test_plan_fixed_mode_uses_percentages():
    cfg = SignalConfig(stop_mode="fixed", tp_percentage=3.0, sl_percentage=1.0)
    p = stops.plan("long", 100.0, None, "unknown", cfg, None)
    assert p is not None
    assert (p.stop_loss, p.take_profit) == (pytest.approx(99.0), pytest.approx(103.0))
    assert p.leverage == 3.0  # unknown volatility → the cautious band


def test_plan_fixed_mode_panic_halves_size_keeps_stops():
    cfg = SignalConfig(stop_mode="fixed")
    normal = stops.plan("long", 100.0, 1.0, "normal", cfg, MINUTE_NS)
    panic = stops.plan("long", 100.0, 1.0, "panic", cfg, MINUTE_NS)
    assert normal is not None and panic is not None
    assert panic.sl_distance == normal.sl_distance
    assert panic.notional_usdt == pytest.approx(normal.notional_usdt / 2)


@pytest.mark.parametrize(
    ("vol", "lev"),
    [(0.08, 3.0), (0.04, 3.0), (0.035, 5.0), (0.03, 5.0), (0.025, 7.0), (0.02, 7.0), (0.019, 10.0), (0.0, 10.0)],
)
def test_leverage_for_volatility_bands(vol, lev):
    assert stops.leverage_for(vol) == lev


def test_leverage_for_never_above_cap():
    assert stops.leverage_for(0.001, cap=4.0) == 4.0
    assert stops.leverage_for(0.035, cap=4.0) == 4.0
    assert stops.leverage_for(0.05, cap=1.0) == 1.0


def test_leverage_for_unknown_volatility_is_cautious():
    assert stops.leverage_for(None) == 3.0


def test_daily_volatility_scales_one_minute_by_sqrt_1440():
    assert stops.daily_volatility(1.0, 1000.0, MINUTE_NS) == pytest.approx(0.001 * 1440**0.5)


def test_position_notional_capped_by_leverage():
    # 1 % × 10,000 / 0.5 % = 20,000 (under 10 × 10,000); at 0.05 % it would be 200,000 → cap 100,000
    assert stops.position_notional(0.01, 10_000, 0.005, 10) == pytest.approx(20_000)
    assert stops.position_notional(0.01, 10_000, 0.0005, 10) == pytest.approx(100_000)


def test_config_risk_reward_below_three_is_rejected():
    with pytest.raises(ValidationError, match="risk_reward"):
        SignalConfig(risk_reward=2.5)


def test_config_fixed_ratio_below_three_is_rejected():
    with pytest.raises(ValidationError, match="R:R >= 3"):
        SignalConfig(tp_percentage=2.0, sl_percentage=1.0)
