"""Scoped steps: a wait holds only its own scope; ordered joins complete in log order; calls; barriers.

The toy component below has what the executor and the validator have: per-symbol work that must not
wait for another symbol (tickers), a step that asks an outside party (a call) and then waits for a
partner whose handler reads state every symbol shares (an ordered join), and operator commands for
every symbol (barriers). Whatever order partners and answers arrive in, the outputs must be those of
the plain sequential run, where every partner and answer is there the moment it is awaited.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.errors import InvariantViolation
from nertz_common.node.component import Call, Component, Join, Node, Pos
from nertz_common.testing import factories as f

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


class Ask(Call, frozen=True, kw_only=True):
    symbol: str


class Toy(msgspec.Struct):
    ticks: dict[str, int] = {}
    decided: int = 0  # shared by every symbol, written only by the ordered step
    halted: bool = False


class Decider(Component):
    """Closed bar → wait FactorSnapshot → ask → wait VerdictIssued (ordered) → decide."""

    name: ClassVar[str] = "decider"
    scope: ClassVar[str | None] = "symbol"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (ev.Bar, ev.Ticker, ev.TradingStopped)
    joins: ClassVar[tuple[Join, ...]] = (
        Join(ev.FactorSnapshot, "bar_id"),
        Join(ev.VerdictIssued, "correlation_id", ordered=True),
    )
    state_type: ClassVar[type[msgspec.Struct]] = Toy

    def __init__(self) -> None:
        self.s = Toy()
        self.bars: dict[str, ev.Bar] = {}
        self.answers: dict[str, Any] = {}

    def scope_of(self, event: ev.Event) -> str | None:
        if isinstance(event, ev.TradingStopped):
            return None if event.scope == "all" else event.scope
        return event.symbol  # type: ignore[attr-defined, no-any-return]

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        self.bars[bar.symbol] = bar
        self.awaiting = (ev.FactorSnapshot, bar.event_id)
        return []

    def on_ticker(self, t: ev.Ticker) -> list[ev.Event]:
        n = self.s.ticks.get(t.symbol, 0) + 1
        self.s.ticks = {**self.s.ticks, t.symbol: n}
        return [out(f"tick:{t.symbol}:{n}:halted={self.s.halted}", t.ts_event)]

    def on_trading_stopped(self, e: ev.TradingStopped) -> list[ev.Event]:
        self.s.halted = True
        return [out(f"halt:{e.scope}", e.ts_event)]

    def on_factor_snapshot(self, fs: ev.FactorSnapshot) -> list[ev.Event]:
        self.ask(Ask(key=fs.bar_id, symbol=fs.symbol))
        return []

    def on_answer(self, call: Call, answer: Any) -> list[ev.Event]:
        assert isinstance(call, Ask)
        self.answers[call.symbol] = answer
        self.awaiting = (ev.VerdictIssued, call.key)
        return [out(f"asked:{call.symbol}:{answer}", 0)]

    def on_verdict_issued(self, v: ev.VerdictIssued) -> list[ev.Event]:
        self.s.decided += 1
        ticks = self.s.ticks.get(v.symbol, 0)
        return [out(f"decide:{v.symbol}:{self.s.decided}:ticks={ticks}:halted={self.s.halted}", v.ts_event)]

    def get_state(self) -> Toy:
        return self.s

    def set_state(self, state: Toy) -> None:
        self.s = state


def out(text: str, ts: int) -> ev.Event:
    return ev.TradingStarted(event_id=text, ts_event=ts, ts_init=ts, actor=text)


def bar(i: int, symbol: str) -> ev.Bar:
    return f.bar(i, symbol=symbol)


def factor(b: ev.Bar) -> ev.FactorSnapshot:
    return ev.FactorSnapshot(
        event_id=f"fs-{b.event_id}", ts_event=b.ts_event, ts_init=b.ts_event, symbol=b.symbol,
        bar_id=b.event_id, interval=b.interval, close=b.close,
    )  # fmt: skip


def verdict(b: ev.Bar) -> ev.VerdictIssued:
    return ev.VerdictIssued(
        event_id=f"v-{b.event_id}", ts_event=b.ts_event, ts_init=b.ts_event, symbol=b.symbol,
        correlation_id=b.event_id, causation_id=b.event_id, decision="approve", confidence=1.0,
        size_multiplier=1.0, policy="test",
    )  # fmt: skip


def ticker(i: int, symbol: str) -> ev.Ticker:
    return ev.Ticker(event_id=f"t{i}{symbol}", ts_event=f.T0_NS + i, ts_init=f.T0_NS + i, symbol=symbol)


def drivers(n: int, seed: int) -> list[ev.Event]:
    """A driver sequence: closed bars and tickers of three symbols, one operator stop in the middle."""
    rng = random.Random(seed)
    out_: list[ev.Event] = []
    for i in range(n):
        sym = rng.choice(SYMBOLS)
        out_.append(bar(i, sym) if rng.random() < 0.4 else ticker(i, sym))
        if i == n // 2:
            out_.append(ev.TradingStopped(event_id="stop", ts_event=f.T0_NS + i, ts_init=f.T0_NS + i))
    return out_


def answer_of(key: str) -> str:
    return f"answer-{key[:4]}"


def sequential(inputs: list[ev.Event]) -> list[tuple[str, Pos]]:
    """Every partner and answer there the moment it is awaited: the reference."""
    by_id = {e.event_id: e for e in inputs if isinstance(e, ev.Bar)}
    n = Node(Decider())
    outs = []
    for seq, e in enumerate(inputs, 1):
        outs += n.feed(e, Pos(seq, seq))
        while n.asked or n.waits:
            asked, n.asked = n.asked, []
            for call, _ in asked:
                outs += n.answer(call.key, answer_of(call.key))
            for t, key in list(n.waits.values()):
                if t is ev.FactorSnapshot:
                    outs += n.feed(factor(by_id[key]), Pos(10_000 + seq, seq))
                elif t is ev.VerdictIssued:
                    outs += n.feed(verdict(by_id[key]), Pos(20_000 + seq, seq))
    assert n.idle
    return [(e.event_id, p) for e, p in outs]


def shuffled(inputs: list[ev.Event], rnd: random.Random) -> list[tuple[str, Pos]]:
    """Partners and answers arrive late and in any order: some before they are awaited, most after."""
    by_id = {e.event_id: e for e in inputs if isinstance(e, ev.Bar)}
    n = Node(Decider())
    early = {k for k in by_id if rnd.random() < 0.3}
    outs: list[Any] = []
    pending: list[tuple[str, str]] = []  # ("factor" | "answer" | "verdict", bar id)

    def deliver(kind: str, key: str, seq: int) -> None:
        nonlocal outs
        if kind == "factor":
            outs += n.feed(factor(by_id[key]), Pos(60_000 + seq, seq))
        elif kind == "answer":
            outs += n.answer(key, answer_of(key))
            pending.append(("verdict", key))
        else:
            outs += n.feed(verdict(by_id[key]), Pos(70_000 + seq, seq))

    for seq, e in enumerate(inputs, 1):
        if e.event_id in early:
            outs += n.feed(factor(by_id[e.event_id]), Pos(50_000 + seq, seq))  # before its bar
        outs += n.feed(e, Pos(seq, seq))
        if isinstance(e, ev.Bar) and e.event_id not in early:
            pending.append(("factor", e.event_id))
        while pending and rnd.random() < 0.5:
            pending.extend(("answer", c.key) for c, _ in n.asked)
            n.asked = []
            deliver(*pending.pop(rnd.randrange(len(pending))), seq)
    while pending or n.asked:
        pending.extend(("answer", c.key) for c, _ in n.asked)
        n.asked = []
        if pending:
            deliver(*pending.pop(rnd.randrange(len(pending))), len(inputs))
    assert n.idle, n.waits
    return [(e.event_id, p) for e, p in outs]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(8, 60))
def test_outputs_do_not_depend_on_when_partners_and_answers_arrive(seed, order_seed, n):
    inputs = drivers(n, seed)
    want = sequential(inputs)
    got = shuffled(inputs, random.Random(order_seed))
    assert sorted(got, key=repr) == sorted(want, key=repr)
    # within a scope the order is the sequential one
    for sym in SYMBOLS:
        assert [x for x in got if sym in x[0]] == [x for x in want if sym in x[0]]


def test_a_wait_holds_only_its_own_scope():
    n = Node(Decider())
    b = bar(0, "BTCUSDT")
    n.feed(b, Pos(1, 1))
    assert n.waits == {"BTCUSDT": (ev.FactorSnapshot, b.event_id)}
    outs = n.feed(ticker(2, "ETHUSDT"), Pos(2, 2))  # another symbol: handled now
    assert [e.event_id for e, _ in outs] == ["tick:ETHUSDT:1:halted=False"]
    assert n.feed(ticker(3, "BTCUSDT"), Pos(3, 3)) == [] and n.held == 1  # its own: held
    n.feed(factor(b), Pos(4, 1))
    [(call, pos)] = n.asked
    assert call.key == b.event_id and pos == Pos(1, 1) and not n.idle
    outs = n.answer(call.key, "yes")
    assert [e.event_id for e, _ in outs] == ["asked:BTCUSDT:yes"]
    outs = n.feed(verdict(b), Pos(5, 1))
    assert [(e.event_id, p) for e, p in outs] == [
        ("decide:BTCUSDT:1:ticks=0:halted=False", Pos(1, 1)),  # the step's own position
        ("tick:BTCUSDT:1:halted=False", Pos(3, 3)),  # then the held input
    ]
    assert n.idle and n.held == 0


def test_an_ordered_partner_waits_until_every_earlier_step_is_done():
    n = Node(Decider())
    b1, b2 = bar(0, "BTCUSDT"), bar(1, "ETHUSDT")
    for seq, b in ((1, b1), (2, b2)):
        n.feed(b, Pos(seq, seq))
        n.feed(factor(b), Pos(10 + seq, seq))
    for call, _ in n.asked:
        n.answer(call.key, "a")
    n.asked = []
    # ETH's verdict first: its step (2) comes after BTC's (1), which is unfinished, so it waits
    assert n.feed(verdict(b2), Pos(21, 2)) == []
    assert n.wanted() == frozenset({ev.VerdictIssued})  # BTC's verdict is still wanted, ETH's is in hand
    outs = n.feed(verdict(b1), Pos(22, 1))
    assert [e.event_id for e, _ in outs] == [
        "decide:BTCUSDT:1:ticks=0:halted=False",
        "decide:ETHUSDT:2:ticks=0:halted=False",
    ]
    assert n.idle


def test_a_barrier_waits_for_every_step_and_everything_after_it_waits_for_the_barrier():
    n = Node(Decider())
    b = bar(0, "BTCUSDT")
    n.feed(b, Pos(1, 1))
    stop = ev.TradingStopped(event_id="stop", ts_event=f.T0_NS, ts_init=f.T0_NS)
    assert n.feed(stop, Pos(2, 2)) == []
    assert n.feed(ticker(3, "ETHUSDT"), Pos(3, 3)) == []  # after the barrier: waits too
    n.feed(factor(b), Pos(4, 1))
    n.answer(b.event_id, "a")
    outs = n.feed(verdict(b), Pos(5, 1))
    assert [e.event_id for e, _ in outs] == [
        "decide:BTCUSDT:1:ticks=0:halted=False",
        "halt:all",
        "tick:ETHUSDT:1:halted=True",
    ]
    assert n.idle and n.held == 0


def test_a_snapshot_is_refused_while_a_call_is_unanswered_and_state_round_trips_after():
    n = Node(Decider())
    b = bar(0, "BTCUSDT")
    n.feed(b, Pos(1, 1))
    n.feed(factor(b), Pos(2, 1))
    with pytest.raises(InvariantViolation, match="between steps"):
        n.get_state()
    n.answer(b.event_id, "a")
    n.feed(verdict(b), Pos(3, 1))
    st_ = n.get_state()
    m = Node(Decider())
    m.set_state(st_)
    assert m.component.get_state() == n.component.get_state()


def test_an_answer_nobody_asked_for_is_a_key_error():
    n = Node(Decider())
    with pytest.raises(KeyError):
        n.answer("nobody", "a")


def test_holding_too_much_across_scopes_is_an_invariant_violation():
    n = Node(Decider(), max_held=3)
    for i, sym in enumerate(SYMBOLS):
        n.feed(bar(i, sym), Pos(i + 1, i + 1))
    for i in range(3):
        n.feed(ticker(10 + i, SYMBOLS[i]), Pos(10 + i, 10 + i))
    with pytest.raises(InvariantViolation, match="to be met, it holds 3 inputs"):
        n.feed(ticker(20, "BTCUSDT"), Pos(20, 20))


def test_a_scope_held_back_keeps_its_partners_however_far_the_others_go():
    """BTC waits for a slow answer while ETH runs 50 hours ahead: BTC's snapshots, buffered meanwhile,
    are not leftovers (the horizon counts in BTC's own time); ETH's strays are."""
    n = Node(Decider())
    b0 = bar(0, "BTCUSDT")
    n.feed(b0, Pos(1, 1))
    n.feed(factor(b0), Pos(2, 1))  # BTC now waits for its answer
    later = [bar(i, "BTCUSDT") for i in range(1, 4)]
    for k, b in enumerate(later):
        n.feed(b, Pos(10 + k, 10 + k))  # held
        n.feed(factor(b), Pos(20 + k, 10 + k))  # buffered
    t = f.T0_NS + 50 * 3_600_000_000_000
    n.feed(ev.Ticker(event_id="far", ts_event=t, ts_init=t, symbol="ETHUSDT"), Pos(100, 100))
    strays = [factor(bar(i, "ETHUSDT")) for i in range(1100)]  # snapshots of bars ETH never waits for
    for k, s_ in enumerate(strays):
        n.feed(s_, Pos(200 + k, 200 + k))
    assert n.dropped >= 1000 and n.buffered == len(later) + len(strays) - n.dropped
    n.answer(b0.event_id, "a")
    n.feed(verdict(b0), Pos(9_000, 1))
    for b in later:  # each later BTC bar finds its snapshot
        n.answer(b.event_id, "a")
        n.feed(verdict(b), Pos(9_001, 1))
    assert n.idle
