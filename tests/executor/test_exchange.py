"""The executor on a real venue, pure: orders leave through the log; Bybit's reports come back as inputs.

Partial fills open (and close) a position once they cover the order; a duplicated report is ignored; a
refusal carries Bybit's code; reconciliation adopts or halts a position opened outside Nertz and closes
one the venue no longer holds; the venue's wallet is the account's equity; a restart keeps it all.
"""

from __future__ import annotations

import msgspec
import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import NodeState
from nertz_common.testing import factories as f

T_MS = 1_000_000


def bybit(kit, **kw):
    return kit.config(venue_name="bybit", **kw)


def fresh(kit, cfg):
    exe = kit.fresh(cfg)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        exe.feed(kit.spec(symbol))
    return exe


def entered(kit, cfg, side="long", symbol="BTCUSDT"):
    b0 = kit.bar(0, symbol)
    intent = f.intent(b0, side=side, sl=0.01, qty=0.5)
    exe, out = kit.on_bar(fresh(kit, cfg), b0, cfg, intent)
    order = next(e for e in out if isinstance(e, ev.OrderSubmitted))
    return exe, order, intent


def fill(order: ev.OrderSubmitted, n: int, qty: float, price: float, leaves: float = 0.0, *, reduce_only=None,
         exit_reason=None, order_id=None, fee=None) -> ev.OrderFilled:  # fmt: skip
    ts = order.ts_event + (n + 1) * 10 * T_MS
    oid = order_id or order.order_id
    return ev.OrderFilled(
        event_id=derive_id("OrderFilled", "bybit", oid, n), ts_event=ts, ts_init=ts, symbol=order.symbol,
        correlation_id=order.correlation_id, causation_id=order.event_id, order_id=oid,
        fill_id=derive_id("exec", oid, n), side=order.side if reduce_only is None or not reduce_only else
        ("Sell" if order.side == "Buy" else "Buy"), qty=qty, price=price,
        fee_usdt=qty * price * 0.00055 if fee is None else fee, reduce_only=bool(reduce_only), venue_name="bybit",
        exit_reason=exit_reason, venue_order_id=f"v-{oid}", leaves_qty=leaves,
    )  # fmt: skip


def snapshot(symbol: str, ts: int, side=None, qty=0.0, entry=0.0, source="reconcile", mark=None, **kw):
    return ev.PositionSnapshot(
        event_id=derive_id("PositionSnapshot", symbol, ts, source), ts_event=ts, ts_init=ts, symbol=symbol,
        venue_name="bybit", source=source, side=side, qty=qty, entry_price=entry, mark_price=mark, **kw,
    )  # fmt: skip


def test_exchange_order_waits_for_the_venue_and_partial_fills_open_at_their_vwap(kit):
    cfg = bybit(kit)
    exe, order, _ = entered(kit, cfg)
    assert order.venue_name == "bybit" and exe.symbol("BTCUSDT").lock == "ENTRY_PENDING"
    assert kit.names(kit.on_bar(exe, kit.bar(1, close=100.0))[1]) == []  # the market fills nothing: Bybit does
    assert exe.feed(fill(order, 0, 0.2, 100.0, leaves=0.3)) == []
    out = exe.feed(fill(order, 1, 0.3, 101.0))
    assert kit.names(out) == ["PositionOpened", "LockEngaged"]
    opened = out[0]
    assert opened.qty == pytest.approx(0.5)
    assert opened.entry_price == pytest.approx((0.2 * 100 + 0.3 * 101) / 0.5)
    assert opened.fee_usdt == pytest.approx(0.00055 * (0.2 * 100 + 0.3 * 101))
    assert (opened.take_profit, opened.stop_loss) == (order.take_profit, order.stop_loss)
    assert exe.symbol("BTCUSDT").lock == "LOCKED"


def test_exchange_duplicated_fill_report_is_ignored(kit):
    exe, order, _ = entered(kit, bybit(kit))
    first = fill(order, 0, 0.2, 100.0, leaves=0.3)
    exe.feed(first)
    assert exe.feed(first) == []
    assert exe.symbol("BTCUSDT").filled_qty == pytest.approx(0.2)
    assert kit.names(exe.feed(fill(order, 1, 0.3, 100.0))) == ["PositionOpened", "LockEngaged"]


def test_exchange_take_profit_fills_close_net_of_fees_and_funding(kit):
    exe, order, _ = entered(kit, bybit(kit))
    exe.feed(fill(order, 0, 0.5, 100.0, fee=0.03))
    ts = order.ts_event + 3600 * 10**9
    funding = ev.FundingSettled(
        event_id="fund-1", ts_event=ts, ts_init=ts, symbol="BTCUSDT", correlation_id=order.correlation_id,
        causation_id="x", fill_id="fund-exec-1", fee_usdt=0.01, rate=0.0001, venue_name="bybit",
    )  # fmt: skip
    assert exe.feed(funding) == [] and exe.feed(funding) == []  # a repeated report counts once
    tp = fill(
        order, 2, 0.25, 103.0, leaves=0.25, reduce_only=True, exit_reason="take_profit", order_id="tp-1", fee=0.02
    )
    assert exe.feed(tp) == []
    out = exe.feed(fill(order, 3, 0.25, 103.0, reduce_only=True, exit_reason="take_profit", order_id="tp-1", fee=0.02))
    assert kit.names(out) == ["PositionClosed"]
    closed = out[0]
    assert closed.exit_reason == "take_profit" and closed.exit_price == pytest.approx(103.0)
    assert closed.fee_usdt == pytest.approx(0.03 + 0.04 + 0.01)
    assert closed.realized_pnl_usdt == pytest.approx(0.5 * 3.0 - 0.08)
    assert exe.symbol("BTCUSDT").lock == "COOLDOWN"


def test_exchange_refusal_is_an_order_rejected_with_bybits_code_and_back_to_flat(kit):
    exe, order, _ = entered(kit, bybit(kit))
    refused = ev.OrderRefused(
        event_id="r1", ts_event=order.ts_event + 1, ts_init=order.ts_event + 1, symbol="BTCUSDT",
        correlation_id=order.correlation_id, causation_id=order.event_id, order_id=order.order_id, ret_code=110007,
        ret_msg="ab not enough for new order", venue_name="bybit",
    )  # fmt: skip
    out = exe.feed(refused)
    assert kit.names(out) == ["OrderRejected"]
    assert out[0].reason == "110007 ab not enough for new order"
    assert exe.symbol("BTCUSDT").lock == "FLAT"
    assert exe.feed(refused) == []  # a repeat finds nothing in hand


def test_exchange_cancel_after_a_partial_fill_opens_with_the_part(kit):
    exe, order, _ = entered(kit, bybit(kit))
    exe.feed(fill(order, 0, 0.2, 100.0, leaves=0.3))
    canceled = ev.OrderCanceled(
        event_id="c1", ts_event=order.ts_event + 99, ts_init=order.ts_event + 99, symbol="BTCUSDT",
        correlation_id=order.correlation_id, causation_id=order.event_id, order_id=order.order_id,
        reason="PartiallyFilledCanceled", filled_qty=0.2, venue_name="bybit",
    )  # fmt: skip
    out = exe.feed(canceled)
    assert kit.names(out) == ["PositionOpened", "LockEngaged"]
    assert out[0].qty == pytest.approx(0.2)


def test_exchange_part_filled_entry_does_not_expire(kit):
    cfg = bybit(kit)
    exe, order, _ = entered(kit, cfg)
    exe.feed(fill(order, 0, 0.2, 100.0, leaves=0.3))
    out = kit.on_bar(exe, kit.bar(30))[1]  # long past the 5 min entry timeout
    assert "EntryExpired" not in kit.names(out)
    assert exe.symbol("BTCUSDT").lock == "ENTRY_PENDING"


def test_exchange_unfilled_entry_expires_and_a_late_fill_is_adopted_at_reconciliation(kit):
    exe, order, _ = entered(kit, bybit(kit))
    assert kit.names(kit.on_bar(exe, kit.bar(30))[1]) == ["EntryExpired"]
    late = fill(order, 0, 0.5, 100.0)
    assert exe.feed(late) == []  # the fill stays on the log; the adapter reconciles the symbol next
    out = exe.feed(snapshot("BTCUSDT", late.ts_event + 1, "long", 0.5, 100.0, take_profit=103.0, stop_loss=99.0))
    assert kit.names(out) == ["VenueMismatch", "PositionOpened", "LockEngaged"] and out[0].action == "adopted"
    assert exe.symbol("BTCUSDT").lock == "LOCKED"


@pytest.mark.parametrize("policy", ["adopt", "halt"])
def test_exchange_reconcile_a_position_opened_outside_nertz(kit, policy):
    cfg = bybit(kit, on_foreign=policy)
    exe = fresh(kit, cfg)
    ts = f.T0_NS
    out = exe.feed(snapshot("ETHUSDT", ts, "short", 2.0, 2500.0, take_profit=2400.0, stop_loss=2550.0))
    if policy == "adopt":
        assert kit.names(out) == ["VenueMismatch", "PositionOpened", "LockEngaged"]
        assert out[0].action == "adopted"
        assert (out[1].side, out[1].qty, out[1].entry_price, out[1].stop_loss) == ("short", 2.0, 2500.0, 2550.0)
        assert exe.symbol("ETHUSDT").lock == "LOCKED" and exe.symbol("ETHUSDT").adopted
    else:
        assert kit.names(out) == ["VenueMismatch"] and out[0].action == "halted"
        assert exe.symbol("ETHUSDT").lock == "FLAT" and "ETHUSDT" in exe.state.halted
        b = kit.bar(5, "ETHUSDT", close=2500.0)
        intent = f.intent(b, side="long", sl=0.01, qty=0.1)
        _, decided = kit.on_bar(exe, b, cfg, intent)
        denied = [e for e in decided if isinstance(e, ev.RiskDenied)]
        assert denied and denied[0].rule == "trading_stopped"


def test_exchange_foreign_position_without_exits_is_halted_not_adopted(kit):
    exe = fresh(kit, bybit(kit))
    out = exe.feed(snapshot("ETHUSDT", f.T0_NS, "long", 1.0, 2500.0, stop_loss=2400.0))
    assert kit.names(out) == ["VenueMismatch"] and out[0].action == "halted"
    assert "without an exchange-native take-profit and stop-loss" in out[0].reason


def test_exchange_reconcile_a_position_the_venue_no_longer_holds_closes_and_halts(kit):
    exe, order, _ = entered(kit, bybit(kit))
    exe.feed(fill(order, 0, 0.5, 100.0))
    out = exe.feed(snapshot("BTCUSDT", order.ts_event + 10**12, mark=99.0))
    assert kit.names(out) == ["VenueMismatch", "PositionClosed", "VenueMismatch"]
    assert out[1].exit_reason == "reconciled" and out[1].exit_price == 99.0
    assert [m.action for m in (out[0], out[2])] == ["closed", "halted"]
    assert exe.symbol("BTCUSDT").lock == "COOLDOWN" and "BTCUSDT" in exe.state.halted


def test_exchange_reconcile_agreeing_and_stream_snapshots_change_nothing(kit):
    exe, order, _ = entered(kit, bybit(kit))
    exe.feed(fill(order, 0, 0.5, 100.0))
    assert exe.feed(snapshot("BTCUSDT", order.ts_event + 5, "long", 0.5, 100.0)) == []
    assert exe.feed(snapshot("BTCUSDT", order.ts_event + 6, source="stream")) == []  # flat, but only a push
    out = exe.feed(snapshot("BTCUSDT", order.ts_event + 7, "long", 0.3, 100.0))
    assert kit.names(out) == ["VenueMismatch"] and "holds long 0.3 where the lock holds long 0.5" in out[0].reason


def test_exchange_wallet_is_the_equity_the_risk_guard_reads(kit):
    cfg = bybit(kit)
    exe = fresh(kit, cfg)
    ts = f.T0_NS
    exe.feed(ev.WalletSnapshot(event_id="w1", ts_event=ts, ts_init=ts, venue_name="bybit", equity_usdt=1_000.0,
                               wallet_balance_usdt=1_000.0))  # fmt: skip
    assert exe.state.equity_usdt == 1_000.0
    b = kit.bar(1)
    intent = f.intent(b, side="long", sl=0.01, qty=50.0)  # loses 50 USDT at its stop: above 2 % of 1,000
    _, out = kit.on_bar(exe, b, cfg, intent)
    assert [e.rule for e in out if isinstance(e, ev.RiskDenied)] == ["risk_per_trade"]


def test_exchange_reports_of_another_venue_are_ignored(kit):
    exe, order, _ = entered(kit, kit.config())  # paper
    assert exe.feed(fill(order, 0, 0.5, 100.0)) == []
    assert exe.symbol("BTCUSDT").lock == "ENTRY_PENDING"


def test_exchange_stale_exit_is_sent_once_and_closes_on_its_fill(kit):
    cfg = bybit(kit)
    exe, order, _ = entered(kit, cfg)
    exe.feed(fill(order, 0, 0.5, 100.0))
    late = cfg.max_hold_ns // 60_000_000_000 + 5
    out = kit.on_bar(exe, kit.bar(late, close=100.0))[1]
    exits = [e for e in out if isinstance(e, ev.OrderSubmitted)]
    assert len(exits) == 1 and exits[0].reduce_only
    assert not [e for e in kit.on_bar(exe, kit.bar(late + 1, close=100.0))[1] if isinstance(e, ev.OrderSubmitted)]
    out = exe.feed(fill(exits[0], 0, 0.5, 100.0, reduce_only=True))
    assert kit.names(out) == ["PositionClosed"] and out[0].exit_reason == "stale_exit"


def test_exchange_state_survives_a_snapshot_round_trip_mid_fill(kit):
    cfg = bybit(kit)
    exe, order, _ = entered(kit, cfg)
    exe.feed(fill(order, 0, 0.2, 100.0, leaves=0.3))
    data = msgspec.msgpack.encode(exe.node.get_state())  # the node state encodes its component's state
    again = kit.fresh(cfg)  # (its state, specs included, comes from the snapshot)
    again.seq = exe.seq
    again.node.set_state(msgspec.msgpack.decode(data, type=NodeState))
    assert again.symbol("BTCUSDT").fill_ids == exe.symbol("BTCUSDT").fill_ids
    assert again.feed(fill(order, 0, 0.2, 100.0, leaves=0.3)) == []  # still known after the restart
    out = again.feed(fill(order, 1, 0.3, 100.0))
    assert kit.names(out) == ["PositionOpened", "LockEngaged"] and out[0].qty == pytest.approx(0.5)
