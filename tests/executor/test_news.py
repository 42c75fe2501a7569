"""The news protection: a critical key event against an open position closes it at market (exit reason
``news``) at the next market event after ``min_hold``, on paper and on a real venue; off by default."""

from __future__ import annotations

import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id, order_link_id
from nertz_common.node.component import NodeState
from nertz_common.testing import factories as f

MINUTE_NS = f.MINUTE_NS
HOUR_NS = f.HOUR_NS
SLIP = 0.0001


def opened(kit, cfg, side="long", venue=None):
    """An executor whose entry on bar 0 (close 100) filled at bar 1's open: LOCKED at T0 + 2 min."""
    b0 = kit.bar(0)
    intent = f.intent(b0, side=side, sl=0.01, qty=0.5)
    exe = kit.fresh(cfg)
    exe.feed(kit.spec())
    exe, out = kit.on_bar(exe, b0, cfg, intent)
    if venue is None:
        bar(kit, exe, 1, close=100.0, open_=100.0)
    else:
        order = next(e for e in out if isinstance(e, ev.OrderSubmitted))
        exe.feed(venue(order))
    assert exe.symbol("BTCUSDT").lock == "LOCKED"
    return exe, intent


def bar(kit, exe, i: int, **kw) -> list[ev.Event]:
    """Closed bar ``i`` of BTCUSDT and its factor snapshot: what the executor does at it."""
    return kit.on_bar(exe, kit.bar(i, **kw))[1]


def critical(minute: int, impact: float = -2.0, age_h: float = 1.0, symbol: str = "BTCUSDT", **kw) -> ev.NewsAssessed:
    return f.news(f.T0_NS + minute * MINUTE_NS + 10, symbol, (("Exchange hack", impact, True, age_h),), **kw)


def test_news_protection_closes_a_long_on_critical_negative_news_at_the_next_market_event(kit):
    cfg = kit.config(news_protection=True, min_hold_ns=0)
    exe, intent = opened(kit, cfg)
    assert exe.feed(critical(3)) == []  # marked: closed at the next market event
    out = bar(kit, exe, 4, close=99.5)
    assert kit.names(out) == ["OrderSubmitted", "OrderFilled", "PositionClosed"]
    order, fill, closed = out
    assert order.reduce_only and order.side == "Sell" and order.order_id == order_link_id(intent.event_id, "news")
    assert fill.price == pytest.approx(99.5 * (1 - SLIP))
    assert closed.exit_reason == "news" and closed.correlation_id == intent.event_id
    assert exe.symbol("BTCUSDT").lock == "COOLDOWN" and exe.executor.news_exits == {}


def test_news_protection_is_off_by_default(kit):
    exe, _ = opened(kit, kit.config(min_hold_ns=0))
    exe.feed(critical(3))
    assert bar(kit, exe, 4, close=99.5) == [] and exe.symbol("BTCUSDT").lock == "LOCKED"


@pytest.mark.parametrize(
    ("side", "impact", "closes"),
    [("long", 2.0, False), ("short", 2.0, True), ("short", -2.0, False)],
)
def test_news_protection_closes_only_against_the_position(kit, side, impact, closes):
    cfg = kit.config(news_protection=True, min_hold_ns=0)
    exe, _ = opened(kit, cfg, side=side)
    exe.feed(critical(3, impact=impact))
    out = bar(kit, exe, 4, close=100.0)
    assert (kit.names(out)[-1:] == ["PositionClosed"]) is closes
    if closes:
        assert out[0].side == "Buy" and out[-1].exit_reason == "news"


@pytest.mark.parametrize(
    "news",
    [
        critical(3, age_h=30.0),  # older than news_protection_h
        critical(3, failure="schema"),  # a failed assessment has no effect (fail closed)
        f.news(f.T0_NS + 3 * MINUTE_NS, "BTCUSDT", (("Rumour", -2.0, False, 1.0),)),  # not critical
        critical(3, symbol="ETHUSDT"),  # another symbol
    ],
)
def test_news_protection_ignores_old_failed_uncritical_or_other_symbols_news(kit, news):
    exe, _ = opened(kit, kit.config(news_protection=True, min_hold_ns=0))
    exe.feed(news)
    assert bar(kit, exe, 4, close=99.5) == [] and exe.symbol("BTCUSDT").lock == "LOCKED"


def test_news_protection_waits_for_min_hold_and_survives_a_snapshot(kit):
    cfg = kit.config(news_protection=True, min_hold_ns=HOUR_NS)
    exe, _ = opened(kit, cfg)  # opened at T0 + 2 min
    exe.feed(critical(3))
    assert bar(kit, exe, 30, close=99.5) == []  # held 29 min
    state = exe.node.get_state()
    again = kit.fresh(cfg)
    again.node.set_state(NodeState(state.component, state.state, state.buffered))
    out = bar(kit, again, 62, close=99.5)  # held 61 min
    assert kit.names(out) == ["OrderSubmitted", "OrderFilled", "PositionClosed"] and out[-1].exit_reason == "news"


def test_news_protection_mark_of_a_closed_position_does_not_close_the_next(kit):
    cfg = kit.config(news_protection=True, min_hold_ns=HOUR_NS, cooldown_ns=0)
    exe, _ = opened(kit, cfg)
    exe.feed(critical(3))
    out = bar(kit, exe, 4, close=103.5, open_=101.0)  # the take-profit fills before min_hold
    assert kit.names(out)[-1] == "PositionClosed" and out[-1].exit_reason == "take_profit"
    assert exe.executor.news_exits == {}


def test_news_protection_on_a_real_venue_closes_on_the_exit_fill_with_reason_news(kit):
    cfg = kit.config(news_protection=True, min_hold_ns=0, venue_name="bybit")

    def entry_fill(order: ev.OrderSubmitted, reduce_only: bool = False) -> ev.OrderFilled:
        ts = order.ts_event + 10_000_000
        return ev.OrderFilled(
            event_id=derive_id("OrderFilled", order.order_id), ts_event=ts, ts_init=ts, symbol="BTCUSDT",
            correlation_id=order.correlation_id, causation_id=order.event_id, order_id=order.order_id,
            fill_id=derive_id("exec", order.order_id), side=order.side, qty=order.qty, price=100.0, fee_usdt=0.03,
            reduce_only=reduce_only, venue_name="bybit",
        )  # fmt: skip

    exe, intent = opened(kit, cfg, venue=entry_fill)
    exe.feed(critical(3))
    out = bar(kit, exe, 4, close=99.5)
    (order,) = out
    assert isinstance(order, ev.OrderSubmitted) and order.reduce_only and order.venue_name == "bybit"
    assert bar(kit, exe, 5, close=99.4) == []  # in flight: sent once
    (closed,) = exe.feed(entry_fill(order, reduce_only=True))
    assert isinstance(closed, ev.PositionClosed) and closed.exit_reason == "news"
    assert order.order_id == order_link_id(intent.event_id, "news")
