"""Stops: clamp bounds, R:R gross and net of costs, PANIC widening and halving, leverage bands and caps,
fixed mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from nertz_signal.core import stops
from nertz_signal.core.config import SignalConfig

CFG = SignalConfig()
MINUTE_NS = 60_000_000_000
H4_NS = 240 * MINUTE_NS
COSTS = 2 * (0.00055 + 0.0001)  # a round trip's taker fees and slippage, fraction of the entry


def test_atr_sl_distance_inside_bounds_is_one_and_a_half_atr():
    # 1.5 × 2 / 100 = 0.03
    assert stops.atr_sl_distance(2.0, 100.0) == pytest.approx(0.03)


def test_atr_sl_distance_tiny_atr_clamps_to_min():
    assert stops.atr_sl_distance(0.01, 100.0) == 0.015


def test_atr_sl_distance_huge_atr_clamps_to_max():
    assert stops.atr_sl_distance(50.0, 100.0) == 0.05


def test_atr_sl_distance_bad_price_raises():
    with pytest.raises(ValueError, match="expected price > 0"):
        stops.atr_sl_distance(1.0, 0.0)


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=1e-6, max_value=1e6))
def test_plan_any_atr_keeps_sl_in_bounds_tp_three_and_a_half_times_sl_and_net_rr_at_least_three(atr, price):
    p = stops.plan("long", price, atr, "normal", CFG, H4_NS)
    assert p is not None
    assert CFG.sl_min <= p.sl_distance <= CFG.sl_max
    assert p.tp_distance == pytest.approx(3.5 * p.sl_distance)
    assert p.net_risk_reward == pytest.approx((p.tp_distance - COSTS) / (p.sl_distance + COSTS))
    assert 3.0 <= p.net_risk_reward < 3.5
    assert p.stop_loss < price < p.take_profit
    assert 1.0 <= p.leverage <= CFG.max_leverage
    assert p.notional_usdt <= p.leverage * CFG.equity_usdt * (1 + 1e-12)


def test_plan_long_sets_prices_below_and_above_entry():
    # ATR 2 at 100 → SL 3 %, TP 10.5 %
    p = stops.plan("long", 100.0, 2.0, "normal", CFG, H4_NS)
    assert p is not None
    assert (p.sl_distance, p.tp_distance) == (pytest.approx(0.03), pytest.approx(0.105))
    assert (p.stop_loss, p.take_profit) == (pytest.approx(97.0), pytest.approx(110.5))
    # risk 1 % of 10,000 = 100 USDT at a 3 % stop plus 0.13 % of costs → 3,194.89 USDT notional
    assert p.notional_usdt == pytest.approx(100 / (0.03 + COSTS))
    assert p.qty == pytest.approx(p.notional_usdt / 100.0)
    assert p.net_risk_reward == pytest.approx((0.105 - COSTS) / (0.03 + COSTS))  # 3.31
    # daily volatility of a 4 h ATR of 2 % is 2 % x sqrt(6) = 4.9 %: the 3x band
    assert p.volatility == pytest.approx(0.02 * 6**0.5) and p.leverage == 3.0


def test_plan_short_mirrors_prices():
    p = stops.plan("short", 100.0, 2.0, "normal", CFG, H4_NS)
    assert p is not None
    assert (p.stop_loss, p.take_profit) == (pytest.approx(103.0), pytest.approx(89.5))


def test_plan_panic_widens_stop_one_and_a_half_and_halves_size():
    # SL 1.5 % × 1.5 = 2.25 %; notional 100 / (0.0225 + costs) × 0.5 = 2,092.05 USDT
    p = stops.plan("long", 100.0, 1.0, "panic", CFG, H4_NS)
    assert p is not None
    assert p.sl_distance == pytest.approx(0.0225)
    assert p.tp_distance == pytest.approx(3.5 * 0.0225)
    assert p.notional_usdt == pytest.approx(100 / (0.0225 + COSTS) * 0.5)


def test_plan_panic_widened_stop_still_clamped():
    p = stops.plan("long", 100.0, 3.0, "panic", CFG, H4_NS)  # 4.5 % × 1.5 = 6.75 % → 5 %
    assert p is not None and p.sl_distance == 0.05


def test_plan_atr_mode_without_atr_is_none():
    assert stops.plan("long", 100.0, None, "unknown", CFG, H4_NS) is None


def test_plan_fixed_mode_uses_percentages():
    cfg = SignalConfig(stop_mode="fixed", tp_percentage=4.0, sl_percentage=1.0)
    p = stops.plan("long", 100.0, None, "unknown", cfg, None)
    assert p is not None
    assert (p.stop_loss, p.take_profit) == (pytest.approx(99.0), pytest.approx(104.0))
    assert p.net_risk_reward == pytest.approx((0.04 - COSTS) / (0.01 + COSTS))  # 3.42
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


def test_config_fixed_mode_net_ratio_below_three_is_rejected_with_the_figures():
    # 3 % / 1 %, the seed's, is 3 gross and (3 - 0.13) / (1 + 0.13) = 2.54 net
    with pytest.raises(
        ValidationError, match=r"net R:R >= 3 in fixed mode .* was 2\.54: tp 3 %, sl 1 %, costs 0\.130%"
    ):
        SignalConfig(stop_mode="fixed", tp_percentage=3.0, sl_percentage=1.0)
    assert SignalConfig(tp_percentage=3.0, sl_percentage=1.0).stop_mode == "atr"  # not used: not checked


def test_config_gross_risk_reward_below_the_net_minimum_is_rejected():
    with pytest.raises(ValidationError, match="risk_reward >= min_risk_reward"):
        SignalConfig(risk_reward=3.2, min_risk_reward=3.5)


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=1e-6, max_value=1e6))
def test_plan_default_round_trip_fees_at_most_a_fifth_of_the_planned_risk(atr, price):
    # issue 10: a round trip's fees are at most 20 % of its planned risk under the defaults
    p = stops.plan("long", price, atr, "normal", CFG, H4_NS)
    assert p is not None
    fees = p.notional_usdt * 2 * CFG.taker_fee
    planned_risk = p.notional_usdt * (p.sl_distance + CFG.costs)
    assert planned_risk == pytest.approx(CFG.risk_per_trade * CFG.equity_usdt)
    assert fees <= 0.2 * planned_risk and fees / planned_risk < 0.07  # 6.7 % at the 1.5 % floor


def test_config_costs_are_two_legs_of_fee_and_slippage():
    assert CFG.costs == pytest.approx(COSTS)
    assert SignalConfig(taker_fee=0.0002, slippage_bps=0).costs == pytest.approx(0.0004)
    assert CFG.net_risk_reward(0.0525, 0.015) == pytest.approx((0.0525 - COSTS) / (0.015 + COSTS))  # 3.14
