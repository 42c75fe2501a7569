"""Components and the node that runs one: handler registry, scoped steps, joins, calls, snapshots.

A **component** is a service's decisions as a pure object (ARCHITECTURE.md §3 "The kernel"; after
NautilusTrader's actors and eventsourcing's applications). It declares

- ``name``: the component's name (its snapshot key, the producer of its outputs);
- ``inputs``: the event types it handles in log order (its *driver* inputs);
- ``joins``: partner event types it waits for, each keyed by one of its attributes
  (``Join(FactorSnapshot, "bar_id")``: "wait, in log order, for the snapshot of this bar");
- ``scope``: optionally, the attribute of its inputs that names independent lines of work
  (``"symbol"``);

and defines one handler ``on_<snake_case_type>(event) -> list[Event]`` for every input and partner
type. Handlers never read a clock (``now`` is the input's ``ts_event``) and never do I/O.

**Steps and waits.** Handling one driver input is a *step*. A handler that needs a partner sets
``self.awaiting = (PartnerType, key)``; a handler that needs an outside party (a model, an exchange)
calls :meth:`Component.ask` with a :class:`Call`. The step then waits: the node holds the later
driver inputs *of the same scope*, in order, and resumes the step with the partner's handler when that
partner arrives (whatever came first), or with :meth:`Component.on_answer` when the runner brings the
call's answer. Inputs of other scopes go on meanwhile, so one symbol waiting for its model verdict
never holds another symbol's market data. A driver input without a scope (an operator command for
every symbol) is a barrier: it runs when no scope is mid-step, and everything after it waits for it.

So a component's output is a function of its inputs' *content* and of the driver order, not of how
other producers' messages happened to interleave with it. Two refinements keep that true when steps of
different scopes overlap:

- a join declared ``ordered=True`` resumes a step only when no other scope has unfinished work from an
  earlier position: such steps complete in log order (the executor's entry decisions, which read the
  account every symbol shares);
- a component that reads state shared across scopes at such a step reads it *as of the step's
  position* (:attr:`Component.position` tells it where it is).

State is a value: ``get_state()`` returns a msgspec ``Struct`` of type ``state_type`` and
``set_state`` puts one back. A :class:`Node` adds what it buffered (partners not yet awaited), which
makes a :class:`NodeState`; a snapshot is that plus the log position it covers
(:mod:`nertz_common.node.snapshot`). Only a node with no step in progress has a state.

**Calls** are the one way an outside party enters a decision. The answer is part of the component's
output (a verdict carries the model's raw answer), and :meth:`Component.recorded` finds it again in
that output, so a restart or a replay serves the recorded answer by the call's key instead of asking
again (ARCHITECTURE.md §3 "Recorded external facts").
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

import msgspec

from nertz_common import events as ev
from nertz_common.errors import InvariantViolation

HOUR_NS = 3_600_000_000_000

Handler = Callable[[Any], list[ev.Event]]

#: the scope of a driver input without one (a barrier)
BARRIER = "*"

#: the position of "no unfinished work" (after every real position)
NOTHING_UNFINISHED = 1 << 62


class BuildError(TypeError):
    """A component that cannot be built: a declared input without its handler, a bad join."""


class Join(NamedTuple):
    """A declared partner: events of type ``partner`` are delivered when awaited by ``key``.

    Attributes
    ----------
    partner : type[Event]
        The partner's event type (e.g. ``FactorSnapshot``).
    key : str
        The partner's attribute the wait is keyed by (``bar_id``, ``correlation_id``).
    horizon_ns : int
        A buffered partner whose ``ts_event`` is older than the newest driver input by more than
        this is a leftover nobody will wait for and is dropped (event time, ns; default 1 h).
    ordered : bool
        Resume the waiting step only once no other scope has unfinished work from an earlier
        position (steps that read shared state complete in log order).
    """

    partner: type[ev.Event]
    key: str
    horizon_ns: int = HOUR_NS
    ordered: bool = False


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """A question a step asks an outside party (subclass it per kind of question).

    Attributes
    ----------
    key : str
        Unique and derived from the inputs (e.g. the intent id): the recorded answer is found by it.
    """

    key: str


class Pos(NamedTuple):
    """Where an input sits in the log: its position (stream sequence) and its origin.

    The origin is the position of the external input (market data, an operator command) whose
    handling, through every service, led to this event; for an external input it is its own position.
    Outputs of a step carry the position and origin of the step's driver input.
    """

    seq: int
    origin: int


Output = tuple[ev.Event, Pos]
"""An output event and the position of the driver input of the step that produced it."""


def handler_name(cls: type) -> str:
    """Return the handler name of an event type: ``FactorSnapshot`` → ``on_factor_snapshot``."""
    return "on_" + _CAMEL.sub("_", cls.__name__).lower()


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class Component:
    """Base of every component (see the module docstring).

    Subclasses set ``name``, ``inputs``, ``joins``, ``state_type`` and optionally ``scope``, and define
    the handlers (``on_answer`` too if they :meth:`ask`).
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[type[ev.Event], ...]] = ()
    joins: ClassVar[tuple[Join, ...]] = ()
    state_type: ClassVar[type[msgspec.Struct]]
    #: attribute of the inputs naming independent lines of work (None: one line for everything)
    scope: ClassVar[str | None] = None

    #: what the current handler waits for next, ``(type, key)``; the node takes it after the handler
    awaiting: tuple[type, str] | None = None
    #: the call the current handler asked (set by :meth:`ask`)
    asked: Call | None = None
    #: the position of the driver input of the step being handled (set by the node)
    position: int = 0

    def unfinished(self) -> int:
        """The earliest position of a step in progress (the current one included) or of an input held.

        Set by the node. A component that reads state shared across scopes uses it to know which steps
        ran ahead of an earlier one: a step at ``position`` with ``unfinished() < position`` runs ahead.
        """
        return self.position

    def scope_of(self, event: ev.Event) -> str | None:
        """Return the scope of an input (None: a barrier); by default its ``scope`` attribute."""
        return getattr(event, self.scope, None) if self.scope else ""

    def ask(self, call: Call) -> None:
        """Make the current step wait for the answer to ``call`` (see :meth:`on_answer`)."""
        self.awaiting = (Call, call.key)
        self.asked = call

    def on_answer(self, call: Call, answer: Any) -> list[ev.Event]:
        """Resume the step that asked ``call`` with the outside party's ``answer``."""
        raise NotImplementedError(f"{type(self).__name__} asked {type(call).__name__} without an on_answer")

    def recorded(self, event: ev.Event) -> Iterable[tuple[str, Any]]:
        """Return the ``(call key, answer)`` pairs recorded in one of this component's outputs."""
        return ()

    def same_question(self, call: Call, answer: Any) -> bool:
        """True when a recorded ``answer`` answers exactly ``call`` (same model, same prompt, ...)."""
        return True

    def get_state(self) -> msgspec.Struct:
        """Return the component's whole state as a value of ``state_type``."""
        raise NotImplementedError

    def set_state(self, state: Any) -> None:
        """Put back a state returned by :meth:`get_state` (possibly decoded from a snapshot)."""
        raise NotImplementedError


class Buffered(msgspec.Struct, frozen=True):
    """A partner the node holds until it is awaited, with its position."""

    event: ev.AnyEvent
    seq: int
    origin: int


class NodeState(msgspec.Struct, frozen=True):
    """A node's state between steps: its component's state (encoded) and the partners it holds."""

    component: str
    state: msgspec.Raw
    buffered: list[Buffered] = []


def build_handlers(component: Component) -> dict[type[ev.Event], Handler]:
    """Return ``{event type: bound handler}`` for every declared input and join partner.

    Raises
    ------
    BuildError
        If the component has no name, a declared type has no ``on_<snake_case>`` handler, a type is
        both an input and a partner, or two joins name the same partner.
    """
    cls = type(component)
    if not cls.name:
        raise BuildError(f"expected {cls.__name__}.name to be set")
    partners = [j.partner for j in cls.joins]
    problems: list[str] = []
    if len(set(partners)) != len(partners):
        problems.append(f"a partner type is joined twice: {[p.__name__ for p in partners]}")
    both = set(partners) & set(cls.inputs)
    if both:
        problems.append(f"types both input and partner: {sorted(t.__name__ for t in both)}")
    handlers: dict[type[ev.Event], Handler] = {}
    for t in (*cls.inputs, *partners):
        fn = getattr(component, handler_name(t), None)
        if not callable(fn):
            problems.append(f"{handler_name(t)} for {t.__name__}")
            continue
        handlers[t] = fn
    if problems:
        raise BuildError(f"component {cls.name!r} ({cls.__name__}) is missing: " + "; ".join(problems))
    return handlers


_EMPTY_QUEUE: deque[tuple[ev.Event, Pos]] = deque(maxlen=0)


class _Scope:
    """One scope's step in progress: what it waits for, from which step, and the inputs it holds."""

    __slots__ = ("awaiting", "call", "queue", "ready", "step", "ts")

    def __init__(self, step: Pos, ts: int) -> None:
        self.awaiting: tuple[type, str] | None = None
        self.step = step
        self.ts = ts  # ts_event of the step's driver input: the scope's own time
        self.call: Call | None = None
        self.queue: deque[tuple[ev.Event, Pos]] = _EMPTY_QUEUE  # a real deque once an input is held
        self.ready: ev.Event | None = None  # an ordered partner that arrived before its turn

    def first(self) -> int:
        """The earliest position this scope has not finished."""
        if self.awaiting is not None:
            return self.step.seq
        return self.queue[0][1].seq if self.queue else NOTHING_UNFINISHED


class Node:
    """Run one component: dispatch by type, scoped waits for partners and answers, buffered partners.

    Pure and synchronous; both runners (JetStream and the in-memory log) feed it. A runner feeds
    inputs with :meth:`feed`, takes the calls steps asked from :attr:`asked` and brings each answer
    with :meth:`answer`.

    Parameters
    ----------
    component : Component
    max_held : int
        Most driver inputs held while steps wait, and most partners buffered; beyond that a wait can
        evidently not be met and :class:`~nertz_common.errors.InvariantViolation` is raised.

    Raises
    ------
    BuildError
        If the component is incomplete (see :func:`build_handlers`).
    """

    __slots__ = (
        "_barrier",
        "_buffer",
        "_busy",
        "_dropped_keys",
        "_handlers",
        "_held",
        "_joins",
        "_keys",
        "_last_driver_ns",
        "_max_held",
        "_ordered",
        "_prune_at",
        "_ready",
        "_releasing",
        "_scope_of",
        "_scopes",
        "_step",
        "_waits",
        "asked",
        "component",
        "dropped",
        "name",
    )

    def __init__(self, component: Component, *, max_held: int = 200_000) -> None:
        self.component = component
        self.name = type(component).name
        self._handlers = build_handlers(component)
        self._joins = {j.partner: j for j in type(component).joins}
        self._keys = {j.partner: attrgetter(j.key) for j in type(component).joins}
        self._ordered = frozenset(j.partner for j in type(component).joins if j.ordered)
        self._scope_of: Callable[[ev.Event], str | None] | None = (
            component.scope_of if type(component).scope is not None else None
        )
        self._buffer: dict[tuple[type[ev.Event], str], tuple[ev.Event, Pos]] = {}
        self._scopes: dict[str, _Scope] = {}
        self._waits: dict[tuple[type, str], str] = {}
        self._barrier: deque[tuple[ev.Event, Pos]] = deque()
        self._busy = False
        self._releasing = False
        self._ready = 0
        self._held = 0
        self._step = Pos(0, 0)
        self._last_driver_ns = 0
        self._max_held = max_held
        self._prune_at = 1024
        self._dropped_keys: deque[tuple[type[ev.Event], str]] = deque(maxlen=10_000)
        self.dropped = 0
        #: calls asked by steps, with their step's position, for the runner to take
        self.asked: list[tuple[Call, Pos]] = []
        component.unfinished = self._unfinished  # type: ignore[method-assign]

    # --- what the runners ask --------------------------------------------------------------------

    @property
    def inputs(self) -> frozenset[type[ev.Event]]:
        """Every type this node takes: driver inputs and join partners."""
        return frozenset(self._handlers)

    @property
    def drivers(self) -> frozenset[type[ev.Event]]:
        """The driver input types (handled in log order)."""
        return frozenset(type(self.component).inputs)

    @property
    def partners(self) -> frozenset[type[ev.Event]]:
        """The join partner types (delivered when awaited)."""
        return frozenset(self._joins)

    @property
    def awaiting(self) -> tuple[type, str] | None:
        """What the earliest step in progress waits for (None when no step waits)."""
        waiting = [sc for sc in self._scopes.values() if sc.awaiting is not None]
        if not waiting:
            return None
        return min(waiting, key=lambda sc: sc.step.seq).awaiting

    @property
    def waits(self) -> dict[str, tuple[type, str]]:
        """Per scope, what its step in progress waits for."""
        return {s: sc.awaiting for s, sc in self._scopes.items() if sc.awaiting is not None}

    def wanted(self) -> frozenset[type[ev.Event]]:
        """Partner types some step waits for and that are not buffered (what a runner should read)."""
        sc, buf = self._scopes, self._buffer
        return frozenset(
            aw[0] for aw, s in self._waits.items() if aw[0] is not Call and aw not in buf and sc[s].ready is None
        )

    def pending_from(self) -> int:
        """The earliest position of a driver input not yet handled (a step waiting, an input held);
        :data:`NOTHING_UNFINISHED` when idle. Inputs before it are done with."""
        if not self._busy:
            return NOTHING_UNFINISHED
        first = min((sc.first() for sc in self._scopes.values()), default=NOTHING_UNFINISHED)
        if self._barrier:
            first = min(first, self._barrier[0][1].seq)
        return first

    @property
    def idle(self) -> bool:
        """True between steps: no step waits, no input held, no call unanswered."""
        return not self._busy

    @property
    def held(self) -> int:
        """Driver inputs held while steps wait."""
        return self._held

    @property
    def buffered(self) -> int:
        """Partners held until awaited."""
        return len(self._buffer)

    @property
    def step(self) -> Pos:
        """The position of the driver input of the current (or last) step."""
        return self._step

    # --- feeding ---------------------------------------------------------------------------------

    def feed(self, event: ev.Event, pos: Pos) -> list[Output]:
        """Take one input at ``pos``; return the outputs it made possible, each with its step's position.

        A driver input is handled now, or held (in order) while a step of its scope waits. A partner
        resumes the step that awaits it (then that scope's held inputs run), else it is buffered.

        Raises
        ------
        KeyError
            If the node does not take this event type.
        InvariantViolation
            If more than ``max_held`` inputs would be held, or an awaited partner was dropped as a
            leftover earlier; or whatever a handler raises.
        """
        t = type(event)
        key_of = self._keys.get(t)
        if key_of is None and not self._busy:
            # the hot path (most inputs of every component): a driver input, no step in progress
            c = self.component
            self._step = pos
            c.position = pos.seq
            self._last_driver_ns = event.ts_event
            res = self._handlers[t](event)
            out: list[Output] = [(e, pos) for e in res] if res else []
            aw = c.awaiting
            if aw is not None:
                # nothing else is in progress: a partner already buffered meets the wait at once
                buf = self._buffer
                while aw is not None and aw[0] is not Call and aw in buf:
                    hit = buf.pop(aw)  # type: ignore[call-overload]
                    c.awaiting = None
                    for e in self._handlers[type(hit[0])](hit[0]):
                        out.append((e, pos))
                    aw = c.awaiting
                if aw is not None:
                    self._began(self._scope_key(event), pos, out)
            return out
        out = []
        if key_of is not None:
            self._partner(t, key_of(event), event, pos, out)
            return out
        s = self._scope_key(event)
        if self._barrier or s == BARRIER:
            if s == BARRIER and not self._barrier and not self._scopes:
                self._run(s, event, pos, out)
                return out
            self._hold(self._barrier, event, pos)
            return out
        sc = self._scopes.get(s)
        if sc is not None:
            if sc.queue is _EMPTY_QUEUE:
                sc.queue = deque()
            self._hold(sc.queue, event, pos)
            return out
        self._run(s, event, pos, out)
        return out

    def answer(self, key: str, answer: Any) -> list[Output]:
        """Resume the step that asked the call ``key`` with its answer; return the outputs.

        Raises
        ------
        KeyError
            If no step waits for an answer to ``key``.
        """
        s = self._waits.pop((Call, key))
        sc = self._scopes[s]
        call = sc.call
        assert call is not None
        sc.awaiting = sc.call = None
        out: list[Output] = []
        c = self.component
        self._step = sc.step
        c.position = sc.step.seq
        for e in c.on_answer(call, answer):
            out.append((e, sc.step))
        self._continue(s, sc, out)
        return out

    # --- internals -------------------------------------------------------------------------------

    def _scope_key(self, event: ev.Event) -> str:
        so = self._scope_of
        if so is None:
            return ""
        s = so(event)
        return BARRIER if s is None else s

    def _hold(self, q: deque[tuple[ev.Event, Pos]], event: ev.Event, pos: Pos) -> None:
        if self._held >= self._max_held:
            raise InvariantViolation(
                f"{self.name}: expected the join for {self._waits_text()} to be met, it holds {self._held} "
                f"inputs (a partner's producer is stuck or its key is wrong)"
            )
        q.append((event, pos))
        self._held += 1

    def _run(self, s: str, event: ev.Event, pos: Pos, out: list[Output]) -> None:
        """Handle one driver input of scope ``s`` (which has no step in progress)."""
        c = self.component
        self._step = pos
        c.position = pos.seq
        self._last_driver_ns = event.ts_event
        for e in self._handlers[type(event)](event):
            out.append((e, pos))
        if c.awaiting is not None:
            self._began(s, pos, out)

    def _began(self, s: str, pos: Pos, out: list[Output]) -> None:
        """The step at ``pos`` of scope ``s`` waits: give the scope its state and carry on."""
        sc = self._scopes[s] = _Scope(pos, self._last_driver_ns)
        self._busy = True
        self._continue(s, sc, out)

    def _continue(self, s: str, sc: _Scope, out: list[Output]) -> None:
        """Carry scope ``s`` on after one of its handlers ran, until it waits or has nothing left.

        The handler may have asked for a partner (met at once when buffered) or a call; with no wait
        the step is done and the scope's held inputs run, in order. Whenever a scope moves on, ordered
        partners held for their turn and the barrier may go on (:meth:`_release`).
        """
        self._advance(s, sc, out)
        if self._ready or s not in self._scopes:
            self._release(out)

    def _advance(self, s: str, sc: _Scope, out: list[Output]) -> None:
        c = self.component
        while True:
            aw = c.awaiting
            if aw is not None:
                c.awaiting = None
                sc.awaiting = aw
                self._waits[aw] = s
                if aw[0] is Call:
                    call = c.asked
                    c.asked = None
                    if call is None:
                        raise InvariantViolation(f"{self.name}: a step awaits a call without asking one (ask())")
                    sc.call = call
                    self.asked.append((call, sc.step))
                    return
                hit = self._buffer.pop(aw, None)  # type: ignore[arg-type]
                if hit is None:
                    if aw in self._dropped_keys:
                        raise InvariantViolation(
                            f"{self.name}: awaits {_show(aw)}, which was dropped earlier as a leftover older "
                            f"than its join's horizon"
                        )
                    return
                if aw[0] in self._ordered and self._earlier_work(s, sc.step.seq):
                    sc.ready = hit[0]
                    self._ready += 1
                    return
                del self._waits[aw]
                sc.awaiting = None
                self._step = sc.step
                c.position = sc.step.seq
                for e in self._handlers[type(hit[0])](hit[0]):
                    out.append((e, sc.step))
                continue
            if sc.queue:
                e0, p = sc.queue.popleft()
                self._held -= 1
                sc.step = self._step = p
                c.position = p.seq
                self._last_driver_ns = sc.ts = e0.ts_event
                for e in self._handlers[type(e0)](e0):
                    out.append((e, p))
                continue
            del self._scopes[s]
            return

    def _partner(self, t: type[ev.Event], key: str, event: ev.Event, pos: Pos, out: list[Output]) -> None:
        s = self._waits.get((t, key))
        if s is None:
            self._buffer[(t, key)] = (event, pos)
            if len(self._buffer) >= self._prune_at:
                self._prune()
            return
        sc = self._scopes[s]
        if t in self._ordered and self._earlier_work(s, sc.step.seq):
            sc.ready = event  # resumed when every earlier step is done (see _release)
            self._ready += 1
            return
        self._resume(s, sc, event, out)

    def _resume(self, s: str, sc: _Scope, event: ev.Event, out: list[Output]) -> None:
        assert sc.awaiting is not None
        del self._waits[sc.awaiting]
        sc.awaiting = None
        if sc.ready is not None:
            sc.ready = None
            self._ready -= 1
        c = self.component
        step = self._step = sc.step
        c.position = step.seq
        for e in self._handlers[type(event)](event):
            out.append((e, step))
        if c.awaiting is None and not sc.queue:  # the step is done and the scope holds nothing: it ends
            del self._scopes[s]
            if self._ready or self._barrier:
                self._release(out)
            elif not self._releasing:
                self._busy = bool(self._scopes)
            return
        self._continue(s, sc, out)

    def _release(self, out: list[Output]) -> None:
        """A scope ended: resume ordered partners whose turn came, run the barrier when nothing waits."""
        if not self._ready and not self._barrier:
            if not self._releasing:
                self._busy = bool(self._scopes)
            return
        if self._releasing:
            return  # the outer call loops until nothing changes
        self._releasing = True
        try:
            while True:
                ready = [(sc.step.seq, s) for s, sc in self._scopes.items() if sc.ready is not None]
                if ready:
                    seq, s = min(ready)
                    if not self._earlier_work(s, seq):
                        sc = self._scopes[s]
                        partner = sc.ready
                        assert partner is not None
                        self._resume(s, sc, partner, out)
                        continue
                if self._barrier and not self._scopes:
                    self._drain_barrier(out)
                    continue
                break
        finally:
            self._releasing = False
        self._busy = bool(self._scopes or self._barrier)

    def _drain_barrier(self, out: list[Output]) -> None:
        q = self._barrier
        while q:
            e, p = q[0]
            s = self._scope_key(e)
            if s == BARRIER and self._scopes:
                return  # the next barrier waits for every step in progress
            q.popleft()
            self._held -= 1
            sc = self._scopes.get(s)
            if sc is not None:
                if sc.queue is _EMPTY_QUEUE:
                    sc.queue = deque()
                sc.queue.append((e, p))
                self._held += 1
            else:
                self._run(s, e, p, out)

    def _unfinished(self) -> int:
        first = min((sc.first() for sc in self._scopes.values()), default=self._step.seq)
        first = min(first, self._step.seq)
        if self._barrier:
            first = min(first, self._barrier[0][1].seq)
        return first

    def _earlier_work(self, s: str, seq: int) -> bool:
        """True when a scope other than ``s``, or the barrier queue, has unfinished work before ``seq``."""
        for other, sc in self._scopes.items():
            if other != s and sc.first() < seq:
                return True
        return bool(self._barrier) and self._barrier[0][1].seq < seq

    def _prune(self) -> None:
        # a partner is a leftover once its own scope has gone past it by the horizon: a scope held back
        # by a slow wait (its time is its step's) keeps its partners, however far the others have gone
        newest = self._last_driver_ns
        scopes = self._scopes
        scoped = self._scope_of is not None and bool(scopes)
        for k, (e, _) in list(self._buffer.items()):
            sc = scopes.get(self._scope_key(e)) if scoped else None
            now = sc.ts if sc is not None else newest
            if e.ts_event < now - self._joins[k[0]].horizon_ns:
                del self._buffer[k]
                self._dropped_keys.append(k)
                self.dropped += 1
        # amortised O(1): the next prune waits until the buffer has doubled
        self._prune_at = max(1024, 2 * len(self._buffer))
        if len(self._buffer) >= self._max_held:
            raise InvariantViolation(
                f"{self.name}: expected at most {self._max_held} partners waiting for their join, "
                f"holds {len(self._buffer)} within the horizon"
            )

    def drop_buffered(self, keep: Callable[[ev.Event, Pos], bool]) -> int:
        """Drop buffered partners for which ``keep(event, pos)`` is false; return how many."""
        gone = [k for k, (e, p) in self._buffer.items() if not keep(e, p)]
        for k in gone:
            del self._buffer[k]
        return len(gone)

    def buffered_events(self) -> Iterable[tuple[ev.Event, Pos]]:
        """The partners held until awaited, in arrival order."""
        return list(self._buffer.values())

    # --- state ------------------------------------------------------------------------------------

    def get_state(self) -> NodeState:
        """Return the node's state between steps (component state + buffered partners).

        Raises
        ------
        InvariantViolation
            If a step is in progress (a wait, a held input, an unanswered call): only whole steps
            are state.
        """
        if self._busy:
            raise InvariantViolation(f"{self.name}: a snapshot is taken between steps, not while {self.why()}")
        raw = msgspec.Raw(_ENC.encode(self.component.get_state()))
        buf = [Buffered(e, p.seq, p.origin) for e, p in self._buffer.values()]  # type: ignore[arg-type]
        return NodeState(self.name, raw, buf)

    def set_state(self, state: NodeState) -> None:
        """Restore a state from :meth:`get_state` (after a restart, or to start a replay mid-log).

        Raises
        ------
        InvariantViolation
            If the state belongs to another component.
        msgspec.ValidationError
            If the component state does not decode as its ``state_type``.
        """
        if state.component != self.name:
            raise InvariantViolation(f"expected a state of {self.name!r}, was of {state.component!r}")
        decoded = msgspec.msgpack.decode(bytes(state.state), type=type(self.component).state_type)
        self.component.set_state(decoded)
        self.component.awaiting = None
        self.component.asked = None
        self._scopes = {}
        self._waits = {}
        self._barrier.clear()
        self._busy = False
        self._held = 0
        self._ready = 0
        self.asked = []
        self._buffer = {}
        for b in state.buffered:
            t = type(b.event)
            self._buffer[(t, self._keys[t](b.event))] = (b.event, Pos(b.seq, b.origin))

    def _waits_text(self) -> str:
        return ", ".join(f"{_show(aw)}" + (f" ({s})" if s else "") for s, aw in self.waits.items()) or "nothing"

    def why(self) -> str:
        """What the node waits for, in words (for logs and errors)."""
        return f"awaiting {self._waits_text()} with {self._held} inputs held"


_ENC = msgspec.msgpack.Encoder()


def _show(aw: tuple[type, str] | None) -> str:
    return "nothing" if aw is None else f"{aw[0].__name__}[{aw[1]}]"
