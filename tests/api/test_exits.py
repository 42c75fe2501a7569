"""Projections of exit management (migration 0005): moved stops, partial closes, and round trips that
count the whole trade (issue 8)."""

from __future__ import annotations

import pytest

from nertz_common import events as ev
from nertz_common.testing import factories as f

pytestmark = pytest.mark.integration

S = 1_000_000_000


def managed_position() -> list[ev.Event]:
    """A long of 0.5 from 100: stop to 100.2, TP1 closes 0.25 at 103, a trailing stop closes the rest at 102."""
    c = dict(symbol="BTCUSDT", correlation_id="intent-1", causation_id="cause")

    def at(s: int) -> dict[str, int]:
        return dict(ts_event=f.T0_NS + s * S, ts_init=f.T0_NS + s * S)

    return [
        ev.PositionOpened(event_id="opened", **at(0), **c, position_id="p1", side="long", qty=0.5, entry_price=100.0,
                          take_profit=105.0, stop_loss=98.0, fee_usdt=0.0275),
        ev.StopMoved(event_id="be", **at(60), **c, position_id="p1", stop_loss=100.2, take_profit=105.0,
                     phase="breakeven", reason="return reached 2.50%"),
        ev.PositionReduced(event_id="tp1", **at(120), **c, position_id="p1", side="long", qty_closed=0.25,
                           qty_left=0.25, entry_price=100.0, exit_price=103.0, realized_pnl_usdt=0.7311,
                           fee_usdt=0.0189, order_id="o-tp1"),
        ev.StopMoved(event_id="trail", **at(121), **c, position_id="p1", stop_loss=100.2, take_profit=105.0,
                     trailing_distance=2.0, active_price=103.0, phase="trail", reason="TP1 filled"),
        ev.PositionClosed(event_id="closed", **at(180), **c, position_id="p1", side="long", qty=0.25,
                          entry_price=100.0, exit_price=102.0, exit_reason="trailing_stop",
                          realized_pnl_usdt=0.472225, fee_usdt=0.027775, return_fraction=0.0188890,
                          holding_ns=180 * S, reduced_qty=0.25, reduced_pnl_usdt=0.7311, reduced_fee_usdt=0.0189),
    ]  # fmt: skip


async def test_projector_stop_moves_reductions_and_whole_round_trips(pool, publisher, project):
    events = managed_position()
    await publisher.publish_many(events)
    p = await project()
    assert p.stats.projected == len(events) and p.stats.rejected == 0
    moves = await pool.fetch("SELECT * FROM stop_moves ORDER BY stream_seq")
    assert [(r["phase"], r["stop_loss"], r["trailing_distance"], r["active_price"]) for r in moves] == [
        ("breakeven", 100.2, None, None), ("trail", 100.2, 2.0, 103.0),
    ]  # fmt: skip
    assert moves[0]["venue_name"] == "paper" and moves[1]["ts"].timestamp() == pytest.approx(f.T0_NS / 1e9 + 121)
    [cut] = await pool.fetch("SELECT * FROM position_reductions")
    assert (cut["qty_closed"], cut["qty_left"], cut["exit_price"], cut["exit_reason"], cut["order_id"]) == (
        0.25, 0.25, 103.0, "take_profit", "o-tp1",
    )  # fmt: skip
    trip = await pool.fetchrow("SELECT * FROM round_trips")
    assert (trip["qty"], trip["exit_reason"]) == (0.5, "trailing_stop")
    assert trip["realized_pnl_usdt"] == pytest.approx(0.7311 + 0.472225)
    assert trip["fee_usdt"] == pytest.approx(0.0189 + 0.027775)
    assert trip["return_fraction"] == pytest.approx((0.7311 + 0.472225) / 50.0)
    pos = await pool.fetchrow("SELECT * FROM positions")
    assert (pos["status"], pos["qty"]) == ("closed", 0.5) and pos["realized_pnl_usdt"] == pytest.approx(1.203325)
    locks = [r["state"] for r in await pool.fetch("SELECT state FROM lock_history ORDER BY stream_seq")]
    assert locks == ["COOLDOWN"]  # managing the position moved no lock (the close did)
