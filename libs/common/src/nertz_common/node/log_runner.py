"""The in-memory log runner: components fed an ordered log in-process (no NATS, no Postgres, no network).

The same nodes the JetStream runner drives live run here over a list of records: a backtest's market
data, a JetStream slice, an exported bundle. Each input goes to every node that takes its type, and
what a node emits goes, in turn, to the nodes that take *that* type, until nothing is left; then the
next input. This is the pipeline with infinitely fast services. Since every component's output is a
function of its inputs' content (the joins hide the interleaving), it is also exactly what the live
services publish: ``nertz backtest`` and ``make demo`` give the same events, ids included.

:func:`replay` re-runs a recorded log: external inputs (market data, operator commands, whatever no
running component produces) are fed as recorded; every event a running component produces is derived
again and compared with the recorded one. Steps whose origin is before the replay's start position
are taken from the recording (after each component's snapshot), so a replay can start mid-log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nertz_common import events as ev
from nertz_common.node.component import Node, Output, Pos
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
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        keep: bool = True,
        on_output: Callable[[str, ev.Event, Pos], None] | None = None,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.outputs: dict[str, list[Output]] = {n.name: [] for n in nodes}
        # per type, the (feed, outputs list, name) of every node that takes it: no lookup per event
        routes: dict[type[ev.Event], list[tuple[Callable[[ev.Event, Pos], list[Output]], list[Output], str]]] = {}
        for n in nodes:
            for t in n.inputs:
                routes.setdefault(t, []).append((n.feed, self.outputs[n.name], n.name))
        self._routes = {t: tuple(ns) for t, ns in routes.items()}
        self._keep = keep
        self._on_output = on_output
        self.inputs = 0
        self._q: deque[tuple[ev.Event, Pos]] = deque()

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
        routes = self._routes
        q = self._q
        q.append((event, pos))
        keep, hook = self._keep, self._on_output
        while q:
            e, p = q.popleft()
            takers = routes.get(type(e))
            if takers is None:
                continue
            for feed, kept, name in takers:
                outs = feed(e, p)
                if outs:
                    q.extend(outs)
                    if keep:
                        kept.extend(outs)
                    if hook is not None:
                        for oe, op in outs:
                            hook(name, oe, op)

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
) -> ReplayResult:
    """Re-run ``nodes`` over a recorded log and compare what they derive with what was recorded.

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

    Returns
    -------
    ReplayResult
    """
    with gc_paused():
        return _replay(records, nodes, producer_of, start, until, snapshots or {}, lane_of, compare, progress)


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
                if r.origin >= b or type(r.event) not in takes:
                    continue
                if snap is not None and lane_of is not None:
                    lane = lane_of(n.name, r.subject)
                    if lane is not None and r.seq <= snap.positions.get(lane, 0):
                        continue
                n.feed(r.event, Pos(r.seq, r.origin))
                result.warmup += 1
                if progress is not None and i % 8192 == 0:
                    progress(i)
        for n in nodes:  # a partner of a step from ``b`` on is derived again, never taken as recorded
            n.drop_buffered(lambda _e, p: p.origin < b)

    # 2. the re-derived part: external inputs from ``b`` to ``t``; the running components' events
    runner = LogRunner(nodes)
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
    result.busy = runner.busy()
    result.derived = runner.outputs
    result.recorded = recorded

    # 3. compare, per producer, in order; report the divergence that comes first in the log
    firsts: list[Divergence] = []
    for name in running:
        derived = runner.outputs[name]
        rec = recorded[name]
        if compare is not None:
            derived = [o for o in derived if compare(o[0])]
            rec = [r for r in rec if compare(r.event)]
        last_origin = rec[-1].origin if rec else b - 1
        n_same = 0
        div: Divergence | None = None
        for i, (d, p) in enumerate(derived):
            if i >= len(rec):
                if p.origin <= last_origin:
                    div = Divergence(name, i, None, d, p.origin)
                else:
                    result.beyond[name] = len(derived) - i
                break
            if d != rec[i].event:
                div = Divergence(name, i, rec[i], d, rec[i].origin)
                break
            n_same += 1
        else:
            if len(rec) > len(derived):
                r = rec[len(derived)]
                div = Divergence(name, len(derived), r, None, r.origin)
        result.compared[name] = n_same + (div is not None)
        result.identical += n_same
        if div is not None:
            firsts.append(div)
    if firsts:
        result.divergence = min(firsts, key=lambda d: (d.origin, d.recorded.seq if d.recorded else 1 << 62))
    return result
