"""The Hard Lock component: its state machine, the risk guard and the paper venue, fed by hand."""

from __future__ import annotations

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id, order_link_id
from nertz_common.testing import factories as f
from nertz_executor.core import lock
from nertz_executor.core.config import HOUR_NS, MINUTE_NS

FEE = 0.00055
SLIP = 0.0001


def ticker(ts_ns: int, symbol: str = "BTCUSDT") -> ev.Ticker:
    return ev.Ticker(
        event_id=derive_id("Ticker", symbol, ts_ns), ts_event=ts_ns, ts_init=ts_ns, symbol=symbol, last_price=100.0
    )


def entered(kit, cfg=None, side="long", symbol="BTCUSDT", **intent_kw):
    """State after an approved intent on bar 0 (close 100): ENTRY_PENDING."""
    cfg = cfg or kit.config()
    b0 = kit.bar(0, symbol)
    intent = f.intent(b0, side=side, sl=0.01, **intent_kw)
    state, events = kit.on_bar(kit.fresh(cfg), b0, cfg, intent)
    return state, events, intent, cfg


def opened(kit, cfg=None, side="long", **intent_kw):
    """State after the entry filled at bar 1's open (100): LOCKED."""
    state, _, intent, cfg = entered(kit, cfg, side, **intent_kw)
    state, events = kit.on_bar(state, kit.bar(1, close=100.0, open_=100.0), cfg)
    return state, events, intent, cfg


def test_decide_approve_in_flat_submits_entry_and_goes_entry_pending(kit):
    state, events, intent, _ = entered(kit)
    assert kit.names(events) == ["VerdictAwaited", "OrderSubmitted"]
    awaited, order = events
    assert awaited.lock_state == "FLAT" and awaited.correlation_id == intent.event_id
    assert order.order_id == order_link_id(intent.event_id)
    assert order.event_id == derive_id("OrderSubmitted", intent.event_id, order.order_id)
    assert (order.side, order.qty, order.take_profit, order.stop_loss) == ("Buy", 1.0, 103.0, 99.0)
    assert not order.reduce_only and order.order_type == "Market"
    assert order.ts_event == order.ts_init == kit.bar(0).ts_event
    assert order.causation_id == f.verdict(intent).event_id
    sym = state.symbol("BTCUSDT")
    assert sym.lock == "ENTRY_PENDING" and sym.entry_deadline_ns == order.ts_event + 5 * MINUTE_NS


def test_decide_size_multiplier_scales_qty(kit):
    cfg = kit.config()
    b0 = kit.bar(0)
    intent = f.intent(b0, qty=2.0)
    _, events = kit.on_bar(kit.fresh(cfg), b0, cfg, intent, f.verdict(intent, size_multiplier=0.25))
    assert events[-1].qty == pytest.approx(0.5)


def test_decide_rejected_verdict_in_flat_emits_nothing_but_awaited(kit):
    cfg = kit.config()
    b0 = kit.bar(0)
    intent = f.intent(b0)
    state, events = kit.on_bar(kit.fresh(cfg), b0, cfg, intent, f.verdict(intent, "reject"))
    assert kit.names(events) == ["VerdictAwaited"]
    assert state.symbol("BTCUSDT").lock == "FLAT"


def test_decide_fill_at_next_bar_open_engages_lock(kit):
    state, events, intent, _ = opened(kit)
    assert kit.names(events) == ["OrderFilled", "PositionOpened", "LockEngaged"]
    fill, pos, engaged = events
    assert fill.price == pytest.approx(100.0 * (1 + SLIP)) and fill.side == "Buy" and not fill.reduce_only
    assert fill.fee_usdt == pytest.approx(fill.price * FEE)
    assert pos.entry_price == fill.price and pos.causation_id == fill.event_id
    assert engaged.causation_id == pos.event_id and engaged.correlation_id == intent.event_id
    assert state.symbol("BTCUSDT").lock == "LOCKED" and state.open_positions == 1


def test_decide_book_fills_buy_at_best_ask_and_sell_at_best_bid(kit):
    for side, raw in (("long", 100.05), ("short", 99.95)):
        state, _, _, cfg = entered(kit, side=side)
        book = f.book(kit.bar(0).ts_event + 1, mid=100.0, spread=0.1)
        _, events = kit.on_market(state, book, cfg)
        assert kit.names(events) == ["OrderFilled", "PositionOpened", "LockEngaged"]
        expected = raw * (1 + SLIP) if side == "long" else raw * (1 - SLIP)
        assert events[0].price == pytest.approx(expected)


def test_decide_bar_opened_before_the_order_does_not_fill(kit):
    state, _, _, cfg = entered(kit)
    old = kit.bar(0, interval="5")  # opened at T0, before the order at T0 + 1 min
    _, events = kit.on_market(state, msgspec.structs.replace(old, ts_event=old.ts_event + 1), cfg)
    assert events == []


@pytest.mark.parametrize(("side", "same"), [("long", "locked_same_side"), ("short", "locked_opposing_side")])
def test_decide_verdicts_while_locked_are_suppressed_with_reason(kit, side, same):
    state, _, _, cfg = opened(kit)
    b2 = kit.bar(2)
    for decision in ("approve", "reject"):
        intent = f.intent(b2, side=side)
        _, events = kit.on_bar(state, b2, cfg, intent, f.verdict(intent, decision))
        assert kit.names(events) == ["VerdictAwaited", "SignalSuppressed"]
        assert events[0].lock_state == "LOCKED"
        sup = events[1]
        assert (sup.reason, sup.lock_state, sup.decision) == (same, "LOCKED", decision)
        assert sup.correlation_id == intent.event_id


def test_decide_verdict_in_entry_pending_is_suppressed(kit):
    state, _, _, cfg = entered(kit)
    b1 = kit.bar(1, interval="5")  # a bar that cannot fill: the lock stays ENTRY_PENDING
    b1 = msgspec.structs.replace(b1, open_time_ns=b1.open_time_ns - 5 * MINUTE_NS)
    intent = f.intent(b1)
    state, events = kit.on_bar(state, b1, cfg, intent)
    assert kit.names(events) == ["VerdictAwaited", "SignalSuppressed"]
    assert events[1].reason == "entry_pending" and events[1].lock_state == "ENTRY_PENDING"
    assert state.symbol("BTCUSDT").lock == "ENTRY_PENDING"


def test_decide_take_profit_hit_closes_with_net_pnl(kit):
    state, _, intent, cfg = opened(kit)
    b2 = kit.bar(2, close=103.5, open_=101.0)  # high 103.6035 >= TP 103, low 100.899 > SL 99
    state, events = kit.on_bar(state, b2, cfg)
    assert kit.names(events) == ["OrderFilled", "PositionClosed"]
    fill, closed = events
    assert fill.reduce_only and fill.side == "Sell" and fill.price == 103.0
    assert fill.order_id == order_link_id(intent.event_id, "take_profit")
    entry = 100.0 * 1.0001  # 100.01
    fees = entry * 0.00055 + 103.0 * 0.00055  # 0.0550055 + 0.05665
    assert closed.exit_reason == "take_profit"
    assert closed.realized_pnl_usdt == pytest.approx(2.8783445, abs=1e-9)
    assert closed.realized_pnl_usdt == pytest.approx((103.0 - entry) - fees)
    assert closed.fee_usdt == pytest.approx(0.1116555)
    assert closed.return_fraction == pytest.approx(2.8783445 / 100.01)
    assert closed.holding_ns == MINUTE_NS
    assert state.symbol("BTCUSDT").lock == "COOLDOWN"
    assert state.equity_usdt == pytest.approx(10_000 + 2.8783445)
    assert state.open_positions == 0 and state.closed_trades == 1 and state.winning_trades == 1


def test_decide_bar_touching_tp_and_sl_stop_loss_wins(kit):
    state, _, _, cfg = opened(kit)
    b2 = kit.bar(2, close=103.5, open_=101.0, low=98.5)
    state, events = kit.on_bar(state, b2, cfg)
    closed = events[-1]
    assert closed.exit_reason == "stop_loss"
    exit_px = 99.0 * (1 - SLIP)
    assert closed.exit_price == pytest.approx(exit_px)
    entry = 100.0 * (1 + SLIP)
    assert closed.realized_pnl_usdt == pytest.approx(exit_px - entry - (entry + exit_px) * FEE)
    assert closed.realized_pnl_usdt < 0 and state.winning_trades == 0


def test_decide_fill_and_stop_in_the_same_bar_closes_at_once(kit):
    state, _, _, cfg = entered(kit)
    b1 = kit.bar(1, close=100.0, open_=100.0, low=98.0)
    state, events = kit.on_bar(state, b1, cfg)
    assert kit.names(events) == ["OrderFilled", "PositionOpened", "LockEngaged", "OrderFilled", "PositionClosed"]
    assert events[-1].exit_reason == "stop_loss" and events[-1].holding_ns == 0


def test_decide_short_take_profit_from_book_ask(kit):
    state, _, _, cfg = opened(kit, side="short")  # short at 100 * (1 - SLIP), TP 97, SL 101
    _, events = kit.on_market(state, f.book(kit.bar(2).ts_event, mid=98.0, spread=0.1), cfg)
    assert events == []
    state, events = kit.on_market(state, f.book(kit.bar(2).ts_event + 1, mid=96.9, spread=0.1), cfg)
    assert kit.names(events) == ["OrderFilled", "PositionClosed"]
    assert events[0].side == "Buy" and events[1].exit_reason == "take_profit" and events[1].exit_price == 97.0
    assert events[1].realized_pnl_usdt > 0


def test_decide_entry_not_filled_in_time_expires_to_flat(kit):
    state, events, intent, cfg = entered(kit)
    order_ts = events[-1].ts_event
    state, out = kit.on_market(state, ticker(order_ts + 5 * MINUTE_NS), cfg)
    assert out == [] and state.symbol("BTCUSDT").lock == "ENTRY_PENDING"
    state, out = kit.on_market(state, ticker(order_ts + 5 * MINUTE_NS + 1), cfg)
    assert kit.names(out) == ["EntryExpired"]
    assert out[0].order_id == order_link_id(intent.event_id) and state.symbol("BTCUSDT").lock == "FLAT"
    late_book = f.book(order_ts + 6 * MINUTE_NS)
    assert kit.on_market(state, late_book, cfg)[1] == []


def test_decide_book_after_the_deadline_expires_instead_of_filling(kit):
    state, events, _, cfg = entered(kit)
    _, out = kit.on_market(state, f.book(events[-1].ts_event + 10 * MINUTE_NS), cfg)
    assert kit.names(out) == ["EntryExpired"]


def test_decide_cooldown_release_after_it_elapses(kit):
    state, _, intent, cfg = opened(kit)
    state, events = kit.on_bar(state, kit.bar(2, close=103.5, open_=101.0), cfg)  # TP at T0 + 3 min
    until = state.symbol("BTCUSDT").cooldown_until_ns
    assert until == events[-1].ts_event + 15 * MINUTE_NS
    b16 = kit.bar(16, close=103.0)  # closes at T0 + 17 min: still cooling down
    i16 = f.intent(b16)
    state, events = kit.on_bar(state, b16, cfg, i16)
    assert kit.names(events) == ["VerdictAwaited", "SignalSuppressed"] and events[1].reason == "cooldown"
    b17 = kit.bar(17, close=103.0)  # closes at T0 + 18 min = cooldown end; its own intent then trades
    i17 = f.intent(b17)
    state, events = kit.on_bar(state, b17, cfg, i17)
    assert kit.names(events) == ["LockReleased", "VerdictAwaited", "OrderSubmitted"]
    assert events[0].correlation_id == intent.event_id and events[0].reason == "cooldown_elapsed"
    assert events[1].lock_state == "FLAT"
    assert state.symbol("BTCUSDT").lock == "ENTRY_PENDING"


def test_decide_stale_exit_after_max_hold_closes_at_market(kit):
    cfg = kit.config(min_hold_ns=HOUR_NS, max_hold_ns=2 * HOUR_NS)
    state, _, intent, _ = opened(kit, cfg)  # opened at T0 + 2 min (bar 1's close)
    # before max_hold: a flat position stays open
    state, events = kit.on_bar(state, kit.bar(120, close=100.2), cfg)
    assert events == []
    # after max_hold with a return above the band: stays open
    _, events = kit.on_bar(state, kit.bar(121, close=101.5), cfg)
    assert events == []
    # after max_hold with a return below the 1 % band: closed at market
    state, events = kit.on_bar(state, kit.bar(121, close=100.2), cfg)
    assert kit.names(events) == ["OrderSubmitted", "OrderFilled", "PositionClosed"]
    order, fill, closed = events
    assert order.reduce_only and order.side == "Sell" and order.order_id == order_link_id(intent.event_id, "stale_exit")
    assert fill.order_id == order.order_id and fill.price == pytest.approx(100.2 * (1 - SLIP))
    assert closed.exit_reason == "stale_exit" and closed.holding_ns == 120 * MINUTE_NS
    assert state.symbol("BTCUSDT").lock == "COOLDOWN"


def test_decide_no_stale_exit_before_min_hold(kit):
    cfg = kit.config(min_hold_ns=3 * HOUR_NS, max_hold_ns=3 * HOUR_NS)
    state, _, _, _ = opened(kit, cfg)
    _, events = kit.on_bar(state, kit.bar(150, close=100.0), cfg)  # 2.5 h: past nothing
    assert events == []


def test_decide_min_hold_above_max_hold_delays_the_stale_exit_to_it(kit):
    cfg = kit.config(min_hold_ns=4 * HOUR_NS, max_hold_ns=2 * HOUR_NS)
    state, _, _, _ = opened(kit, cfg)  # opened at T0 + 2 min
    _, events = kit.on_bar(state, kit.bar(200, close=100.2), cfg)  # 3.3 h: past max_hold, before min_hold
    assert events == []
    _, events = kit.on_bar(state, kit.bar(242, close=100.2), cfg)  # 4 h 1 min: past both
    assert kit.names(events) == ["OrderSubmitted", "OrderFilled", "PositionClosed"]
    assert events[-1].exit_reason == "stale_exit"


def test_decide_verdict_of_another_intent_does_not_complete_the_step(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    b0 = kit.bar(0)
    intent, other = f.intent(b0), f.intent(kit.bar(1))
    exe.feed(b0)
    assert kit.names(exe.feed(kit.factor(b0, intent.event_id))) == ["VerdictAwaited"]
    exe.feed(intent)
    assert exe.feed(f.verdict(other)) == []  # buffered by its key: not this step's partner
    assert exe.node.awaiting == (ev.VerdictIssued, intent.event_id)
    assert kit.names(exe.feed(f.verdict(intent))) == ["OrderSubmitted"]


def test_decide_verdict_before_its_intent_is_joined_in_either_order(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    b0 = kit.bar(0)
    intent = f.intent(b0)
    assert exe.feed(f.verdict(intent)) == [] and exe.feed(intent) == []  # both early: buffered
    exe.feed(b0)
    assert kit.names(exe.feed(kit.factor(b0, intent.event_id))) == ["VerdictAwaited", "OrderSubmitted"]


def test_risk_max_positions_denies_the_extra_entry(kit):
    cfg = kit.config(max_positions=2)
    state = kit.fresh(cfg)
    for sym in ("BTCUSDT", "ETHUSDT"):
        b = kit.bar(0, sym)
        state, events = kit.on_bar(state, b, cfg, f.intent(b))
        assert events[-1].__class__ is ev.OrderSubmitted
    b = kit.bar(0, "SOLUSDT")
    intent = f.intent(b)
    state, events = kit.on_bar(state, b, cfg, intent)
    assert kit.names(events) == ["VerdictAwaited", "RiskDenied"]
    assert events[1].rule == "max_positions" and "2 positions" in events[1].reason
    assert state.symbol("SOLUSDT").lock == "FLAT"


def test_risk_daily_loss_breaker_halts_until_next_utc_day(kit):
    cfg = kit.config(daily_loss_limit=0.02, max_risk_per_trade=0.03)  # -200 USDT of 10 000; a 2 % stop allowed
    state, _, _, _ = opened(kit, cfg, qty=200.0)  # 20 000 USDT notional, loss at SL ~ 226 USDT
    state, events = kit.on_bar(state, kit.bar(2, close=99.5, open_=100.0, low=98.0), cfg)
    assert events[-1].exit_reason == "stop_loss" and events[-1].realized_pnl_usdt < -200
    b = kit.bar(3, "ETHUSDT")
    state, events = kit.on_bar(state, b, cfg, f.intent(b))
    assert kit.names(events) == ["VerdictAwaited", "RiskDenied"] and events[1].rule == "daily_loss_breaker"
    # T0 is 16:39 UTC: bar 440 closes at 00:00 UTC the next day
    later = kit.bar(439, "ETHUSDT")
    state, events = kit.on_bar(state, later, cfg, f.intent(later))
    assert events[-1].rule == "daily_loss_breaker"
    next_day = kit.bar(440, "ETHUSDT")
    state, events = kit.on_bar(state, next_day, cfg, f.intent(next_day))
    assert kit.names(events) == ["VerdictAwaited", "OrderSubmitted"]


def test_risk_trading_stopped_denies_until_started(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    stop = ev.TradingStopped(event_id="stop-1", ts_event=f.T0_NS, ts_init=f.T0_NS, reason="ops")
    assert exe.feed(stop) == [] and not exe.trading_enabled
    b0 = kit.bar(0)
    _, events = kit.on_bar(exe, b0, cfg, f.intent(b0))
    assert events[-1].rule == "trading_stopped"
    exe.feed(ev.TradingStarted(event_id="start-1", ts_event=f.T0_NS, ts_init=f.T0_NS))
    b1 = kit.bar(1)
    _, events = kit.on_bar(exe, b1, cfg, f.intent(b1))
    assert isinstance(events[-1], ev.OrderSubmitted)


def test_risk_trading_stopped_for_one_symbol_halts_only_that_symbol(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    exe.feed(ev.TradingStopped(event_id="stop-eth", ts_event=f.T0_NS, ts_init=f.T0_NS, scope="ETHUSDT"))
    assert exe.trading_enabled and exe.halted == frozenset({"ETHUSDT"})
    eth, btc = kit.bar(0, "ETHUSDT"), kit.bar(0, "BTCUSDT")
    _, events = kit.on_bar(exe, eth, cfg, f.intent(eth))
    assert events[-1].rule == "trading_stopped"
    _, events = kit.on_bar(exe, btc, cfg, f.intent(btc))
    assert isinstance(events[-1], ev.OrderSubmitted)
    exe.feed(ev.TradingStarted(event_id="start-eth", ts_event=f.T0_NS, ts_init=f.T0_NS, scope="ETHUSDT"))
    eth1 = kit.bar(1, "ETHUSDT")
    _, events = kit.on_bar(exe, eth1, cfg, f.intent(eth1))
    assert isinstance(events[-1], ev.OrderSubmitted)


def test_risk_trading_stopped_applies_where_it_sits_in_the_log_not_at_the_next_bar(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    b0 = kit.bar(0)
    intent = f.intent(b0)
    exe.feed(b0)
    exe.feed(ev.TradingStopped(event_id="stop-2", ts_event=b0.ts_event, ts_init=b0.ts_event))  # held: mid-step
    out = exe.feed(kit.factor(b0, intent.event_id)) + exe.feed(intent) + exe.feed(f.verdict(intent))
    assert isinstance(out[-1], ev.OrderSubmitted)  # the bar's step came first in the log
    assert not exe.trading_enabled  # ... and the stop applied right after it, before any later bar


@pytest.mark.parametrize(
    ("cfg_kw", "intent_kw", "rule"),
    [
        ({}, {"leverage": 20.0}, "leverage_cap"),  # the intent's leverage above the 10x cap
        ({"max_leverage": 1.0}, {"leverage": 1.0, "qty": 150.0}, "leverage_cap"),  # 15 000 USDT on 10 000
        ({}, {"qty": 0.01}, "min_notional"),  # 1 USDT
    ],
)
def test_risk_rules_deny_with_their_name(kit, cfg_kw, intent_kw, rule):
    cfg = kit.config(**cfg_kw)
    b0 = kit.bar(0)
    state, events = kit.on_bar(kit.fresh(cfg), b0, cfg, f.intent(b0, **intent_kw))
    assert isinstance(events[-1], ev.RiskDenied) and events[-1].rule == rule
    assert state.symbol("BTCUSDT").lock == "FLAT"


def test_risk_per_trade_denies_a_wide_stop(kit):
    cfg = kit.config(max_risk_per_trade=0.01)
    b0 = kit.bar(0)
    _, events = kit.on_bar(kit.fresh(cfg), b0, cfg, f.intent(b0, qty=150.0))  # 150 USDT at SL
    assert events[-1].rule == "risk_per_trade"


def test_evolve_entry_while_locked_raises_lock_violation(kit):
    state, _, _, _ = opened(kit)
    order = ev.OrderSubmitted(
        event_id="x",
        ts_event=f.T0_NS,
        ts_init=f.T0_NS,
        symbol="BTCUSDT",
        correlation_id="other",
        causation_id="v",
        order_id="o",
        side="Sell",
        qty=1.0,
        price_ref=100.0,
        take_profit=97.0,
        stop_loss=101.0,
    )
    with pytest.raises(lock.LockViolation, match=r"entry_submitted.*was LOCKED"):
        lock.evolve(state.state, order)


def test_evolve_position_closed_without_position_raises(kit):
    state, events, _, _ = entered(kit)
    closed = ev.PositionClosed(
        event_id="c",
        ts_event=f.T0_NS,
        ts_init=f.T0_NS,
        symbol="BTCUSDT",
        correlation_id=events[-1].correlation_id,
        causation_id="x",
        position_id="p",
        side="long",
        qty=1.0,
        entry_price=100.0,
        exit_price=101.0,
        exit_reason="take_profit",
        realized_pnl_usdt=1.0,
        fee_usdt=0.1,
        return_fraction=0.01,
        holding_ns=0,
    )
    with pytest.raises(lock.LockViolation):
        lock.evolve(state.state, closed)


def test_decide_the_component_folds_before_it_returns_so_a_forbidden_event_never_leaves_it(kit):
    cfg = kit.config()
    exe = kit.fresh(cfg)
    b0 = kit.bar(0)
    _, events = kit.on_bar(exe, b0, cfg, f.intent(b0))
    before = exe.state
    second = msgspec.structs.replace(events[-1], event_id="again", correlation_id="another-intent")
    # a second entry for a symbol already ENTRY_PENDING: the fold refuses it inside the component
    with pytest.raises(lock.LockViolation, match="ENTRY_PENDING"):
        exe.executor._emit([second])
    assert exe.state == before
