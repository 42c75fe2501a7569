"""Property tests of the fold and of the Hard Lock invariant over generated market/verdict sequences."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.testing import factories as f
from nertz_executor.core import lock
from nertz_executor.core.config import HOUR_NS, MINUTE_NS, ExecutorConfig
from nertz_executor.core.recovery import recover

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CFG = ExecutorConfig(cooldown_ns=5 * MINUTE_NS, min_hold_ns=HOUR_NS, max_hold_ns=3 * HOUR_NS, max_positions=1)


@dataclass(frozen=True)
class Op:
    kind: str  # "bar" | "book" | "ticker"
    symbol: str
    advance_min: int
    move_pct: float
    wick: float
    verdict: tuple[str, str, float] | None  # (decision, side, sl) on bars


ops_strategy = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(["bar", "bar", "book", "ticker"]),
        symbol=st.sampled_from(SYMBOLS),
        advance_min=st.sampled_from([0, 1, 1, 2, 5, 30, 90]),
        move_pct=st.floats(-3.0, 3.0),
        wick=st.floats(0.0, 0.03),
        verdict=st.none()
        | st.tuples(
            st.sampled_from(["approve", "reject"]),
            st.sampled_from(["long", "short"]),
            st.sampled_from([0.005, 0.01, 0.02]),
        ),
    ),
    max_size=60,
)


def drive(ops: list[Op], factor_of) -> tuple[list[ev.Event], list[tuple[lock.ExecutorState, ev.Event]]]:
    """Run the ops through decide/evolve like the merge loop; return the events and (state-before, event)."""
    state = lock.initial_state(CFG)
    price = dict.fromkeys(SYMBOLS, 100.0)
    minute = 0
    seen_bars: set[tuple[str, int]] = set()
    events: list[ev.Event] = []
    trace: list[tuple[lock.ExecutorState, ev.Event]] = []

    def emit(out: list[ev.Event]) -> None:
        nonlocal state
        for e in out:
            trace.append((state, e))
            state = lock.evolve(state, e)
            events.append(e)

    for op in ops:
        minute += op.advance_min
        s = op.symbol
        ts = f.T0_NS + minute * MINUTE_NS + 1
        if op.kind == "book":
            emit(lock.decide(state, lock.MarketInput(f.book(ts, symbol=s, mid=price[s], spread=0.02)), CFG))
            continue
        if op.kind == "ticker":
            t = ev.Ticker(event_id=f"t{ts}{s}", ts_event=ts, ts_init=ts, symbol=s, last_price=price[s])
            emit(lock.decide(state, lock.MarketInput(t), CFG))
            continue
        if (s, minute) in seen_bars:
            continue
        seen_bars.add((s, minute))
        o = price[s]
        c = max(1.0, o * (1 + op.move_pct / 100))
        price[s] = c
        b = f.bar(minute, symbol=s, open=o, close=c, high=max(o, c) * (1 + op.wick), low=min(o, c) * (1 - op.wick))
        emit(lock.decide(state, lock.MarketInput(b), CFG))
        intent = None
        if op.verdict is not None:
            decision, side, sl = op.verdict
            intent = f.intent(b, side=side, sl=sl, qty=1.0)
        fs = factor_of(b, intent.event_id if intent else None)
        emit(lock.decide(state, lock.BarrierInput(b, fs), CFG))
        if intent is not None:
            lock_before = state.symbol(s).lock
            out = lock.decide(state, lock.VerdictInput(b, fs, f.verdict(intent, decision), intent), CFG)
            if lock_before != "FLAT":  # suppression: the verdict never reaches the venue
                assert [type(e) for e in out] == [ev.SignalSuppressed]
                assert out[0].lock_state == lock_before
            emit(out)
    return events, trace


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
def test_hard_lock_no_entry_order_unless_flat_holds_for_random_sequences(kit, ops):
    _, trace = drive(ops, kit.factor)
    open_per_symbol = dict.fromkeys(SYMBOLS, 0)
    for before, e in trace:
        if isinstance(e, ev.OrderSubmitted) and not e.reduce_only:
            assert before.symbol(e.symbol).lock == "FLAT", f"entry while {before.symbol(e.symbol).lock}"
        if isinstance(e, ev.PositionOpened):
            open_per_symbol[e.symbol] += 1
            assert open_per_symbol[e.symbol] == 1
        if isinstance(e, ev.PositionClosed):
            open_per_symbol[e.symbol] -= 1
        if isinstance(e, ev.OrderSubmitted) and e.reduce_only:
            assert before.symbol(e.symbol).lock == "LOCKED"
        assert before.exposure_count <= CFG.max_positions


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy, data=st.data())
def test_evolve_prefix_then_rest_equals_whole(kit, ops, data):
    events, _ = drive(ops, kit.factor)
    k = data.draw(st.integers(0, len(events)))
    s0 = lock.initial_state(CFG)
    whole = lock.fold(s0, events)
    assert lock.fold(lock.fold(s0, events[:k]), events[k:]) == whole


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy, data=st.data())
def test_recover_before_plus_step_equals_full_fold(kit, ops, data):
    events, _ = drive(ops, kit.factor)
    # group events into steps of random sizes, numbered by increasing input sequence
    history, seq, i = [], 10, 0
    while i < len(events):
        n = data.draw(st.integers(1, 4))
        history += [(seq, e) for e in events[i : i + n]]
        i += n
        seq += data.draw(st.integers(1, 3))
    s0 = lock.initial_state(CFG)
    r = recover(s0, history)
    assert r.after() == lock.fold(s0, events)
    if history:
        last = max(s for s, _ in history)
        assert r.input_seq == last
        assert r.known_ids == {e.event_id for s, e in history if s == last}
        assert r.before == lock.fold(s0, [e for s, e in history if s < last])
