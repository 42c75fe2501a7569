"""The in-memory log runner: components fed an ordered log in-process (no NATS, no Postgres, no network).

The same nodes the JetStream runner drives live run here over a list of records: a backtest's market
data, a JetStream slice, an exported bundle. Each input goes to every node that takes its type, and
what a node emits goes, in turn and depth first, to the nodes that take *that* type, until nothing is
left; then the next input. This is the pipeline with infinitely fast services. Since every component's output is a
function of its inputs' content (the joins hide the interleaving), it is also exactly what the live
services publish: ``nertz backtest`` and ``make demo`` give the same events, ids included.

:func:`replay` re-runs a recorded log: external inputs (market data, operator commands, whatever no
running component produces) are fed as recorded; every event a running component produces is derived
again and compared with the recorded one. Steps whose origin is before the replay's start position
are taken from the recording (after each component's snapshot), so a replay can start mid-log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nertz_common import events as ev
from nertz_common.errors import InvariantViolation
from nertz_common.node.component import Call, Node, Output, Pos
from nertz_common.node.log import Record, gc_paused
from nertz_common.node.snapshot import Snapshot


class LogRunner:
    """Feed inputs through a set of nodes, routing every output to the nodes that take its type.

    Parameters
    ----------
    nodes : sequence of Node
        Routed in this order (an event reaches them in the order given).
    keep : bool
        Keep every output per producer in :attr:`outputs` (a backtest's report and a replay's
        comparison need them; a sweep may not).
    on_output : callable, optional
        Called with ``(producer, event, pos)`` for every output, in order.
    answer : callable, optional
        ``answer(component, call) -> answer`` for the calls steps ask (a recorded answer in a replay,
        the model itself in a counterfactual); the answer is handed back at once, so the outside
        party is, here too, infinitely fast.

    Raises
    ------
    InvariantViolation
        From :meth:`feed`, when a step asks a call and no ``answer`` is given.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        keep: bool = True,
        on_output: Callable[[str, ev.Event, Pos], None] | None = None,
        answer: Callable[[str, Call], Any] | None = None,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.outputs: dict[str, list[Output]] = {n.name: [] for n in nodes}
        self.answer = answer
        self.calls = 0
        # per type, the (node, outputs list, name) of every node that takes it: no lookup per event
        routes: dict[type[ev.Event], list[tuple[Node, list[Output], str]]] = {}
        for n in nodes:
            for t in n.inputs:
                routes.setdefault(t, []).append((n, self.outputs[n.name], n.name))
        self._routes = {t: tuple(ns) for t, ns in routes.items()}
        self._keep = keep
        self._on_output = on_output
        self.inputs = 0

    def takes(self, t: type[ev.Event]) -> bool:
        """True when some node takes events of type ``t``."""
        return t in self._routes

    def feed(self, event: ev.Event, pos: Pos) -> None:
        """Feed one external input and everything it leads to.

        Raises
        ------
        InvariantViolation
            Whatever a node raises (a broken lock, a join that cannot be met).
        """
        self.inputs += 1
        self._deliver(event, pos)

    def _deliver(self, e: ev.Event, p: Pos) -> None:
        # depth first: what a node emits reaches the later nodes before the event that caused it does,
        # so a partner (signal's snapshot of a bar) is usually buffered when its driver (the bar) comes
        takers = self._routes.get(type(e))
        if takers is None:
            return
        for node, kept, name in takers:
            outs = node.feed(e, p)
            if node.asked:
                outs = outs + self._answer_calls(node)
            if outs:
                if self._keep:
                    kept.extend(outs)
                hook = self._on_output
                if hook is not None:
                    for oe, op in outs:
                        hook(name, oe, op)
                for oe, op in outs:
                    self._deliver(oe, op)

    def _answer_calls(self, node: Node) -> list[Output]:
        out: list[Output] = []
        while node.asked:
            asked, node.asked = node.asked, []
            for call, _ in asked:
                if self.answer is None:
                    raise InvariantViolation(
                        f"{node.name}: a step asked {type(call).__name__} {call.key} and this run answers no calls"
                    )
                self.calls += 1
                out += node.answer(call.key, self.answer(node.name, call))
        return out

    def run(self, records: Iterable[Record]) -> None:
        """Feed every record (external inputs) in order."""
        routes = self._routes
        for r in records:
            if type(r.event) in routes:
                self.feed(r.event, Pos(r.seq, r.origin))

    def busy(self) -> dict[str, str]:
        """Nodes that are mid-step at the end (a join still waiting), with what they wait for."""
        out = {}
        for name, n in self.nodes.items():
            if not n.idle:
                aw = n.awaiting
                out[name] = f"awaiting {aw[0].__name__}[{aw[1]}], {n.held} inputs held" if aw else f"{n.held} held"
        return out


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """The first place where a derived event differs from the recorded one.

    Attributes
    ----------
    producer : str
        The component whose output differs.
    index : int
        Position of the event among that component's compared outputs (0-based).
    recorded : Record or None
        The recorded event (None: the derivation produced an event the recording does not have).
    derived : Event or None
        The derived event (None: the recording has an event the derivation did not produce).
    origin : int
        The step's origin (where in the log it happened).
    """

    producer: str
    index: int
    recorded: Record | None
    derived: ev.Event | None
    origin: int

    def fields(self) -> list[tuple[str, object, object]]:
        """Return ``(field, recorded, derived)`` for every field that differs, the type first.

        When the types differ, every field of either event is listed (``None`` where an event has
        no such field); a missing event shows as ``None`` throughout.
        """
        a = self.recorded.event if self.recorded is not None else None
        b = self.derived
        names_a = list(a.__struct_fields__) if a is not None else []
        names_b = list(b.__struct_fields__) if b is not None else []
        same_type = type(a) is type(b)
        out: list[tuple[str, object, object]] = []
        if not same_type:
            out.append(("type", type(a).__name__ if a else None, type(b).__name__ if b else None))
        for f in [*names_a, *(n for n in names_b if n not in names_a)]:
            va, vb = getattr(a, f, None), getattr(b, f, None)
            if va != vb or not same_type:
                out.append((f, va, vb))
        return out


@dataclass
class ReplayResult:
    """What a replay found.

    Attributes
    ----------
    compared : dict[str, int]
        Per producer, derived events compared with a recorded one.
    identical : int
        Compared events equal to the recorded ones.
    divergence : Divergence or None
        The first divergence in log order, None when every compared event is identical.
    beyond : dict[str, int]
        Per producer, derived events after the recording's last step of that producer (not compared).
    inputs : int
        External inputs fed in the re-derived part.
    warmup : int
        Records fed from the recording before the start position.
    busy : dict[str, str]
        Components still mid-step at the end.
    answers_served, answers_asked : int
        Calls answered from the recording, and asked anew (a counterfactual's other model).
    derived : dict[str, list[Output]]
        Every derived event per producer.
    recorded : dict[str, list[Record]]
        The recorded events they were compared with.
    """

    compared: dict[str, int] = field(default_factory=dict)
    identical: int = 0
    divergence: Divergence | None = None
    beyond: dict[str, int] = field(default_factory=dict)
    inputs: int = 0
    warmup: int = 0
    busy: dict[str, str] = field(default_factory=dict)
    answers_served: int = 0
    answers_asked: int = 0
    derived: dict[str, list[Output]] = field(default_factory=dict)
    recorded: dict[str, list[Record]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing diverged."""
        return self.divergence is None


def replay(
    records: Sequence[Record],
    nodes: Sequence[Node],
    producer_of: Callable[[str], str | None],
    *,
    start: int | None = None,
    until: int | None = None,
    snapshots: Mapping[str, Snapshot] | None = None,
    lane_of: Callable[[str, str], str | None] | None = None,
    compare: Callable[[ev.Event], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    ask: Callable[[str, Call], Any] | None = None,
) -> ReplayResult:
    """Re-run ``nodes`` over a recorded log and compare what they derive with what was recorded.

    A call a step asks (a model, an exchange) is answered from the recording: the answer recorded in
    the component's output of that key (:meth:`~nertz_common.node.component.Component.recorded`). With
    ``ask`` (a counterfactual), a call whose recorded answer was to another question (another model or
    prompt, :meth:`~nertz_common.node.component.Component.same_question`), or has none, is asked anew.

    Parameters
    ----------
    records : sequence of Record
        The log in order (from JetStream or a bundle), covering every node's snapshot position.
    nodes : sequence of Node
        Fresh nodes of the components to re-run (e.g. signal, validator, executor).
    producer_of : callable
        Subject → the name of the component that publishes it (None if none of ours).
    start : int, optional
        Position from which steps are re-derived (default: the first record). Steps with an
        earlier origin are fed from the recording.
    until : int, optional
        Last external input to feed (default: the last record).
    snapshots : mapping of str to Snapshot, optional
        Per component, the state to start from (its origin must be below ``start``).
    lane_of : callable, optional
        ``(component, subject) → lane`` to match records with a snapshot's lane positions.
    compare : callable, optional
        Restrict the comparison to events for which it returns True (e.g. some symbols).
    progress : callable, optional
        Called with the number of records handled, every few thousand.
    ask : callable, optional
        ``ask(component, call) -> answer``: the outside party, for the calls the recording cannot answer.

    Returns
    -------
    ReplayResult

    Raises
    ------
    InvariantViolation
        If a step asks a call that the recording cannot answer and no ``ask`` is given.
    """
    with gc_paused():
        answers = RecordedAnswers(records, producer_of, nodes, ask)
        return _replay(records, nodes, producer_of, start, until, snapshots or {}, lane_of, compare, progress, answers)


class RecordedAnswers:
    """Answer calls from the answers recorded in the log (see :func:`replay`).

    Attributes
    ----------
    served : int
        Calls answered from the recording.
    asked : int
        Calls handed to the outside party.
    """

    def __init__(
        self,
        records: Sequence[Record],
        producer_of: Callable[[str], str | None],
        nodes: Sequence[Node],
        ask: Callable[[str, Call], Any] | None,
    ) -> None:
        self._nodes = {n.name: n for n in nodes}
        self._answers: dict[str, dict[str, Any]] = {n: {} for n in self._nodes}
        for r in records:
            prod = producer_of(r.subject)
            node = self._nodes.get(prod or "")
            if node is not None:
                for key, a in node.component.recorded(r.event):
                    self._answers[node.name][key] = a
        self._ask = ask
        self.served = 0
        self.asked = 0

    def __call__(self, component: str, call: Call) -> Any:
        """Return the answer to ``call`` of ``component``.

        Raises
        ------
        InvariantViolation
            If nothing recorded answers it and there is no outside party to ask.
        """
        recorded = self._answers[component].get(call.key)
        node = self._nodes[component]
        if recorded is not None and (self._ask is None or node.component.same_question(call, recorded)):
            self.served += 1
            return recorded
        if self._ask is None:
            raise InvariantViolation(
                f"{component}: a step asked {type(call).__name__} {call.key}, and the log holds no answer to it "
                f"(a replay never asks the outside party; a counterfactual can)"
            )
        self.asked += 1
        return self._ask(component, call)


def _replay(
    records: Sequence[Record],
    nodes: Sequence[Node],
    producer_of: Callable[[str], str | None],
    start: int | None,
    until: int | None,
    snapshots: Mapping[str, Snapshot],
    lane_of: Callable[[str, str], str | None] | None,
    compare: Callable[[ev.Event], bool] | None,
    progress: Callable[[int], None] | None,
    answers: RecordedAnswers,
) -> ReplayResult:
    running = {n.name for n in nodes}
    by_name = {n.name: n for n in nodes}
    first = records[0].seq if records else 0
    b = first if start is None else start
    t = records[-1].seq if until is None and records else (until or 0)
    result = ReplayResult()

    # 1. put back each node's snapshot, then feed it the recording of every step before ``b``
    for name, given in snapshots.items():
        if name in by_name:
            by_name[name].set_state(given.node)
    producers = [producer_of(r.subject) for r in records]
    warm = [n for n in nodes if n.name in snapshots or b > first]
    if warm:
        for n in warm:
            snap: Snapshot | None = snapshots.get(n.name)
            takes = n.inputs
            for i, r in enumerate(records):
                if r.origin >= b or type(r.event) not in takes or producers[i] == n.name:
                    continue  # (a node's own outputs are never its inputs: paper fills, say)
                if snap is not None and lane_of is not None:
                    lane = lane_of(n.name, r.subject)
                    if lane is not None and r.seq <= snap.positions.get(lane, 0):
                        continue
                n.feed(r.event, Pos(r.seq, r.origin))
                while n.asked:  # a step of the warm-up that asked: its answer is in the recording
                    asked, n.asked = n.asked, []
                    for call, _ in asked:
                        n.answer(call.key, answers(n.name, call))
                result.warmup += 1
                if progress is not None and i % 8192 == 0:
                    progress(i)
        for n in nodes:  # a partner of a step from ``b`` on is derived again, never taken as recorded
            n.drop_buffered(lambda _e, p: p.origin < b)

    # 2. the re-derived part: external inputs from ``b`` to ``t``; the running components' events
    runner = LogRunner(nodes, answer=answers)
    recorded: dict[str, list[Record]] = {name: [] for name in running}
    for i, (r, prod) in enumerate(zip(records, producers, strict=True)):
        if prod in running:
            if r.origin >= b and r.origin <= t:
                recorded[prod].append(r)
            continue
        if r.seq < b or r.seq > t:
            continue
        if runner.takes(type(r.event)):
            runner.feed(r.event, Pos(r.seq, r.origin))
        if progress is not None and i % 8192 == 0:
            progress(i)
    result.inputs = runner.inputs
    result.answers_served, result.answers_asked = answers.served, answers.asked
    result.busy = runner.busy()
    result.derived = runner.outputs
    result.recorded = recorded

    # 3. compare, per producer and symbol, in order (two symbols' outputs interleave by timing on the
    #    log, docs/decisions.md D13); report the divergence that comes first in the log
    firsts: list[tuple[int, int, int, Divergence]] = []
    rank = {n.name: i for i, n in enumerate(nodes)}
    for name in running:
        derived = runner.outputs[name]
        rec = recorded[name]
        if compare is not None:
            derived = [o for o in derived if compare(o[0])]
            rec = [r for r in rec if compare(r.event)]
        last_origin = rec[-1].origin if rec else b - 1
        d_by: dict[str, list[tuple[int, Output]]] = {}
        for i, o in enumerate(derived):
            d_by.setdefault(getattr(o[0], "symbol", ""), []).append((i, o))
        r_by: dict[str, list[Record]] = {}
        for r in rec:
            r_by.setdefault(getattr(r.event, "symbol", ""), []).append(r)
        n_same = 0
        divs: list[Divergence] = []
        for sym in sorted(set(d_by) | set(r_by)):
            ds, rs = d_by.get(sym, []), r_by.get(sym, [])
            for k, (i, (d, p)) in enumerate(ds):
                if k >= len(rs):
                    if p.origin <= last_origin:
                        divs.append(Divergence(name, i, None, d, p.origin))
                    else:
                        result.beyond[name] = result.beyond.get(name, 0) + len(ds) - k
                    break
                if d != rs[k].event:
                    divs.append(Divergence(name, i, rs[k], d, rs[k].origin))
                    break
                n_same += 1
            else:
                if len(rs) > len(ds):
                    r = rs[len(ds)]
                    divs.append(Divergence(name, len(derived), r, None, r.origin))
        div = min(divs, key=lambda x: (x.origin, x.index)) if divs else None
        result.compared[name] = n_same + (div is not None)
        result.identical += n_same
        if div is not None:
            firsts.append((div.origin, rank[name], div.recorded.seq if div.recorded else 1 << 62, div))
    if firsts:
        result.divergence = min(firsts, key=lambda f: f[:3])[3]
    return result
