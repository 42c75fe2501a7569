"""The paper venue's pure fill rules (docs/decisions.md D2)."""

from __future__ import annotations

import pytest

from nertz_common.testing import factories as f
from nertz_executor.core.config import MINUTE_NS, ExecutorConfig
from nertz_executor.core.venue import paper

CFG = ExecutorConfig()


def test_paper_entry_fill_bar_open_plus_slippage_and_taker_fee():
    b = f.bar(1, open=100.0, close=101.0)
    fill = paper.entry_fill("long", 2.0, b.open_time_ns, b, CFG)
    assert fill is not None
    assert fill.price == pytest.approx(100.01) and fill.fee_usdt == pytest.approx(100.01 * 2 * 0.00055)
    assert fill.active_from_ns == b.open_time_ns
    short = paper.entry_fill("short", 2.0, b.open_time_ns, b, CFG)
    assert short is not None and short.price == pytest.approx(99.99)


def test_paper_entry_fill_empty_book_side_gives_none():
    book = f.book(f.T0_NS, asks=[])
    assert paper.entry_fill("long", 1.0, 0, book, CFG) is None
    assert paper.entry_fill("short", 1.0, 0, book, CFG) is not None


@pytest.mark.parametrize(
    ("side", "high", "low", "expected"),
    [
        ("long", 103.5, 99.5, ("take_profit", 103.0)),
        ("long", 102.0, 98.9, ("stop_loss", 99.0)),
        ("long", 103.5, 98.9, ("stop_loss", 99.0)),  # both: the stop-loss wins
        ("short", 101.5, 99.0, ("stop_loss", 101.0)),
        ("short", 100.5, 96.5, ("take_profit", 97.0)),
        ("short", 101.5, 96.5, ("stop_loss", 101.0)),
        ("long", 102.0, 99.5, None),
    ],
)
def test_paper_exit_trigger_from_bar_range(side, high, low, expected):
    tp, sl = (103.0, 99.0) if side == "long" else (97.0, 101.0)
    b = f.bar(2, open=100.0, close=100.0, high=high, low=low)
    assert paper.exit_trigger(side, tp, sl, b.open_time_ns, b) == expected


def test_paper_exit_trigger_ignores_a_bar_opened_before_the_position():
    b = f.bar(2, open=100.0, close=100.0, high=110.0, low=90.0)
    assert paper.exit_trigger("long", 103.0, 99.0, b.open_time_ns + MINUTE_NS // 2, b) is None


def test_paper_exit_fill_take_profit_at_trigger_stop_with_slippage():
    tp = paper.exit_fill("long", "take_profit", 103.0, 1.0, CFG)
    sl = paper.exit_fill("short", "stop_loss", 101.0, 1.0, CFG)
    assert tp.price == 103.0 and tp.fee_usdt == pytest.approx(103.0 * 0.00055)
    assert sl.price == pytest.approx(101.0 * 1.0001)  # a short's stop buys: pays more


def test_paper_realized_pnl_is_net_of_both_fees():
    assert paper.realized_pnl("long", 2.0, 100.0, 101.0, 0.3) == pytest.approx(1.7)
    assert paper.realized_pnl("short", 2.0, 100.0, 101.0, 0.3) == pytest.approx(-2.3)


def test_paper_venue_state_round_trips_through_msgpack():
    import msgspec

    from nertz_common import events as ev
    from nertz_common.ids import order_link_id

    venue = paper.PaperVenue(CFG)
    b0 = f.bar(0)
    intent = f.intent(b0)
    order = ev.OrderSubmitted(
        event_id="o", ts_event=b0.ts_event, ts_init=b0.ts_event, symbol="BTCUSDT", correlation_id=intent.event_id,
        causation_id="v", order_id=order_link_id(intent.event_id), side="Buy", qty=1.0, price_ref=100.0,
        take_profit=103.0, stop_loss=99.0,
    )  # fmt: skip
    assert venue.submit(order, expires_ns=b0.ts_event + 5 * MINUTE_NS) == []
    [fill] = venue.on_market(f.book(b0.ts_event + 1, mid=100.0, spread=0.1))
    assert fill.order_id == order.order_id and not fill.reduce_only
    copy = paper.PaperVenue(CFG)
    copy.set_state(msgspec.msgpack.decode(msgspec.msgpack.encode(venue.get_state()), type=paper.PaperState))
    assert copy.positions() == venue.positions() and copy.wallet() == venue.wallet()
    hit = f.book(b0.ts_event + 2, mid=103.5, spread=0.1)
    assert copy.on_market(hit) == venue.on_market(hit)
