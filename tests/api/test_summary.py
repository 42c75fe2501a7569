"""summary() and /profit on a small scenario computed by hand."""

from __future__ import annotations

import pytest

from nertz_api.queries import SUMMARY_KEYS, max_drawdown, profit, summary
from nertz_common import events as ev

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("pnls", "expected"),
    [([], 0.0), ([10.0, -4.0], 4.0), ([-4.0, 10.0], 4.0), ([10.0, -25.0, 5.0], 25.0), ([5.0, 5.0], 0.0),
     ([20.0, -30.0], 30.0), ([-5.0, 20.0, -30.0], 30.0)],
)  # fmt: skip
def test_max_drawdown_hand_cases_match(pnls, expected):
    assert max_drawdown(pnls) == expected


async def test_summary_two_round_trips_one_win_one_loss_by_hand(pool, publisher, project, build):
    btc = [build.bar(i) for i in range(5)]
    eth = [build.bar(i, symbol="ETHUSDT", close=50.0) for i in range(2)]
    held = build.intent(btc[2])
    held_v = build.verdict(held)
    refused = build.intent(btc[4])
    events: list[ev.Event] = [*btc, *eth]
    events += build.round_trip(eth[0], pnl=-5.0)  # closes at T0 + 4 min
    events += build.round_trip(btc[1], pnl=20.0)  # closes at T0 + 5 min: the win
    events += build.round_trip(btc[3], pnl=-30.0)  # closes at T0 + 7 min: the loss
    events += [held, held_v, build.correlated(ev.SignalSuppressed, held, held_v, btc[2].ts_event, reason="locked",
                                              lock_state="LOCKED", decision="approve")]  # fmt: skip
    events += [refused, build.verdict(refused, "reject")]
    # an intent met the lock: the validator skipped it and the executor suppressed it -> suppressed once
    locked = build.intent(btc[0])
    locked_v = build.verdict(locked, "reject", policy="skipped", reasons=["skipped: locked (LOCKED)"])
    events += [locked, locked_v, build.correlated(ev.SignalSuppressed, locked, locked_v, btc[0].ts_event,
                                                  reason="locked", lock_state="LOCKED", decision="reject")]  # fmt: skip
    await publisher.publish_many(events)
    await project()

    got = await summary(pool)
    assert got == {
        "BTCUSDT": {"bars": 5, "intents": 5, "approved": 3, "rejected": 1, "suppressed": 2, "round_trips": 2,
                    "win_rate": 0.5, "pnl_usdt": -10.0, "max_drawdown": 30.0},
        "ETHUSDT": {"bars": 2, "intents": 1, "approved": 1, "rejected": 0, "suppressed": 0, "round_trips": 1,
                    "win_rate": 0.0, "pnl_usdt": -5.0, "max_drawdown": 5.0},
    }  # fmt: skip
    assert all(tuple(row) == SUMMARY_KEYS for row in got.values())
    # overall: the combined curve in close order is -5, +20, -30 -> -5, 15, -15: drawdown 30
    overall = (await profit(pool))["overall"]
    assert overall["round_trips"] == 3 and overall["wins"] == 1 and overall["win_rate"] == pytest.approx(1 / 3)
    assert overall["pnl_usdt"] == -15.0 and overall["max_drawdown"] == 30.0
    assert overall["fees_usdt"] == pytest.approx(6 * 0.1)


async def test_summary_empty_database_is_empty(pool):
    assert await summary(pool) == {}
