"""The llm-validator: rules policy, memory fold, the join with the executor, and the runner on JetStream."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.testing import factories as f
from nertz_validator.core.component import Validator
from nertz_validator.core.memory import Memory, SymbolMemory
from nertz_validator.core.policy import RulesPolicy


def closed(pnl: float, i: int, symbol: str = "BTCUSDT") -> ev.PositionClosed:
    return ev.PositionClosed(
        event_id=derive_id("PositionClosed", i), ts_event=f.T0_NS + i * f.MINUTE_NS, ts_init=f.T0_NS,
        symbol=symbol, correlation_id=f"c{i}",
        causation_id="x", position_id=f"p{i}", side="long", qty=1.0, entry_price=100.0,
        exit_price=100.0 + pnl, exit_reason="take_profit" if pnl > 0 else "stop_loss", realized_pnl_usdt=pnl,
        fee_usdt=0.1, return_fraction=pnl / 100.0, holding_ns=60,
    )  # fmt: skip


def awaited(intent: ev.IntentProposed, lock: ev.LockState = "FLAT") -> ev.VerdictAwaited:
    return ev.VerdictAwaited(
        event_id=derive_id("VerdictAwaited", intent.event_id), ts_event=intent.ts_event, ts_init=intent.ts_event,
        symbol=intent.symbol, correlation_id=intent.correlation_id, causation_id=intent.event_id, lock_state=lock,
    )  # fmt: skip


def fold(events: list[ev.AnyEvent]) -> Memory:
    m = Memory()
    for e in events:
        m = m.apply(e)
    return m


class Feed:
    """A validator node fed by hand, at consecutive positions."""

    def __init__(self) -> None:
        self.node = Node(Validator(RulesPolicy()))
        self.seq = 0

    def __call__(self, e: ev.Event) -> list[ev.Event]:
        self.seq += 1
        return [o for o, _ in self.node.feed(e, Pos(self.seq, self.seq))]


def test_memory_losses_streak_and_drawdown_by_hand():
    m = fold([closed(50, 1), closed(-20, 2), closed(-40, 3)]).of("BTCUSDT")
    assert (m.loss_streak, m.win_streak) == (2, 0)
    assert m.cum_pnl_usdt == pytest.approx(-10) and m.peak_pnl_usdt == pytest.approx(50)
    assert m.drawdown_usdt == pytest.approx(60)
    assert m.lock_state == "COOLDOWN"


def test_memory_event_without_effect_returns_the_same_value():
    m = fold([closed(-20, 1)])
    assert m.apply(awaited(f.intent(f.bar(0)))) is m


@given(st.lists(st.floats(-100, 100, allow_nan=False, allow_infinity=False), max_size=40))
def test_memory_agrees_with_an_independent_model(pnls):
    m = fold([closed(p, i) for i, p in enumerate(pnls)]).of("BTCUSDT")
    # independently: the streak at the end, the cumulative P&L and its running peak (from 0)
    streak_loss = streak_win = 0
    cum = peak = 0.0
    for p in pnls:
        streak_loss, streak_win = (0, streak_win + 1) if p > 0 else (streak_loss + 1, 0)
        cum += p
        peak = max(peak, cum)
    assert (m.loss_streak, m.win_streak) == (streak_loss, streak_win)
    assert m.cum_pnl_usdt == pytest.approx(cum, abs=1e-9) and m.peak_pnl_usdt == pytest.approx(peak, abs=1e-9)
    assert [t.pnl_usdt for t in m.trades] == pnls[-20:]
    assert m.lock_state == ("COOLDOWN" if pnls else "FLAT")


def test_rules_five_losses_in_a_row_rejects_with_reason():
    intent = f.intent(f.bar(0))
    mem = fold([closed(-1, i) for i in range(5)]).of("BTCUSDT")
    op = RulesPolicy().judge(intent, mem)
    assert op.decision == "reject" and "loss streak 5" in op.reasons[0]


def test_rules_drawdown_beyond_15_percent_rejects():
    mem = fold([closed(2000, 1), closed(-1700, 2)]).of("BTCUSDT")  # drawdown 1700 / 10000 = 0.17
    op = RulesPolicy().judge(f.intent(f.bar(0)), mem)
    assert op.decision == "reject" and "drawdown 0.170" in op.reasons[0]


def test_rules_clean_memory_approves_full_size_and_panic_is_flagged_not_halved_again():
    op = RulesPolicy().judge(f.intent(f.bar(0), combined=7.5), SymbolMemory())
    assert (op.decision, op.size_multiplier, op.confidence) == ("approve", 1.0, 0.75)
    op = RulesPolicy().judge(f.intent(f.bar(0), regime="panic"), SymbolMemory())
    assert op.size_multiplier == 1.0 and "panic" in op.risk_flags  # signal already halved a PANIC intent


def test_join_intent_waits_for_executor_then_judges_with_memory_as_of_then():
    feed = Feed()
    intent = f.intent(f.bar(0))
    assert feed(intent) == []
    for i in range(4):
        assert feed(closed(-1, i)) == []
    [review] = feed(closed(-1, 4))  # the fifth loss in a row: the rules breaker disables the symbol
    assert isinstance(review, ev.RiskOverrideIssued) and [o.kind for o in review.overrides] == ["disable_symbol"]
    [v] = feed(awaited(intent))
    assert v.decision == "reject" and v.correlation_id == intent.correlation_id and v.policy == "override"
    assert v.overrides == [review.overrides[0].override_id]


def test_join_locked_symbol_is_skipped_not_judged():
    feed = Feed()
    intent = f.intent(f.bar(0))
    feed(intent)
    [v] = feed(awaited(intent, "LOCKED"))
    assert (v.decision, v.policy, v.reasons) == ("reject", "skipped", ["skipped: locked (LOCKED)"])


def test_join_awaited_before_intent_uses_memory_of_then_and_holds_later_events():
    feed = Feed()
    intent = f.intent(f.bar(0))
    assert feed(awaited(intent)) == []
    for i in range(5):  # later losses must not influence this verdict: held until the intent comes
        assert feed(closed(-1, i)) == []
    assert feed.node.held == 5
    v, review = feed(intent)  # the verdict, then the held losses (the fifth one triggers a review)
    assert isinstance(v, ev.VerdictIssued) and isinstance(review, ev.RiskOverrideIssued)
    assert v.decision == "approve"
    assert feed.node.component.memory.of("BTCUSDT").loss_streak == 5  # folded after the verdict


@pytest.mark.integration
async def test_validator_runner_publishes_verdict_with_headers_then_acks(js_fresh, nats_url):
    from nertz_common import runtime
    from nertz_validator import app
    from nertz_validator.settings import ValidatorSettings

    pub = bus.Publisher(js_fresh)
    intent = f.intent(f.bar(0))
    await pub.publish(intent)
    await pub.publish(awaited(intent), headers={bus.INPUT_SEQ: "7", bus.ORIGIN_SEQ: "5"})
    cfg = ValidatorSettings(NATS_URL=nats_url)
    async with runtime.runtime("llm-validator", cfg) as rt:
        try:
            _, runner, _ = await app.start(rt, cfg)
            task = asyncio.create_task(runner.run())
            subject = subjects.for_event(f.verdict(intent))
            for _ in range(200):
                try:
                    msg = await js_fresh.get_last_msg(subjects.STREAM, subject)
                    break
                except Exception:
                    await asyncio.sleep(0.02)
            for _ in range(200):  # acked once the verdict is stored
                info = await js_fresh.consumer_info(subjects.STREAM, "llm-validator")
                if info.ack_floor.stream_seq == 2:
                    break
                await asyncio.sleep(0.02)
            rt.stop.set()
            await asyncio.wait_for(task, 10)
        finally:
            import contextlib
            import signal as sig

            for s_ in (sig.SIGTERM, sig.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(s_)
    v = ev.decode(msg.data)
    assert isinstance(v, ev.VerdictIssued) and v.decision == "approve" and v.causation_id == awaited(intent).event_id
    # the verdict belongs to the VerdictAwaited's step (seq 2) and keeps its origin (the bar's, 5)
    assert msg.headers[bus.INPUT_SEQ] == "2" and msg.headers[bus.ORIGIN_SEQ] == "5"
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 2


def test_rules_circuit_breaker_lifts_after_the_lookback_without_new_trades():
    hour = 3_600_000_000_000
    mem = fold([closed(-1, i) for i in range(5)]).of("BTCUSDT")  # 5 losses closed at t ≈ 0
    early = f.intent(f.bar(0), ts_event=f.T0_NS + 10 * hour)
    late = f.intent(f.bar(0), ts_event=f.T0_NS + 25 * hour)
    assert RulesPolicy().judge(early, mem).decision == "reject"
    assert RulesPolicy().judge(late, mem).decision == "approve"
