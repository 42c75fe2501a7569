"""Components and the node that runs one: handler registry, the declared join, snapshots.

A **component** is a service's decisions as a pure object (ARCHITECTURE.md §3 "The kernel"; after
NautilusTrader's actors and eventsourcing's applications). It declares

- ``name``: the component's name (its snapshot key, the producer of its outputs);
- ``inputs``: the event types it handles in log order (its *driver* inputs);
- ``joins``: partner event types it waits for, each keyed by one of its attributes
  (``Join(FactorSnapshot, "bar_id")``: "wait, in log order, for the snapshot of this bar");

and defines one handler ``on_<snake_case_type>(event) -> list[Event]`` for every input and partner
type. Handlers never read a clock (``now`` is the input's ``ts_event``) and never do I/O. A handler
that needs a partner sets ``self.awaiting = (PartnerType, key)``; the node then holds later driver
inputs (in order) and calls the partner's handler when that partner arrives, whatever came first.
So a component's output is a function of its inputs' *content*, not of how two producers' messages
happened to interleave on the log: this is what lets the executor meet signal and the validator
deterministically, and what lets the same component run live on JetStream, in a replay and in a
backtest.

State is a value: ``get_state()`` returns a msgspec ``Struct`` of type ``state_type`` and
``set_state`` puts one back. A :class:`Node` adds what it buffered (partners not yet awaited), which
makes a :class:`NodeState`; a snapshot is that plus the log position it covers
(:mod:`nertz_common.node.snapshot`).
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
    """

    partner: type[ev.Event]
    key: str
    horizon_ns: int = HOUR_NS


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

    Subclasses set ``name``, ``inputs``, ``joins`` and ``state_type`` and define the handlers.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[type[ev.Event], ...]] = ()
    joins: ClassVar[tuple[Join, ...]] = ()
    state_type: ClassVar[type[msgspec.Struct]]

    #: the partner this component waits for, ``(type, key)``; set and cleared by its handlers
    awaiting: tuple[type[ev.Event], str] | None = None

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


class Node:
    """Run one component: dispatch by type, hold driver inputs while a join waits, buffer partners.

    Pure and synchronous; both runners (JetStream and the in-memory log) feed it.

    Parameters
    ----------
    component : Component
    max_held : int
        Most driver inputs held while waiting, and most partners buffered; beyond that the join can
        evidently not be met and :class:`~nertz_common.errors.InvariantViolation` is raised.

    Raises
    ------
    BuildError
        If the component is incomplete (see :func:`build_handlers`).
    """

    __slots__ = (
        "_buffer",
        "_dropped_keys",
        "_handlers",
        "_joins",
        "_keys",
        "_last_driver_ns",
        "_max_held",
        "_prune_at",
        "_queue",
        "_step",
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
        self._buffer: dict[tuple[type[ev.Event], str], tuple[ev.Event, Pos]] = {}
        self._queue: deque[tuple[ev.Event, Pos]] = deque()
        self._step = Pos(0, 0)
        self._last_driver_ns = 0
        self._max_held = max_held
        self._prune_at = 1024
        self._dropped_keys: deque[tuple[type[ev.Event], str]] = deque(maxlen=10_000)
        self.dropped = 0

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
    def awaiting(self) -> tuple[type[ev.Event], str] | None:
        """The partner the component waits for, or None."""
        return self.component.awaiting

    @property
    def idle(self) -> bool:
        """True between steps: nothing awaited and no driver input held."""
        return self.component.awaiting is None and not self._queue

    @property
    def held(self) -> int:
        """Driver inputs held while a join waits."""
        return len(self._queue)

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

        A driver input is handled now, or held (in order) while a join waits. A partner is handled if
        it is the awaited one (and the held inputs after it), else buffered by key.

        Raises
        ------
        KeyError
            If the node does not take this event type.
        InvariantViolation
            If more than ``max_held`` inputs would be held, or an awaited partner was dropped as a
            leftover earlier; or whatever a handler raises.
        """
        t = type(event)
        c = self.component
        key_of = self._keys.get(t)
        if key_of is None and c.awaiting is None and not self._queue:
            # the hot path (most inputs of every component): a driver input, nothing awaited
            self._step = pos
            self._last_driver_ns = event.ts_event
            res = self._handlers[t](event)
            out: list[Output] = [(e, pos) for e in res] if res else []
            if c.awaiting is not None:
                self._resolve(out)
            return out
        out = []
        if key_of is not None:
            key = key_of(event)
            aw = c.awaiting
            if aw is not None and aw[0] is t and aw[1] == key:
                step = self._step
                res = self._handlers[t](event)
                if res:
                    out = [(e, step) for e in res]
                if c.awaiting is not None:
                    self._resolve(out)
                if self._queue:
                    self._drain(out)
                return out
            self._buffer[(t, key)] = (event, pos)
            if len(self._buffer) >= self._prune_at:
                self._prune()
            return out
        if c.awaiting is not None or self._queue:
            if len(self._queue) >= self._max_held:
                raise InvariantViolation(
                    f"{self.name}: expected the join for {_show(c.awaiting)} to be met, it holds "
                    f"{len(self._queue)} inputs (the partner's producer is stuck or its key is wrong)"
                )
            self._queue.append((event, pos))
            return out
        self._run_step(event, pos, out)
        return out

    def _run_step(self, event: ev.Event, pos: Pos, out: list[Output]) -> None:
        self._step = pos
        self._last_driver_ns = event.ts_event
        self._handle(event, pos, out)
        self._resolve(out)

    def _handle(self, event: ev.Event, pos: Pos, out: list[Output]) -> None:
        for e in self._handlers[type(event)](event):
            out.append((e, pos))

    def _resolve(self, out: list[Output]) -> None:
        c = self.component
        while c.awaiting is not None:
            hit = self._buffer.pop(c.awaiting, None)
            if hit is None:
                if c.awaiting in self._dropped_keys:
                    raise InvariantViolation(
                        f"{self.name}: awaits {_show(c.awaiting)}, which was dropped earlier as a leftover "
                        f"older than its join's horizon"
                    )
                return
            self._handle(hit[0], self._step, out)

    def _drain(self, out: list[Output]) -> None:
        c = self.component
        q = self._queue
        while c.awaiting is None and q:
            e, p = q.popleft()
            self._run_step(e, p, out)

    def _prune(self) -> None:
        now = self._last_driver_ns
        for k, (e, _) in list(self._buffer.items()):
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
            If the node is mid-step (a join waits or inputs are held): only whole steps are state.
        """
        if not self.idle:
            raise InvariantViolation(f"{self.name}: a snapshot is taken between steps, not while {self._why()}")
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
        self._queue.clear()
        self._buffer = {}
        for b in state.buffered:
            t = type(b.event)
            self._buffer[(t, self._keys[t](b.event))] = (b.event, Pos(b.seq, b.origin))

    def _why(self) -> str:
        aw = self.component.awaiting
        return f"awaiting {_show(aw)} with {len(self._queue)} inputs held" if aw else f"{len(self._queue)} held"


_ENC = msgspec.msgpack.Encoder()


def _show(aw: tuple[type[ev.Event], str] | None) -> str:
    return "nothing" if aw is None else f"{aw[0].__name__}[{aw[1]}]"
