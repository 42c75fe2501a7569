"""Properties of the Hard Lock component over generated market/verdict sequences.

- the invariant: no entry order unless the symbol is FLAT, one position per symbol at most;
- snapshot + tail equals the whole run (the state is captured whole: encode, decode, go on);
- the fold agrees with an independent model (equity = start + realized P&L; the lock state from the
  last transition's target; round trips counted) — not with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common import lock as table
from nertz_common.node.component import Node, NodeState, Pos
from nertz_common.testing import factories as f
from nertz_executor.core import lock
from nertz_executor.core.component import Executor
from nertz_executor.core.config import HOUR_NS, MINUTE_NS, ExecutorConfig

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


def inputs(ops: list[Op], factor_of) -> list[ev.Event]:
    """The log the executor would read for ``ops``: market data, and per closed bar its snapshot,
    intent and verdict."""
    price = dict.fromkeys(SYMBOLS, 100.0)
    minute = 0
    seen_bars: set[tuple[str, int]] = set()
    out: list[ev.Event] = []
    for op in ops:
        minute += op.advance_min
        s = op.symbol
        ts = f.T0_NS + minute * MINUTE_NS + 1
        if op.kind == "book":
            out.append(f.book(ts, symbol=s, mid=price[s], spread=0.02))
            continue
        if op.kind == "ticker":
            out.append(ev.Ticker(event_id=f"t{ts}{s}", ts_event=ts, ts_init=ts, symbol=s, last_price=price[s]))
            continue
        if (s, minute) in seen_bars:
            continue
        seen_bars.add((s, minute))
        o = price[s]
        c = max(1.0, o * (1 + op.move_pct / 100))
        price[s] = c
        b = f.bar(minute, symbol=s, open=o, close=c, high=max(o, c) * (1 + op.wick), low=min(o, c) * (1 - op.wick))
        out.append(b)
        intent = None
        if op.verdict is not None:
            decision, side, sl = op.verdict
            intent = f.intent(b, side=side, sl=sl, qty=1.0)
        out.append(factor_of(b, intent.event_id if intent else None))
        if intent is not None:
            out += [intent, f.verdict(intent, decision)]
    return out


def run(events: list[ev.Event], node: Node | None = None, start: int = 0) -> tuple[Node, list[ev.Event]]:
    node = node or Node(Executor(CFG))
    out = [o for i, e in enumerate(events, start) for o, _ in node.feed(e, Pos(i + 1, i + 1))]
    return node, out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
def test_hard_lock_no_entry_order_unless_flat_holds_for_random_sequences(kit, ops):
    _, out = run(inputs(ops, kit.factor))
    state: dict[str, str] = dict.fromkeys(SYMBOLS, "FLAT")
    open_per_symbol = dict.fromkeys(SYMBOLS, 0)
    for e in out:
        sym = getattr(e, "symbol", "")
        if isinstance(e, ev.OrderSubmitted) and not e.reduce_only:
            assert state[sym] == "FLAT", f"entry while {state[sym]}"
        if isinstance(e, ev.OrderSubmitted) and e.reduce_only:
            assert state[sym] == "LOCKED"
        if isinstance(e, ev.SignalSuppressed):
            assert state[sym] in table.ENGAGED and e.lock_state == state[sym]
        if isinstance(e, ev.PositionOpened):
            open_per_symbol[sym] += 1
            assert open_per_symbol[sym] == 1
        if isinstance(e, ev.PositionClosed):
            open_per_symbol[sym] -= 1
        t = table.target_of(e)
        if t is not None:
            state[sym] = t
        assert sum(1 for v in state.values() if v in ("ENTRY_PENDING", "LOCKED")) <= CFG.max_positions


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy, data=st.data())
def test_snapshot_then_tail_equals_the_whole_run(kit, ops, data):
    events = inputs(ops, kit.factor)
    _, whole = run(events)
    # cut between steps only (a snapshot is taken when the node is idle)
    node = Node(Executor(CFG))
    cuts = [0]
    for i, e in enumerate(events):
        node.feed(e, Pos(i + 1, i + 1))
        if node.idle:
            cuts.append(i + 1)
    k = data.draw(st.sampled_from(cuts))
    first, head = run(events[:k])
    raw = msgspec.msgpack.encode(first.get_state())
    again = Node(Executor(CFG))
    again.set_state(msgspec.msgpack.decode(raw, type=NodeState))
    _, tail = run(events[k:], again, start=k)
    assert head + tail == whole


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
def test_fold_agrees_with_an_independent_model(kit, ops):
    node, out = run(inputs(ops, kit.factor))
    exec_events = [e for e in out if isinstance(e, ev.ExecEvent | ev.OrderFilled)]
    folded = lock.fold(lock.initial_state(CFG), exec_events)
    assert folded == node.component.state  # the component's state is the fold of what it emitted
    closed = [e for e in out if isinstance(e, ev.PositionClosed)]
    assert folded.closed_trades == len(closed)
    assert folded.winning_trades == sum(1 for c in closed if c.realized_pnl_usdt > 0)
    assert abs(folded.equity_usdt - (CFG.equity_usdt + sum(c.realized_pnl_usdt for c in closed))) < 1e-6
    last: dict[str, str] = {}
    for e in exec_events:
        t = table.target_of(e)
        if t is not None:
            last[e.symbol] = t
    for sym in SYMBOLS:
        assert folded.symbol(sym).lock == last.get(sym, "FLAT")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy, data=st.data())
def test_decisions_do_not_depend_on_when_partners_arrive(kit, ops, data):
    """Snapshots, intents and verdicts arriving late and out of order (a slow model for one symbol, a
    fast one for the other) give the events of the run where each is there when awaited: per symbol
    in the same order, and the cross-symbol risk rules (``max_positions=1``) deciding alike."""
    events = inputs(ops, kit.factor)
    _, want = run(events)
    drivers = [e for e in events if type(e) in Executor.inputs]
    partners = [e for e in events if type(e) not in Executor.inputs]
    # each partner comes after a random number of later driver inputs (or at the end)
    delays = data.draw(st.lists(st.integers(0, 12), min_size=len(partners), max_size=len(partners)))
    first_after: dict[int, list[ev.Event]] = {}
    for p, d in zip(partners, delays, strict=True):
        driver_index = next(i for i, e in enumerate(drivers) if e.event_id == _bar_of(p, events))
        first_after.setdefault(min(len(drivers), driver_index + 1 + d), []).append(p)
    node = Node(Executor(CFG))
    got: list[ev.Event] = []
    seq = 0
    for i in range(len(drivers) + 1):
        for p in data.draw(st.permutations(first_after.get(i, []))):
            seq += 1
            got += [o for o, _ in node.feed(p, Pos(10_000 + seq, 0))]
        if i < len(drivers):
            got += [o for o, _ in node.feed(drivers[i], Pos(i + 1, i + 1))]
    assert node.idle, node.waits
    assert sorted(got, key=lambda e: e.event_id) == sorted(want, key=lambda e: e.event_id)
    for sym in SYMBOLS:
        assert [e for e in got if e.symbol == sym] == [e for e in want if e.symbol == sym]


def _bar_of(partner: ev.Event, events: list[ev.Event]) -> str:
    """The id of the closed bar a snapshot, intent or verdict belongs to."""
    if isinstance(partner, ev.FactorSnapshot):
        return partner.bar_id
    cid = partner.correlation_id  # type: ignore[attr-defined]
    snap = next(e for e in events if isinstance(e, ev.FactorSnapshot) and e.intent_id == cid)
    return snap.bar_id
