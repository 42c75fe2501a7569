"""Exit management (issue 8), the same on paper and on Bybit: the scaled plan and the trailing phases.

The scaled plan: TP1 at 1.5 R closing half the position (a reduce-only Limit order), TP2 at 2.5 R for
the rest (the entry's exchange-native take-profit). Once the return reaches +2.5 % the stop moves to
entry + 0.15 %; after TP1 a trailing stop follows the best price at 2 % of TP1's price. The Hard Lock
stays LOCKED throughout. The pure tests drive the executor with the paper venue (and with a real
venue's reports); the integration test drives the executor and its Bybit adapter through the real
pybit against the fake Bybit along the same prices, and finds the same decisions.

Prices: BTCUSDT's grid (tick 0.1, qty step 0.001) at a price of 100; a long from 100 with its stop at 98
(R = 2): TP1 103 (0.25 of 0.5), TP2 105, break-even at 102.5 → stop 100.2 (100.15 up to the tick),
trail 2.0 (2 % of 103 down to the tick) from 103.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from nertz_common import bus
from nertz_common import events as ev
from nertz_common.ids import derive_id, order_link_id
from nertz_common.node.component import NodeState
from nertz_common.testing import factories as f
from nertz_executor.core import lock
from nertz_executor.core.config import MINUTE_NS, SECOND_NS

A = "BTCUSDT"
MS = 1_000_000
#: the price path of both runs, after the entry at 100: (the best price the market shows, the step's kind)
BREAKEVEN, TP1, BEST, TRAIL_HIT = 102.6, 103.0, 104.0, 101.9


def scaled(kit, **kw):
    return kit.config(exit_plan="scaled", slippage_bps=0.0, **kw)


def book(i: int, side: str, price: float, symbol: str = A) -> ev.BookSnapshot:
    """A book ``i`` seconds after minute 1 began whose best bid (long: what a long's exits read) or best ask
    (short) is ``price``; the other side one tick away."""
    mid = price + 0.05 if side == "long" else price - 0.05
    return f.book(f.T0_NS + MINUTE_NS + i * SECOND_NS, symbol=symbol, mid=round(mid, 8), spread=0.1, levels=3)


def entered(kit, cfg, side="long", qty=0.5, spec=None):
    """An executor with BTCUSDT's spec, an approved intent at bar 0 (stop 2 % away, ``qty`` BTC) and its
    entry filled at 100 by a book 30 s later: ``(exe, entry order, intent, the fill's outputs)``;
    ``exe.out`` keeps every output."""
    exe = kit.fresh(cfg)
    exe.feed(spec or kit.spec())
    b0 = kit.bar(0, close=100.0)
    intent = f.intent(b0, side=side, sl=0.02, qty=qty)
    _, decided = kit.on_bar(exe, b0, cfg, intent)
    entry = next(e for e in decided if isinstance(e, ev.OrderSubmitted))
    out = exe.feed(book(30, "short" if side == "long" else "long", 100.0))  # a long buys at the best ask
    exe.out = [*decided, *out]
    return exe, entry, intent, out


def feed(kit, exe, e: ev.Event) -> list[ev.Event]:
    """Feed a book, or a closed bar with its factor snapshot (the step a closed bar starts)."""
    return kit.on_bar(exe, e)[1] if isinstance(e, ev.Bar) else exe.feed(e)


def decisions(events) -> list[tuple[Any, ...]]:
    """What the executor decided, venue aside: moved stops, reductions, closes (prices rounded)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, ev.StopMoved):
            out.append(("StopMoved", e.phase, round(e.stop_loss, 6), e.trailing_distance, e.active_price))
        elif isinstance(e, ev.PositionReduced):
            out.append(("PositionReduced", e.qty_closed, e.qty_left, round(e.exit_price, 6), e.exit_reason))
        elif isinstance(e, ev.PositionClosed):
            out.append(("PositionClosed", e.qty, round(e.exit_price, 6), e.exit_reason, e.reduced_qty))
        elif isinstance(e, ev.OrderSubmitted) and e.reduce_only:
            out.append(("OrderSubmitted", e.order_type, e.qty, e.price, e.exit_reason))
    return out


def paper_path(kit, side="long"):
    """The scaled long (or the mirrored short) along the path: break-even, TP1, a new best, the trail hit."""
    cfg = scaled(kit)
    exe, entry, intent, opened = entered(kit, cfg, side)
    flip = (lambda p: p) if side == "long" else (lambda p: round(200.0 - p, 8))
    high, low = (BREAKEVEN, 100.9) if side == "long" else (flip(100.9), flip(BREAKEVEN))
    steps = [
        kit.bar(2, close=flip(102.0), open_=flip(101.0), high=high, low=low),
        book(130, side, flip(TP1)),
        book(140, side, flip(BEST)),
        book(150, side, flip(TRAIL_HIT)),
    ]
    outs = [feed(kit, exe, s) for s in steps]
    exe.out += [e for o in outs for e in o]
    return exe, entry, intent, opened, outs


# --- on paper, pure -----------------------------------------------------------------------------------


def test_exits_scaled_entry_carries_tp2_and_tp1_is_a_reduce_only_limit_after_the_fill(kit):
    exe, entry, intent, out = entered(kit, scaled(kit))
    assert (entry.take_profit, entry.stop_loss, entry.qty) == (105.0, 98.0, 0.5)  # TP2 at 2.5 R of 100
    assert kit.names(out) == ["OrderFilled", "PositionOpened", "LockEngaged", "OrderSubmitted"]
    tp1 = out[-1]
    assert (tp1.order_type, tp1.side, tp1.qty, tp1.price, tp1.reduce_only, tp1.exit_reason) == (
        "Limit", "Sell", 0.25, 103.0, True, "take_profit",
    )  # fmt: skip
    assert tp1.order_id == order_link_id(intent.correlation_id, "tp1")
    sym = exe.symbol(A)
    assert sym.lock == "LOCKED" and (sym.tp1_order_id, sym.tp1_qty, sym.tp1_price) == (tp1.order_id, 0.25, 103.0)
    assert sym.exit_order_id is None  # TP1 is not an exit in flight: the stale exit stays possible


@pytest.mark.parametrize("side", ["long", "short"])
def test_exits_scaled_plan_breakeven_tp1_and_trail_move_the_stop_as_specified(kit, side):
    exe, _, _, _, outs = paper_path(kit, side)
    long = side == "long"
    flip = (lambda p: p) if long else (lambda p: round(200.0 - p, 8))
    assert [kit.names(o) for o in outs] == [
        ["StopMoved"],
        ["OrderFilled", "PositionReduced", "StopMoved"],
        [],
        ["OrderFilled", "PositionClosed"],
    ]
    be, trail = outs[0][0], outs[1][2]
    assert (be.phase, be.stop_loss) == ("breakeven", 100.2 if long else 99.8)  # entry ± 0.15 %, to the tick
    assert (trail.phase, trail.stop_loss, trail.active_price) == ("trail", be.stop_loss, flip(TP1))
    assert trail.trailing_distance == (2.0 if long else 1.9)  # 2 % of TP1's price, down to the tick
    reduced = outs[1][1]
    assert (reduced.qty_closed, reduced.qty_left, reduced.exit_price, reduced.exit_reason) == (
        0.25, 0.25, flip(TP1), "take_profit",
    )  # fmt: skip
    closed = outs[3][1]
    best, distance = flip(BEST), trail.trailing_distance
    assert closed.exit_reason == "trailing_stop" and closed.qty == 0.25
    assert closed.exit_price == pytest.approx(best - distance if long else best + distance)
    assert (closed.reduced_qty, closed.trade_qty) == (0.25, 0.5)
    assert closed.trade_pnl_usdt == pytest.approx(reduced.realized_pnl_usdt + closed.realized_pnl_usdt)
    assert exe.symbol(A).lock == "COOLDOWN"


def test_exits_lock_stays_locked_and_the_account_sees_the_reduction_at_once(kit):
    cfg = scaled(kit)
    exe, _, _, _ = entered(kit, cfg)
    feed(kit, exe, kit.bar(2, close=102.0, open_=101.0, high=BREAKEVEN, low=100.9))
    out = exe.feed(book(130, "long", TP1))
    reduced = next(e for e in out if isinstance(e, ev.PositionReduced))
    sym = exe.symbol(A)
    assert sym.lock == "LOCKED" and sym.qty == pytest.approx(0.25)
    entry_fee = 0.5 * 100.0 * cfg.taker_fee
    assert reduced.fee_usdt == pytest.approx(0.25 * 103.0 * cfg.maker_fee + entry_fee / 2)  # maker fill
    assert reduced.realized_pnl_usdt == pytest.approx(0.25 * 3.0 - reduced.fee_usdt)
    assert exe.state.realized_pnl_usdt == pytest.approx(reduced.realized_pnl_usdt)
    assert exe.state.equity_usdt == pytest.approx(cfg.equity_usdt + reduced.realized_pnl_usdt)
    assert exe.state.daily_pnl_at(reduced.ts_event) == pytest.approx(reduced.realized_pnl_usdt)
    assert exe.state.closed_trades == 0  # a round trip counts once, at its close
    # a verdict while the position is managed is suppressed: nothing here is a new entry
    b = kit.bar(3, close=103.0)
    intent = f.intent(b, side="long", sl=0.02, qty=0.5)
    _, out = kit.on_bar(exe, b, cfg, intent)
    assert "SignalSuppressed" in kit.names(out) and not [e for e in out if isinstance(e, ev.OrderSubmitted)]


def test_exits_single_plan_breakeven_stop_triggers_from_later_data(kit):
    cfg = kit.config(slippage_bps=0.0)  # exit_plan single: the intent's TP (R:R 3: 106)
    exe, entry, _, out = entered(kit, cfg)
    assert entry.take_profit == pytest.approx(106.0) and "OrderSubmitted" not in kit.names(out)  # no TP1
    moved = feed(kit, exe, kit.bar(2, close=102.0, open_=101.0, high=BREAKEVEN, low=100.9))
    assert kit.names(moved) == ["StopMoved"] and moved[0].stop_loss == 100.2
    assert feed(kit, exe, kit.bar(3, close=102.0, high=102.7, low=101.0)) == []  # moved once; only into profit
    out = feed(kit, exe, kit.bar(4, close=100.5, open_=101.0, high=101.0, low=100.1))
    assert kit.names(out) == ["OrderFilled", "PositionClosed"]
    assert (out[1].exit_reason, out[1].exit_price, out[1].reduced_qty) == ("stop_loss", 100.2, 0.0)


def test_exits_a_bar_before_the_position_never_moves_the_stop(kit):
    exe, _, _, _ = entered(kit, kit.config())
    # bar 1 opened before the book that filled the entry: its range may lie before the position
    assert feed(kit, exe, kit.bar(1, close=102.0, open_=100.0, high=103.0, low=99.5)) == []
    assert exe.symbol(A).stop_loss == 98.0


def test_exits_a_bar_touching_the_stop_and_tp1_fills_the_stop_for_the_whole_position(kit):
    exe, _, _, _ = entered(kit, scaled(kit))
    out = feed(kit, exe, kit.bar(2, close=100.0, open_=100.0, high=103.5, low=97.5))
    assert kit.names(out) == ["OrderFilled", "PositionClosed"]
    assert (out[1].exit_reason, out[1].qty, out[1].exit_price, out[1].reduced_qty) == ("stop_loss", 0.5, 98.0, 0.0)


def test_exits_a_bar_through_tp1_and_tp2_fills_both_in_order(kit):
    exe, _, _, _ = entered(kit, scaled(kit))
    out = feed(kit, exe, kit.bar(2, close=105.2, open_=100.5, high=105.5, low=100.3))
    assert kit.names(out) == ["OrderFilled", "PositionReduced", "StopMoved", "OrderFilled", "PositionClosed"]
    assert (out[4].exit_reason, out[4].exit_price, out[4].qty, out[4].reduced_qty) == ("take_profit", 105.0, 0.25, 0.25)
    assert exe.symbol(A).lock == "COOLDOWN"


def test_exits_trailing_stop_only_moves_in_favour(kit):
    exe, _, _, _ = entered(kit, scaled(kit))
    exe.feed(book(130, "long", TP1))  # TP1: trail 2.0 from 103
    for i, px in enumerate((104.5, 103.0, 104.0, 102.6)):  # a new best, then back: the level stays 102.5
        assert exe.feed(book(131 + i, "long", px)) == []
    out = exe.feed(book(140, "long", 102.5))
    assert kit.names(out) == ["OrderFilled", "PositionClosed"]
    assert out[1].exit_reason == "trailing_stop" and out[1].exit_price == pytest.approx(102.5)


def test_exits_phases_can_be_switched_off(kit):
    exe, _, _, _ = entered(kit, scaled(kit, breakeven_trigger=0.0, trail_distance=0.0))
    assert feed(kit, exe, kit.bar(2, close=102.0, open_=101.0, high=BREAKEVEN, low=100.9)) == []
    out = exe.feed(book(130, "long", TP1))
    assert kit.names(out) == ["OrderFilled", "PositionReduced"]  # TP1, no trail
    assert exe.symbol(A).stop_loss == 98.0 and exe.symbol(A).trailing_distance == 0


def test_exits_scaled_plan_rebases_tp2_on_the_filled_entry(kit):
    cfg = scaled(kit)
    exe = kit.fresh(cfg)
    exe.feed(kit.spec())
    b0 = kit.bar(0, close=100.0)
    _, out = kit.on_bar(exe, b0, cfg, f.intent(b0, side="long", sl=0.02, qty=0.5))
    out = exe.feed(book(0, "short", 99.0))  # filled a point lower: R = 1.0, TP1 100.5, TP2 101.5
    moved = next(e for e in out if isinstance(e, ev.StopMoved))
    assert (moved.phase, moved.take_profit, moved.stop_loss) == ("entry", 101.5, 98.0)
    assert next(e for e in out if isinstance(e, ev.OrderSubmitted)).price == 100.5
    assert exe.symbol(A).take_profit == 101.5


def test_exits_tp1_is_skipped_below_the_minimum_quantity(kit):
    spec = msgspec.structs.replace(kit.spec(), min_order_qty=0.1)
    exe, _, _, out = entered(kit, scaled(kit), qty=0.15, spec=spec)  # half of it is below the minimum
    assert kit.names(out) == ["OrderFilled", "PositionOpened", "LockEngaged"]
    assert exe.symbol(A).tp1_order_id is None and exe.symbol(A).take_profit == 105.0  # TP2 takes it all


@pytest.mark.parametrize("side", ["long", "short"])
def test_exits_the_lock_state_is_the_fold_of_what_the_executor_emitted(kit, side):
    exe, *_ = paper_path(kit, side)
    emitted = [e for e in exe.out if isinstance(e, ev.ExecEvent | ev.OrderFilled)]
    folded = lock.fold(lock.with_instrument(lock.initial_state(exe.cfg), kit.spec()), emitted)
    assert folded.symbols == exe.state.symbols and folded.accounts == exe.state.accounts
    closed = next(e for e in emitted if isinstance(e, ev.PositionClosed))
    assert folded.equity_usdt == pytest.approx(exe.cfg.equity_usdt + closed.trade_pnl_usdt)


def test_exits_snapshot_mid_trail_resumes_with_the_same_decisions(kit):
    cfg = scaled(kit)
    exe, _, _, _ = entered(kit, cfg)
    exe.feed(book(130, "long", TP1))
    exe.feed(book(131, "long", BEST))
    data = msgspec.msgpack.encode(exe.node.get_state())
    again = kit.fresh(cfg)
    again.seq = exe.seq
    again.node.set_state(msgspec.msgpack.decode(data, type=NodeState))
    tail = [book(140, "long", 102.5), book(141, "long", TRAIL_HIT)]
    assert [again.feed(e) for e in tail] == [exe.feed(e) for e in tail]
    assert exe.symbol(A).lock == "COOLDOWN"


def test_exits_position_reduced_or_stop_moved_outside_a_position_is_a_lock_violation(kit):
    exe, _, _, _, outs = paper_path(kit)
    reduced = outs[1][1]
    with pytest.raises(lock.LockViolation, match="PositionReduced of the open position"):
        lock.evolve(exe.state, reduced)  # the symbol is in COOLDOWN now
    with pytest.raises(lock.LockViolation, match="StopMoved of the open position"):
        lock.evolve(exe.state, outs[0][0])


def test_exits_settings_from_the_environment_and_their_rules(monkeypatch):
    from pydantic import ValidationError

    from nertz_executor.settings import ExecutorSettings

    cfg = ExecutorSettings().executor.to_config()
    assert (cfg.exit_plan, cfg.tp1_r, cfg.tp2_r, cfg.tp1_fraction) == ("single", 1.5, 2.5, 0.5)
    assert (cfg.breakeven_trigger, cfg.breakeven_offset, cfg.trail_distance) == (0.025, 0.0015, 0.02)
    for key, value in (("EXIT_PLAN", "scaled"), ("TP1_R", "1"), ("TP2_R", "3"), ("TP1_FRACTION", "0.4"),
                       ("BREAKEVEN_TRIGGER", "0"), ("TRAIL_DISTANCE", "0.01")):  # fmt: skip
        monkeypatch.setenv(f"NERTZ_EXECUTOR__{key}", value)
    cfg = ExecutorSettings().executor.to_config()
    assert (cfg.exit_plan, cfg.tp1_r, cfg.tp2_r, cfg.tp1_fraction) == ("scaled", 1.0, 3.0, 0.4)
    assert (cfg.breakeven_trigger, cfg.trail_distance) == (0.0, 0.01)
    monkeypatch.setenv("NERTZ_EXECUTOR__TP1_R", "3")
    with pytest.raises(ValidationError, match="tp1_r < tp2_r"):
        ExecutorSettings()
    monkeypatch.setenv("NERTZ_EXECUTOR__TP1_R", "1")
    monkeypatch.setenv("NERTZ_EXECUTOR__BREAKEVEN_TRIGGER", "0.001")  # below the 0.15 % offset
    with pytest.raises(ValidationError, match="breakeven_offset < breakeven_trigger"):
        ExecutorSettings()


# --- a real venue's reports, pure -------------------------------------------------------------------------


def fill(of: ev.OrderSubmitted, n: int, qty: float, price: float, *, order_id: str, reduce_only: bool = True,
         exit_reason: ev.ExitReason | None = None, maker: bool = False) -> ev.OrderFilled:  # fmt: skip
    ts = of.ts_event + (n + 1) * 10 * SECOND_NS
    side: ev.OrderSide = ("Sell" if of.side == "Buy" else "Buy") if reduce_only else of.side
    return ev.OrderFilled(
        event_id=derive_id("OrderFilled", "bybit", order_id, n), ts_event=ts, ts_init=ts, symbol=of.symbol,
        correlation_id=of.correlation_id, causation_id=of.event_id, order_id=order_id,
        fill_id=derive_id("exec", order_id, n), side=side, qty=qty, price=price,
        fee_usdt=qty * price * (0.0002 if maker else 0.00055), liquidity="maker" if maker else "taker",
        reduce_only=reduce_only, venue_name="bybit", exit_reason=exit_reason,
    )  # fmt: skip


def opened_at_bybit(kit):
    """The scaled long on Bybit (the market fills nothing there), opened by Bybit's fill at 100."""
    exe, entry, _, _ = entered(kit, scaled(kit, venue_name="bybit"))
    return exe, exe.feed(fill(entry, 0, 0.5, 100.0, order_id=entry.order_id, reduce_only=False))


def test_exits_exchange_tp1_fill_reduces_the_position_without_closing_it(kit):
    exe, out = opened_at_bybit(kit)
    assert kit.names(out) == ["PositionOpened", "LockEngaged", "OrderSubmitted"]  # TP1 leaves on the log
    tp1 = out[-1]
    # Bybit part fills TP1 twice (stopOrderType is empty on a user's order: no exit reason)
    first = exe.feed(fill(tp1, 1, 0.1, 103.0, order_id=tp1.order_id, maker=True))
    assert kit.names(first) == ["PositionReduced"] and exe.feed(fill(tp1, 1, 0.1, 103.0, order_id=tp1.order_id)) == []
    out = exe.feed(fill(tp1, 2, 0.15, 103.0, order_id=tp1.order_id, maker=True))
    assert kit.names(out) == ["PositionReduced", "StopMoved"]
    assert (out[0].qty_left, out[0].exit_reason, out[1].phase, out[1].trailing_distance) == (0.25, "take_profit",
                                                                                             "trail", 2.0)  # fmt: skip
    sym = exe.symbol(A)
    assert sym.lock == "LOCKED" and sym.qty == pytest.approx(0.25) and sym.filled_qty == 0
    snap = ev.PositionSnapshot(
        event_id="ps", ts_event=out[0].ts_event + 1, ts_init=out[0].ts_event + 1, symbol=A, venue_name="bybit",
        source="reconcile", side="long", qty=0.25, entry_price=100.0,
    )  # fmt: skip
    assert exe.feed(snap) == []  # the venue's position agrees with the reduced lock
    # Bybit's trailing stop closes the rest
    out = exe.feed(fill(tp1, 3, 0.25, 102.0, order_id="bybit-trailing", exit_reason="trailing_stop"))
    assert kit.names(out) == ["PositionClosed"]
    closed = out[0]
    assert (closed.qty, closed.exit_reason, closed.reduced_qty) == (0.25, "trailing_stop", pytest.approx(0.25))
    assert exe.state.realized_pnl_usdt == pytest.approx(closed.trade_pnl_usdt)
    assert closed.trade_fee_usdt == pytest.approx(0.5 * 100 * 0.00055 + 0.25 * 103 * 0.0002 + 0.25 * 102 * 0.00055)


def test_exits_exchange_refused_tp1_leaves_the_rest_to_tp2(kit):
    exe, out = opened_at_bybit(kit)
    tp1 = out[-1]
    refused = ev.OrderRefused(
        event_id="r1", ts_event=tp1.ts_event + 1, ts_init=tp1.ts_event + 1, symbol=A,
        correlation_id=tp1.correlation_id, causation_id=tp1.event_id, order_id=tp1.order_id, ret_code=10001,
        ret_msg="params error", reduce_only=True, venue_name="bybit",
    )  # fmt: skip
    out = exe.feed(refused)
    assert kit.names(out) == ["OrderRejected"] and out[0].reduce_only
    sym = exe.symbol(A)
    assert sym.lock == "LOCKED" and sym.tp1_order_id is None and sym.qty == 0.5


# --- on the fake Bybit, through the real pybit (integration) ----------------------------------------------


async def publish_entry(kit, js, trading) -> ev.IntentProposed:
    """Put the market at 100 and an approved long of 0.5 BTC (stop 98) on the log; return its intent."""
    b0, b1 = kit.bar(0, close=100.0), kit.bar(1, close=100.0)
    trading.set_price(A, 100.0, ts_ms=b0.ts_event // MS)
    intent = f.intent(b0, side="long", sl=0.02, qty=0.5)
    pub = bus.Publisher(js)
    for e in (kit.spec(), b0, kit.factor(b0, intent.event_id), intent, f.verdict(intent), b1, kit.factor(b1)):
        await pub.publish(e)
    return intent


def bybit_settings(nats_url: str, fake, **group: Any) -> Any:
    from nertz_executor.settings import BybitGroup, ExecutorGroup, ExecutorSettings

    return ExecutorSettings(
        NATS_URL=nats_url, BYBIT_ENV="testnet",
        BYBIT_API_KEY=fake.trading.api_key, BYBIT_API_SECRET=fake.trading.api_secret,
        executor=ExecutorGroup(venue="bybit", cooldown_s=300, **group),
        bybit=BybitGroup(rest_url=fake.base_url, ws_url=fake.ws_url, timeout_s=2.0, rate_limit_max_wait_s=3.0),
    )  # fmt: skip


@pytest.mark.integration
async def test_exits_scaled_plan_and_trailing_on_the_fake_match_paper(kit, js_fresh, nats_url, fake):
    trading = fake.trading
    intent = await publish_entry(kit, js_fresh, trading)
    tp1_id = order_link_id(intent.correlation_id, "tp1")
    t1_ms = kit.bar(1).ts_event // MS

    def stops() -> list[dict[str, Any]]:
        return [json.loads(c.body) for c in fake.calls_to("/v5/position/trading-stop") if c.answer == "ok"]

    async with kit.executor_with_venue(bybit_settings(nats_url, fake, exit_plan="scaled")):
        await kit.wait_log(js_fresh, lambda rs: any(e.order_id == tp1_id for e in kit.of(rs, ev.OrderAccepted)))
        # the return reaches +2.5 %: the bars on the log decide, the fake's price is there too
        trading.set_price(A, BREAKEVEN, ts_ms=t1_ms + 60_000)
        b2 = kit.bar(2, close=102.0, open_=101.0, high=BREAKEVEN, low=100.9)
        for e in (b2, kit.factor(b2)):  # (a closed bar's step waits for its snapshot)
            await bus.Publisher(js_fresh).publish(e)
        await kit.wait_log(js_fresh, lambda _: len(stops()) == 1)  # (until the fake holds the new stop)
        trading.set_price(A, TP1, ts_ms=t1_ms + 130_000)  # TP1's Limit fills (maker)
        await kit.wait_log(js_fresh, lambda _: len(stops()) == 2)  # the trailing stop
        trading.set_price(A, BEST, ts_ms=t1_ms + 140_000)
        trading.set_price(A, TRAIL_HIT, ts_ms=t1_ms + 150_000)  # Bybit's trailing stop
        recs = await kit.wait_log(js_fresh, lambda rs: bool(kit.of(rs, ev.PositionClosed)))
    # the wire: TP1 a reduce-only Limit with its derived orderLinkId; the stops by trading-stop, no order replaced
    tp1_body = next(json.loads(c.body) for c in fake.calls_to("/v5/order/create") if tp1_id in c.body)
    assert (tp1_body["orderType"], tp1_body["qty"], tp1_body["price"], tp1_body["reduceOnly"]) == (
        "Limit", "0.25", "103", True,
    )  # fmt: skip
    be, trail = stops()
    assert (be["stopLoss"], be["tpslMode"]) == ("100.2", "Full") and "trailingStop" not in be
    assert (trail["trailingStop"], trail["activePrice"]) == ("2", "103")
    assert trading.creates == 2 and not fake.calls_to("/v5/order/amend") and not fake.calls_to("/v5/order/cancel")
    # the same decisions as on paper along the same prices
    fake_run = [r.event for r in recs]
    *_, paper_outs = paper_path(kit)
    paper_opened = entered(kit, scaled(kit))[3]
    assert decisions(fake_run) == decisions([*paper_opened, *(e for o in paper_outs for e in o)])
    closed = kit.of(recs, ev.PositionClosed)[0]
    paper_closed = paper_outs[3][1]
    assert closed.trade_pnl_usdt == pytest.approx(paper_closed.trade_pnl_usdt)  # fees alike: maker TP1, taker rest
    assert kit.of(recs, ev.OrderFilled)[-1].exit_reason == "trailing_stop"
    locks = [type(e).__name__ for e in fake_run if type(e) in (ev.LockEngaged, ev.PositionClosed, ev.LockReleased)]
    assert locks == ["LockEngaged", "PositionClosed"]  # LOCKED from the fill to the close


@pytest.mark.integration
async def test_exits_tp1_answer_lost_is_looked_up_never_sent_twice(kit, js_fresh, nats_url, fake):
    trading = fake.trading
    trading.fault("lost_after_accept", times=2)  # the entry's answer, then TP1's: both found by orderLinkId
    intent = await publish_entry(kit, js_fresh, trading)
    tp1_id = order_link_id(intent.correlation_id, "tp1")
    async with kit.executor_with_venue(bybit_settings(nats_url, fake, exit_plan="scaled")):
        recs = await kit.wait_log(js_fresh, lambda rs: any(e.order_id == tp1_id for e in kit.of(rs, ev.OrderAccepted)))
    assert trading.creates == 2
    links = [o["orderLinkId"] for o in trading.orders.values()]
    assert links.count(tp1_id) == 1 and len(kit.of(recs, ev.OrderAccepted)) == 2
