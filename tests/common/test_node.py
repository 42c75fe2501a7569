"""The kernel's node: handler registry, the declared join in any arrival order, held inputs, state."""

from __future__ import annotations

from typing import ClassVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.errors import InvariantViolation
from nertz_common.node.component import BuildError, Component, Join, Node, Pos, handler_name
from nertz_common.testing import factories as f


class Count(msgspec.Struct):
    bars: int = 0
    joined: list[str] = []


class Joiner(Component):
    """A toy component: each closed bar waits for its FactorSnapshot; emits a TradingStarted per pair."""

    name: ClassVar[str] = "joiner"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (ev.Bar, ev.Ticker)
    joins: ClassVar[tuple[Join, ...]] = (Join(ev.FactorSnapshot, "bar_id"),)
    state_type: ClassVar[type[msgspec.Struct]] = Count

    def __init__(self) -> None:
        self.s = Count()
        self.order: list[str] = []

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        self.s.bars += 1
        self.order.append(f"bar:{bar.event_id}")
        self.awaiting = (ev.FactorSnapshot, bar.event_id)
        return []

    def on_ticker(self, t: ev.Ticker) -> list[ev.Event]:
        self.order.append(f"ticker:{t.event_id}")
        return []

    def on_factor_snapshot(self, fs: ev.FactorSnapshot) -> list[ev.Event]:
        self.order.append(f"factor:{fs.bar_id}")
        self.s.joined = [*self.s.joined, fs.bar_id]
        self.awaiting = None
        return [ev.TradingStarted(event_id=f"out-{fs.bar_id}", ts_event=fs.ts_event, ts_init=fs.ts_event)]

    def get_state(self) -> Count:
        return self.s

    def set_state(self, state: Count) -> None:
        self.s = state


def factor(bar: ev.Bar) -> ev.FactorSnapshot:
    return ev.FactorSnapshot(
        event_id=f"fs-{bar.event_id}", ts_event=bar.ts_event, ts_init=bar.ts_event, symbol=bar.symbol,
        bar_id=bar.event_id, interval=bar.interval, close=bar.close,
    )  # fmt: skip


def ticker(i: int) -> ev.Ticker:
    return ev.Ticker(event_id=f"t{i}", ts_event=f.T0_NS + i, ts_init=f.T0_NS + i, symbol="BTCUSDT")


def test_handler_name_is_snake_case_of_the_type():
    assert handler_name(ev.FactorSnapshot) == "on_factor_snapshot"
    assert handler_name(ev.Bar) == "on_bar"
    assert handler_name(ev.VerdictIssued) == "on_verdict_issued"


def test_build_missing_handler_fails_at_build_time_naming_it():
    class Incomplete(Joiner):
        name = "incomplete"
        inputs = (ev.Bar, ev.Ticker, ev.BookSnapshot)

    with pytest.raises(BuildError, match="on_book_snapshot for BookSnapshot"):
        Node(Incomplete())


def test_build_type_both_input_and_partner_is_refused():
    class Both(Joiner):
        name = "both"
        inputs = (ev.Bar, ev.FactorSnapshot)

    with pytest.raises(BuildError, match="both input and partner"):
        Node(Both())


def test_join_partner_after_driver_holds_later_inputs_then_releases_them_in_order():
    n = Node(Joiner())
    b0, b1 = f.bar(0), f.bar(1)
    assert n.feed(b0, Pos(1, 1)) == []
    assert n.feed(ticker(2), Pos(2, 2)) == [] and n.held == 1  # held: the join waits
    assert n.feed(b1, Pos(3, 3)) == [] and n.held == 2
    outs = n.feed(factor(b0), Pos(4, 1))
    # the partner's outputs belong to the step of its driver (seq 1), then the held inputs run
    assert [(e.event_id, p) for e, p in outs] == [(f"out-{b0.event_id}", Pos(1, 1))]
    assert n.component.order == [f"bar:{b0.event_id}", f"factor:{b0.event_id}", "ticker:t2", f"bar:{b1.event_id}"]
    assert n.awaiting == (ev.FactorSnapshot, b1.event_id) and n.held == 0


def test_join_partner_before_driver_is_buffered_and_met_at_once():
    n = Node(Joiner())
    b0 = f.bar(0)
    assert n.feed(factor(b0), Pos(1, 1)) == [] and n.buffered == 1
    outs = n.feed(b0, Pos(2, 2))
    assert [p for _, p in outs] == [Pos(2, 2)] and n.idle and n.buffered == 0


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(12))), st.integers(3, 12))
def test_join_outputs_do_not_depend_on_how_two_producers_interleave(perm, n_bars):
    bars = [f.bar(i) for i in range(n_bars)]
    drivers = [(b, Pos(i + 1, i + 1)) for i, b in enumerate(bars)]
    partners = [(factor(b), Pos(100 + i, i + 1)) for i, b in enumerate(bars)]
    # merge: drivers in order, partners in order, interleaved by a random choice sequence
    choice = [p % 2 for p in perm] * 4
    a = b = 0
    merged = []
    for c in choice:
        if c and a < len(drivers):
            merged.append(drivers[a])
            a += 1
        elif b < len(partners):
            merged.append(partners[b])
            b += 1
    merged += drivers[a:] + partners[b:]
    reference = Node(Joiner())
    want = [o for e, p in [*drivers[:1]] for o in reference.feed(e, p)]
    for d, p in zip(drivers[1:], partners, strict=False):
        want += reference.feed(p[0], p[1])
        want += reference.feed(d[0], d[1])
    want += reference.feed(*partners[-1])
    node = Node(Joiner())
    got = [o for e, p in merged for o in node.feed(e, p)]
    assert got == want
    assert node.component.order == reference.component.order


def test_state_between_steps_round_trips_with_buffered_partners():
    n = Node(Joiner())
    b0, b1 = f.bar(0), f.bar(1)
    n.feed(b0, Pos(1, 1))
    n.feed(factor(b0), Pos(2, 1))
    n.feed(factor(b1), Pos(3, 2))  # buffered: its bar has not come yet
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(n.get_state()), type=type(n.get_state()))
    m = Node(Joiner())
    m.set_state(state)
    assert m.component.s.joined == [b0.event_id] and m.buffered == 1
    assert [p for _, p in m.feed(b1, Pos(4, 4))] == [Pos(4, 4)]


def test_state_mid_step_is_refused():
    n = Node(Joiner())
    n.feed(f.bar(0), Pos(1, 1))
    with pytest.raises(InvariantViolation, match="between steps"):
        n.get_state()


def test_state_of_another_component_is_refused():
    n = Node(Joiner())
    with pytest.raises(InvariantViolation, match="expected a state of 'joiner'"):
        n.set_state(msgspec.structs.replace(n.get_state(), component="other"))


def test_join_that_is_never_met_stops_holding_at_the_limit():
    n = Node(Joiner(), max_held=5)
    n.feed(f.bar(0), Pos(1, 1))
    for i in range(5):
        n.feed(ticker(i), Pos(2 + i, 2 + i))
    with pytest.raises(InvariantViolation, match=r"join for FactorSnapshot\[.*\] to be met, it holds 5"):
        n.feed(ticker(9), Pos(9, 9))


def test_leftover_partners_older_than_the_horizon_are_dropped_and_an_await_of_one_is_an_error():
    n = Node(Joiner())
    old = [f.bar(i) for i in range(1100)]
    for i, b in enumerate(old):  # partners whose bars never come
        n.feed(factor(b), Pos(i + 1, i + 1))
    late = f.bar(0, ts_event=old[-1].ts_event + 2 * 3_600_000_000_000, event_id="late")
    n.feed(late, Pos(5000, 5000))
    n.feed(factor(late), Pos(5001, 5000))
    for i in range(1100):  # enough new partners to trigger the prune
        n.feed(factor(f.bar(i, ts_event=late.ts_event + i, event_id=f"new{i}")), Pos(6000 + i, 6000 + i))
    assert n.dropped == len(old)
    with pytest.raises(InvariantViolation, match="dropped earlier as a leftover"):
        n.feed(old[3], Pos(9000, 9000))
