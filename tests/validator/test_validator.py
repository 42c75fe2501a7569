"""The llm-validator: rules policy, memory fold, rendezvous, and the handler on a real JetStream."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.testing import factories as f
from nertz_validator.core.memory import Memory, SymbolMemory
from nertz_validator.core.policy import RulesPolicy
from nertz_validator.core.rendezvous import Rendezvous


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
    for seq, e in enumerate(events, 1):
        m = m.apply(e, seq)
    return m


def test_memory_losses_streak_and_drawdown_by_hand():
    m = fold([closed(50, 1), closed(-20, 2), closed(-40, 3)]).of("BTCUSDT")
    assert (m.loss_streak, m.win_streak) == (2, 0)
    assert m.cum_pnl_usdt == pytest.approx(-10) and m.peak_pnl_usdt == pytest.approx(50)
    assert m.drawdown_usdt == pytest.approx(60)
    assert m.lock_state == "COOLDOWN"


def test_memory_redelivered_event_is_not_folded_twice():
    m = fold([closed(-20, 1)])
    assert m.apply(closed(-20, 1), 1) is m


@given(st.lists(st.floats(-100, 100, allow_nan=False), max_size=30), st.integers(0, 30))
def test_memory_prefix_then_rest_equals_whole(pnls, cut):
    events = [closed(p, i) for i, p in enumerate(pnls)]
    whole = fold(events)
    m = fold(events[:cut])
    for seq, e in enumerate(events[cut:], len(events[:cut]) + 1):
        m = m.apply(e, seq)
    assert m == whole


def test_rules_five_losses_in_a_row_rejects_with_reason():
    intent = f.intent(f.bar(0))
    mem = fold([closed(-1, i) for i in range(5)]).of("BTCUSDT")
    op = RulesPolicy().judge(intent, mem)
    assert op.decision == "reject" and "loss streak 5" in op.reasons[0]


def test_rules_drawdown_beyond_15_percent_rejects():
    mem = fold([closed(2000, 1), closed(-1700, 2)]).of("BTCUSDT")  # drawdown 1700 / 10000 = 0.17
    op = RulesPolicy().judge(f.intent(f.bar(0)), mem)
    assert op.decision == "reject" and "drawdown 0.170" in op.reasons[0]


def test_rules_clean_memory_approves_full_size_and_panic_halves():
    op = RulesPolicy().judge(f.intent(f.bar(0), combined=7.5), SymbolMemory())
    assert (op.decision, op.size_multiplier, op.confidence) == ("approve", 1.0, 0.75)
    op = RulesPolicy().judge(f.intent(f.bar(0), regime="panic"), SymbolMemory())
    assert op.size_multiplier == 0.5 and "panic" in op.risk_flags


def test_rendezvous_intent_waits_for_executor_then_judges_with_memory_as_of_then():
    core = Rendezvous(RulesPolicy())
    intent = f.intent(f.bar(0))
    assert core.on_intent(intent) == []
    for i in range(5):
        assert core.on_exec(closed(-1, i), i + 1) == []
    [v] = core.on_exec(awaited(intent), 6)
    assert v.decision == "reject" and v.correlation_id == intent.correlation_id and v.policy == "rules"


def test_rendezvous_locked_symbol_is_skipped_not_judged():
    core = Rendezvous(RulesPolicy())
    intent = f.intent(f.bar(0))
    core.on_intent(intent)
    [v] = core.on_exec(awaited(intent, "LOCKED"), 1)
    assert (v.decision, v.policy, v.reasons) == ("reject", "skipped", ["skipped: locked (LOCKED)"])


def test_rendezvous_awaited_before_intent_uses_memory_of_then_and_judges_once():
    core = Rendezvous(RulesPolicy())
    intent = f.intent(f.bar(0))
    core.on_exec(awaited(intent), 1)
    for i in range(5):  # later losses must not influence this verdict
        core.on_exec(closed(-1, i), i + 2)
    [v] = core.on_intent(intent)
    assert v.decision == "approve"
    assert core.on_intent(intent) == []


@pytest.mark.integration
async def test_validator_handler_publishes_verdict_and_acks_intent_after_it(js_fresh):
    from prometheus_client import CollectorRegistry

    from nertz_validator.handlers import ValidatorHandler, ValidatorMetrics

    pub = bus.Publisher(js_fresh)
    intent = f.intent(f.bar(0))
    await pub.publish(intent)
    await pub.publish(awaited(intent))
    consumer = bus.Consumer(js_fresh, "llm-validator", "llm-validator", pub)
    await consumer.start()
    handler = ValidatorHandler(Rendezvous(RulesPolicy()), pub, ValidatorMetrics(CollectorRegistry()))
    for _ in range(10):
        for d in await consumer.fetch(10, timeout_s=0.2):
            await handler.handle(d)
    msg = await js_fresh.get_last_msg(subjects.STREAM, subjects.for_event(f.verdict(intent)))
    v = ev.decode(msg.data)
    assert isinstance(v, ev.VerdictIssued) and v.decision == "approve" and v.causation_id == awaited(intent).event_id
    await asyncio.sleep(0.1)
    info = await js_fresh.consumer_info(subjects.STREAM, "llm-validator")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 2


def test_rules_circuit_breaker_lifts_after_the_lookback_without_new_trades():
    hour = 3_600_000_000_000
    mem = fold([closed(-1, i) for i in range(5)]).of("BTCUSDT")  # 5 losses closed at t ≈ 0
    early = f.intent(f.bar(0), ts_event=f.T0_NS + 10 * hour)
    late = f.intent(f.bar(0), ts_event=f.T0_NS + 25 * hour)
    assert RulesPolicy().judge(early, mem).decision == "reject"
    assert RulesPolicy().judge(late, mem).decision == "approve"
