"""The full risk guard: every rule denying with its reason, their order, orders on the instrument's grid,
and the adaptive leverage (its inputs kept across a restart)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import NodeState
from nertz_common.testing import factories as f
from nertz_executor.core import risk, rounding
from nertz_executor.core.config import DAY_NS, ExecutorConfig
from nertz_executor.core.lock import TradeResult, initial_state

CFG = ExecutorConfig()


def ctx(**kw) -> risk.RiskContext:
    """A context every rule passes: 1 BTC-like unit at 100 USDT, stop 1 % away, flat 10 000 USDT account."""
    fields = dict(
        qty=1.0, price_ref=100.0, stop_loss=99.0, leverage=3.0, equity_usdt=10_000.0, open_notional_usdt=0.0,
        open_count=0, trading_enabled=True, daily_pnl_usdt=0.0, day_start_equity_usdt=10_000.0,
    )  # fmt: skip
    fields.update(kw)
    return risk.RiskContext(**fields)  # type: ignore[arg-type]


def spec(symbol: str = "BTCUSDT", ts: int = f.T0_NS, **kw) -> ev.InstrumentSpec:
    """BTCUSDT's real rules (bundled instruments-info: tick 0.10, step 0.001, min 0.001, min notional 5)."""
    fields = dict(tick_size=0.1, qty_step=0.001, min_order_qty=0.001, max_leverage=100.0, min_notional_usdt=5.0)
    fields.update(kw)
    return ev.InstrumentSpec(
        event_id=derive_id("InstrumentSpec", symbol, ts, *fields.values()), ts_event=ts, ts_init=ts, symbol=symbol,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def ticker(ts: int, symbol: str, rate: float, interval_h: int = 8) -> ev.Ticker:
    return ev.Ticker(
        event_id=derive_id("Ticker", symbol, ts), ts_event=ts, ts_init=ts, symbol=symbol, last_price=100.0,
        funding_rate=rate, funding_interval_h=interval_h,
    )  # fmt: skip


# --- each rule, unit ------------------------------------------------------------------------------


def test_risk_check_passes_a_sound_entry():
    assert risk.check(ctx(), CFG) is None


@pytest.mark.parametrize(
    ("rule", "kw", "cfg_kw", "words"),
    [
        ("trading_stopped", {"trading_enabled": False}, {}, ["TradingStopped"]),
        ("daily_loss_breaker", {"daily_pnl_usdt": -500.0}, {}, ["-500.00 USDT", "-5.00%", "next UTC day"]),
        ("max_positions", {"open_count": 3}, {}, ["3 positions", "max 3"]),
        ("leverage_cap", {"leverage": 12.0}, {}, ["12x above cap 10x"]),
        ("leverage_cap", {"open_notional_usdt": 99_950.0}, {}, ["10.00x", "allowed 10.00x"]),
        ("risk_per_trade", {"qty": 200.0, "stop_loss": 99.0}, {}, ["200.00 USDT", "1.50% of equity", "150.00"]),
        ("instrument_unknown", {"has_instrument": False}, {"venue_name": "bybit"}, ["no InstrumentSpec", "bybit"]),
        ("min_order_qty", {"qty": 0.0, "min_order_qty": 0.001}, {}, ["qty 0", "minimum order qty 0.001"]),
        ("min_notional", {"qty": 0.04}, {}, ["notional 4.0000 USDT", "minimum 5 USDT"]),
        ("min_notional", {"qty": 0.09, "min_notional_usdt": 10.0}, {}, ["9.0000 USDT", "minimum 10 USDT"]),
        ("correlation_group", {"group": "layer1", "group_open": 1}, {}, ["1 positions", "layer1", "max 1"]),
        ("funding_rate", {"funding_rate_8h": 0.003}, {}, ["+0.3000% per 8 h", "+0.2500%", "a long pays"]),
        ("funding_rate", {"side": "short", "funding_rate_8h": -0.004}, {}, ["-0.4000%", "-0.2500%", "a short pays"]),
    ],
)
def test_risk_each_rule_denies_with_its_reason_and_figures(rule, kw, cfg_kw, words):
    denial = risk.check(ctx(**kw), dataclasses.replace(CFG, **cfg_kw))
    assert denial is not None and denial[0] == rule, denial
    for w in words:
        assert w in denial[1], (w, denial[1])


@pytest.mark.parametrize(
    ("kw", "cfg_kw"),
    [
        ({"has_instrument": False}, {}),  # paper takes an entry without a spec (unrounded)
        ({"funding_rate_8h": 0.003, "side": "short"}, {}),  # a short receives a positive rate
        ({"funding_rate_8h": -0.003}, {}),  # a long receives a negative one
        ({"funding_rate_8h": 0.0025}, {}),  # at the bound, not beyond it
        ({"group": "layer1", "group_open": 1}, {"max_positions_per_group": 2}),
        ({"qty": 0.05}, {}),  # 5 USDT: at the minimum notional
    ],
)
def test_risk_rules_pass_at_or_inside_their_bounds(kw, cfg_kw):
    assert risk.check(ctx(**kw), dataclasses.replace(CFG, **cfg_kw)) is None


def test_risk_rules_run_in_the_documented_order_first_refusal_wins():
    assert [name for name, _ in risk.RULES] == [
        "trading_stopped", "daily_loss_breaker", "max_positions", "leverage_cap", "risk_per_trade",
        "instrument_unknown", "min_order_qty", "min_notional", "correlation_group", "funding_rate",
    ]  # fmt: skip
    everything = ctx(
        trading_enabled=False, daily_pnl_usdt=-900.0, open_count=5, leverage=20.0, group_open=3, funding_rate_8h=0.1
    )
    names = []
    for name, rule in risk.RULES:
        if rule(everything, CFG) is not None:
            names.append(name)
    assert risk.check(everything, CFG) == ("trading_stopped", risk.trading_stopped(everything, CFG))
    assert names[:3] == ["trading_stopped", "daily_loss_breaker", "max_positions"]
    assert risk.check(ctx(group_open=1, funding_rate_8h=0.1), CFG)[0] == "correlation_group"  # type: ignore[index]


def test_risk_leverage_cap_reads_the_adaptive_leverage():
    lev = risk.Leverage(leverage=2.5, base=10.0, vol_factor=0.5, drawdown_factor=0.5, performance_factor=1.0)
    # 20 000 open + 10 000 new on 10 000 equity = 3x, above the adaptive 2.5x though under the 10x cap
    denial = risk.check(ctx(qty=100.0, stop_loss=99.9, open_notional_usdt=20_000.0, order_leverage=lev), CFG)
    assert denial is not None and denial[0] == "leverage_cap"
    assert "3.00x, allowed 2.50x (adaptive: 10x × vol 0.50 × drawdown 0.50" in denial[1]
    assert risk.check(ctx(qty=100.0, stop_loss=99.9, open_notional_usdt=10_000.0, order_leverage=lev), CFG) is None


# --- adaptive leverage, unit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atr", "ref", "want"),
    [(0.002, 0.002, 1.0), (0.004, 0.002, 0.5), (0.02, 0.002, 0.3), (0.001, 0.002, 1.5), (0.0005, 0.002, 1.5),
     (None, 0.002, 1.0), (0.002, None, 1.0)],
)  # fmt: skip
def test_vol_factor_is_reference_over_current_clamped(atr, ref, want):
    assert risk.vol_factor(atr, ref, CFG) == pytest.approx(want)


def test_reference_volatility_is_the_configured_one_or_the_median_of_enough_samples():
    assert risk.reference_volatility([0.001] * 10, dataclasses.replace(CFG, reference_volatility=0.003)) == 0.003
    assert risk.reference_volatility([0.001, 0.002, 0.009, 0.003, 0.004], CFG) == 0.003
    assert risk.reference_volatility([0.001, 0.002, 0.003, 0.004], CFG) is None  # fewer than 5


@pytest.mark.parametrize(
    ("dd", "want"), [(0.0, 1.0), (0.049, 1.0), (0.05, 0.75), (0.099, 0.75), (0.10, 0.5), (0.149, 0.5), (0.15, 0.25)]
)
def test_drawdown_factor_is_tiered(dd, want):
    assert risk.drawdown_factor(dd, CFG) == want


@pytest.mark.parametrize(
    ("pnls", "kelly"),
    [
        ([30.0, -10.0, -10.0, 30.0], 0.5 - 0.5 / 3.0),  # p 0.5, payoff 3
        ([30.0, -10.0, -10.0, -10.0], 0.25 - 0.75 / 3.0),  # p 0.25, payoff 3: no edge
        ([-5.0, -10.0], -1.0),  # no wins
        ([5.0, 10.0], 1.0),  # no losses: kelly = p = 1
    ],
)
def test_half_kelly_of_win_rate_and_payoff(pnls, kelly):
    assert risk.half_kelly(pnls) == pytest.approx(kelly / 2)


def test_performance_factor_is_one_with_too_few_trades_then_half_kelly_clamped():
    assert risk.performance_factor([-10.0] * 9, CFG) == 1.0  # fewer than 10
    assert risk.performance_factor([-10.0] * 10, CFG) == 0.6  # 1 - 0.5, clamped to 0.6
    assert risk.performance_factor([10.0] * 10, CFG) == 1.2  # 1 + 0.5, clamped to 1.2
    edge = [30.0, -10.0] * 5  # p 0.5, payoff 3: half-Kelly 1/6
    assert risk.performance_factor(edge, CFG) == pytest.approx(1 + 1 / 6)


def test_adaptive_leverage_multiplies_the_factors_clamps_and_rounds_down():
    lev = risk.adaptive_leverage(0.004, [0.002] * 5, 0.07, [-10.0] * 10, CFG)
    assert (lev.vol_factor, lev.drawdown_factor, lev.performance_factor) == (0.5, 0.75, 0.6)
    assert lev.leverage == 2.25  # 10 × 0.5 × 0.75 × 0.6
    calm = risk.adaptive_leverage(0.001, [0.002] * 5, 0.0, [10.0] * 10, CFG)
    assert calm.leverage == 10.0  # 10 × 1.5 × 1 × 1.2 = 18, clamped to the 10x cap
    low = risk.adaptive_leverage(0.02, [0.002] * 5, 0.5, [-10.0] * 10, dataclasses.replace(CFG, base_leverage=3.0))
    assert low.leverage == 1.0  # 3 × 0.3 × 0.25 × 0.6 = 0.135, clamped to 1
    odd = risk.adaptive_leverage(None, [], 0.0, [30.0, -10.0] * 5, CFG)
    assert odd.leverage == 10.0 and risk.adaptive_leverage(None, [], 0.12, [], CFG).leverage == 5.0
    third = risk.adaptive_leverage(0.003, [0.002] * 5, 0.0, [], CFG)  # 10 × 2/3 = 6.666...
    assert third.leverage == 6.66


# --- rounding -------------------------------------------------------------------------------------


def test_rounding_the_issue_example_exactly():
    assert rounding.qty_down(0.5000395, 0.001) == 0.5
    assert rounding.qty_down(0.29999999999999999, 0.1) == 0.3  # the float 0.3, not 0.2
    assert rounding.qty_down(1234.5678, 1.0) == 1234.0
    assert rounding.exits_towards_entry("long", 67_012.345, 64_987.654, 0.1) == (67_012.3, 64_987.7)
    assert rounding.exits_towards_entry("short", 64_987.654, 67_012.345, 0.1) == (64_987.7, 67_012.3)
    assert rounding.exits_towards_entry("long", 0.2123456, 0.1987654, 0.00001) == (0.21234, 0.19877)


def test_rounding_bad_step_raises():
    with pytest.raises(ValueError, match="expected step > 0, was 0"):
        rounding.qty_down(1.0, 0.0)


steps = st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0, 0.00001, 0.0001, 0.5, 0.025])
values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(value=values, step=steps)
def test_rounding_qty_down_is_a_multiple_at_most_the_raw_and_within_a_step(value, step):
    q = rounding.qty_down(value, step)
    assert rounding.is_multiple(q, step)
    exact_v, exact_q, exact_s = Decimal(repr(value)), Decimal(repr(q)), Decimal(repr(step))
    assert exact_q <= exact_v < exact_q + exact_s
    assert q <= value


@given(
    price=st.floats(min_value=0.01, max_value=1e6, allow_nan=False), tick=steps, side=st.sampled_from(["long", "short"])
)
def test_rounding_exits_go_towards_the_entry_by_less_than_a_tick(price, tick, side):
    tp_raw, sl_raw = (price * 1.03, price * 0.99) if side == "long" else (price * 0.97, price * 1.01)
    tp, sl = rounding.exits_towards_entry(side, tp_raw, sl_raw, tick)  # type: ignore[arg-type]
    assert rounding.is_multiple(tp, tick) and rounding.is_multiple(sl, tick)
    d = Decimal(repr(tick))
    if side == "long":  # TP down, SL up: both nearer the entry (below / above the raw levels)
        assert Decimal(repr(tp_raw)) - d < Decimal(repr(tp)) <= Decimal(repr(tp_raw))
        assert Decimal(repr(sl_raw)) <= Decimal(repr(sl)) < Decimal(repr(sl_raw)) + d
    else:
        assert Decimal(repr(tp_raw)) <= Decimal(repr(tp)) < Decimal(repr(tp_raw)) + d
        assert Decimal(repr(sl_raw)) - d < Decimal(repr(sl)) <= Decimal(repr(sl_raw))


# --- through the component ------------------------------------------------------------------------


def test_component_approved_intent_becomes_an_order_on_the_instrument_grid(kit):
    exe = kit.fresh(kit.config(equity_usdt=100_000.0))  # 325 USDT at the stop: within 1.5 %
    assert exe.feed(spec()) == []
    b0 = kit.bar(0, close=65_114.23)
    intent = f.intent(b0, qty=0.5000395 * 2, sl=0.01)  # the validator halves it: 0.5000395 BTC
    _, out = kit.on_bar(exe, b0, intent=intent, verdict=f.verdict(intent, size_multiplier=0.5))
    order = out[-1]
    assert isinstance(order, ev.OrderSubmitted), out
    assert order.qty == 0.5 and repr(order.qty) == "0.5"
    # TP 65114.23 × 1.03 = 67067.6569 → down to 67067.6; SL × 0.99 = 64463.0877 → up to 64463.1
    assert (order.take_profit, order.stop_loss) == (67_067.6, 64_463.1)
    assert order.leverage == 10.0  # a fresh account: 10x × 1 × 1 × 1
    assert exe.state.symbol("BTCUSDT").qty == 0.5 and exe.state.instruments["BTCUSDT"].qty_step == 0.001
    again = ev.decode(ev.encode(order))
    assert again == order


def test_component_paper_without_a_spec_sends_the_intent_unrounded(kit):
    b0 = kit.bar(0, close=65_114.23)
    intent = f.intent(b0, qty=0.5000395, sl=0.01)
    _, out = kit.on_bar(kit.fresh(kit.config(equity_usdt=100_000.0)), b0, intent=intent)
    order = out[-1]
    assert isinstance(order, ev.OrderSubmitted)
    assert (order.qty, order.take_profit, order.stop_loss) == (0.5000395, intent.take_profit, intent.stop_loss)


def test_component_real_venue_without_a_spec_denies_instrument_unknown(kit):
    cfg = kit.config(venue_name="bybit")
    b0 = kit.bar(0)
    _, out = kit.on_bar(kit.fresh(cfg), b0, cfg, f.intent(b0))
    assert isinstance(out[-1], ev.RiskDenied) and out[-1].rule == "instrument_unknown"
    assert "no InstrumentSpec" in out[-1].reason


@pytest.mark.parametrize(
    ("qty", "spec_kw", "rule", "words"),
    [
        (0.0009, {}, "min_order_qty", ["qty 0 (rounded down", "0.001"]),
        (0.0019, {"min_notional_usdt": 5.0}, "min_notional", ["notional 0.1000 USDT", "minimum 5 USDT"]),
        (0.06, {"min_notional_usdt": None}, None, []),  # 6 USDT passes the configured 5 USDT
        (0.04, {"min_notional_usdt": None}, "min_notional", ["4.0000 USDT", "minimum 5 USDT"]),
    ],
)
def test_component_minimums_after_rounding_deny_with_the_figures(kit, qty, spec_kw, rule, words):
    exe = kit.fresh()
    exe.feed(spec(**spec_kw))
    b0 = kit.bar(0)  # close 100
    _, out = kit.on_bar(exe, b0, intent=f.intent(b0, qty=qty))
    if rule is None:
        assert isinstance(out[-1], ev.OrderSubmitted) and out[-1].qty == qty
        return
    assert isinstance(out[-1], ev.RiskDenied) and out[-1].rule == rule, out
    for w in words:
        assert w in out[-1].reason


def test_component_latest_spec_wins(kit):
    exe = kit.fresh()
    exe.feed(spec(qty_step=0.1))
    exe.feed(spec(ts=f.T0_NS + 1, qty_step=0.01))
    b0 = kit.bar(0)
    _, out = kit.on_bar(exe, b0, intent=f.intent(b0, qty=0.1234))
    assert isinstance(out[-1], ev.OrderSubmitted) and out[-1].qty == 0.12


def test_component_funding_against_the_side_is_denied_normalised_to_8h(kit):
    exe = kit.fresh()
    exe.feed(ticker(f.T0_NS, "BTCUSDT", 0.0015, interval_h=4))  # 0.30 % per 8 h: longs pay
    assert exe.state.funding["BTCUSDT"].per_8h == pytest.approx(0.003)
    b0 = kit.bar(0)
    _, out = kit.on_bar(exe, b0, intent=f.intent(b0))
    assert isinstance(out[-1], ev.RiskDenied) and out[-1].rule == "funding_rate"
    assert "+0.3000% per 8 h" in out[-1].reason
    b1 = kit.bar(1)
    _, out = kit.on_bar(exe, b1, intent=f.intent(b1, side="short"))  # a short receives it
    assert isinstance(out[-1], ev.OrderSubmitted)
    exe.feed(ticker(f.T0_NS + 2, "ETHUSDT", 0.0001))
    exe.feed(ev.Ticker(event_id="no-rate", ts_event=f.T0_NS + 3, ts_init=f.T0_NS + 3, symbol="ETHUSDT"))
    assert exe.state.funding["ETHUSDT"].rate == 0.0001  # a ticker without a rate keeps the last one


def test_component_correlation_group_caps_layer1_but_not_another_group(kit):
    exe = kit.fresh()
    b0 = kit.bar(0, "ETHUSDT")
    _, out = kit.on_bar(exe, b0, intent=f.intent(b0))
    assert isinstance(out[-1], ev.OrderSubmitted)
    b1 = kit.bar(0, "SOLUSDT")
    _, out = kit.on_bar(exe, b1, intent=f.intent(b1))
    assert isinstance(out[-1], ev.RiskDenied) and out[-1].rule == "correlation_group"
    assert "in correlation group layer1" in out[-1].reason
    b2 = kit.bar(0, "DOGEUSDT")
    _, out = kit.on_bar(exe, b2, intent=f.intent(b2))
    assert isinstance(out[-1], ev.OrderSubmitted)


# --- adaptive leverage through the component, and across a restart -------------------------------


ADAPT = ExecutorConfig(
    cooldown_ns=0, performance_min_trades=2, performance_window=5, volatility_min_samples=2,
    drawdown_tiers=((0.001, 1.0),), drawdown_floor_factor=0.5,
)  # fmt: skip


def trades(kit, exe, wins: list[bool], start: int = 0) -> int:
    """Open and close one long per entry of ``wins`` (a take-profit or a stop-loss); return the next bar."""
    i = start
    for win in wins:
        b = kit.bar(i)
        _, out = kit.on_bar(exe, b, ADAPT, f.intent(b, qty=10.0, atr=0.1))  # ATR / price 0.001
        assert isinstance(out[-1], ev.OrderSubmitted), out
        kit.on_bar(exe, kit.bar(i + 1, close=100.0, open_=100.0), ADAPT)  # filled at the open
        exit_bar = kit.bar(i + 2, close=100.0, open_=100.0, high=104.0) if win else kit.bar(i + 2, close=99.0, low=98.0)
        _, out = kit.on_bar(exe, exit_bar, ADAPT)
        assert isinstance(out[-1], ev.PositionClosed), out
        kit.on_bar(exe, kit.bar(i + 3), ADAPT)  # cooldown 0: released
        i += 4
    return i


def test_component_adaptive_leverage_reads_drawdown_performance_and_volatility(kit):
    exe = kit.fresh(ADAPT)
    i = trades(kit, exe, [True, False, False, False])
    pnls = [t.pnl_usdt for t in exe.state.recent_trades(5)]
    assert len(pnls) == 4 and pnls[0] > 0 > pnls[1]
    assert exe.state.peak_equity_at(kit.bar(i).ts_event) == pytest.approx(10_000 + pnls[0])
    assert exe.state.drawdown_at(kit.bar(i).ts_event) > 0.001  # three stops: beyond the one tier
    b = kit.bar(i)
    _, out = kit.on_bar(exe, b, ADAPT, f.intent(b, qty=10.0, atr=0.2))  # twice the usual volatility
    order = out[-1]
    assert isinstance(order, ev.OrderSubmitted)
    perf = risk.performance_factor(pnls, ADAPT)
    assert perf < 1.0
    want = rounding.to_step(10.0 * 0.5 * 0.5 * perf, 0.01)  # vol 0.001 / 0.002, drawdown floor 0.5
    assert order.leverage == pytest.approx(max(1.0, want))


def test_restart_snapshot_round_trip_keeps_the_adaptive_leverage_inputs(kit):
    whole = kit.fresh(ADAPT)
    exe = kit.fresh(ADAPT)
    i = trades(kit, exe, [True, False, False])
    trades(kit, whole, [True, False, False])
    exe.feed(spec())
    whole.feed(spec())
    raw = msgspec.msgpack.encode(exe.node.get_state())
    again = kit.fresh(ADAPT)  # a new process: the snapshot, then the tail
    again.node.set_state(msgspec.msgpack.decode(raw, type=NodeState))
    again.seq = exe.seq
    st_, wt = again.state, whole.state
    assert st_.recent_trades(5) == wt.recent_trades(5) and len(st_.recent_trades(5)) == 3
    assert st_.peak_equity_at(kit.bar(i).ts_event) == wt.peak_equity_at(kit.bar(i).ts_event)
    assert st_.volatility == wt.volatility and len(st_.volatility["BTCUSDT"]) == 3
    assert st_.instruments == wt.instruments
    b = kit.bar(i)
    intent = f.intent(b, qty=10.0, atr=0.15)
    _, out_restored = kit.on_bar(again, b, ADAPT, intent)
    _, out_whole = kit.on_bar(whole, b, ADAPT, intent)
    assert out_restored == out_whole
    assert isinstance(out_whole[-1], ev.OrderSubmitted) and out_whole[-1].leverage is not None
    assert 1.0 < out_whole[-1].leverage < 10.0  # the record of 1 win, 2 losses and the drawdown lowered it
    # a fresh executor that never saw the trades decides otherwise: the snapshot carried them
    _, out_fresh = kit.on_bar(kit.fresh(ADAPT), b, ADAPT, intent)
    assert out_fresh[-1].leverage != out_whole[-1].leverage


# --- the fold keeps what the adaptive leverage needs, and no more ------------------------------------


def test_fold_keeps_closes_within_the_drawdown_window_and_at_least_the_performance_window():
    cfg = ExecutorConfig(performance_window=3, performance_min_trades=3, drawdown_window_ns=DAY_NS)
    state = initial_state(cfg)
    from nertz_executor.core import lock

    for k in range(10):  # one close a day, a 1-day window (2 closes): the performance window keeps 3
        ts = f.T0_NS + k * DAY_NS
        pc = ev.PositionClosed(
            event_id=f"pc{k}", ts_event=ts, ts_init=ts, symbol="BTCUSDT", correlation_id=f"i{k}", causation_id="x",
            position_id=f"p{k}", side="long", qty=1.0, entry_price=100.0, exit_price=101.0, exit_reason="take_profit",
            realized_pnl_usdt=float(k), fee_usdt=0.0, return_fraction=0.01, holding_ns=1,
        )  # fmt: skip
        acc = lock._on_position_closed(state, state.symbol("BTCUSDT"), pc).account("BTCUSDT")
        state = msgspec.structs.replace(state, accounts={"BTCUSDT": acc})
    assert [t.pnl_usdt for t in state.account("BTCUSDT").closes] == [7.0, 8.0, 9.0]
    assert state.recent_trades(2) == [TradeResult(ts_ns=f.T0_NS + 8 * DAY_NS, pnl_usdt=8.0),
                                      TradeResult(ts_ns=f.T0_NS + 9 * DAY_NS, pnl_usdt=9.0)]  # fmt: skip


def test_peak_equity_walks_back_through_the_window_in_close_time_order():
    from nertz_executor.core.lock import SymbolAccount

    t = f.T0_NS
    accounts = {
        "BTCUSDT": SymbolAccount(realized_pnl_usdt=100.0, closes=(TradeResult(ts_ns=t + 10, pnl_usdt=100.0),)),
        "ETHUSDT": SymbolAccount(
            realized_pnl_usdt=-150.0,
            closes=(TradeResult(ts_ns=t + 5, pnl_usdt=-50.0), TradeResult(ts_ns=t + 20, pnl_usdt=-100.0)),
        ),
    }
    state = msgspec.structs.replace(initial_state(CFG), accounts=accounts)
    # equity path: 10 000 → 9 950 (ETH) → 10 050 (BTC) → 9 950 (ETH): peak 10 050, drawdown 100 / 10 050
    assert state.equity_usdt == 9_950.0
    assert state.peak_equity_at(t + 30) == 10_050.0
    assert state.drawdown_at(t + 30) == pytest.approx(100 / 10_050)
    # the same closes seen from a month later are outside the window: no drawdown
    assert state.drawdown_at(t + 31 * DAY_NS) == 0.0
