"""Restart from the log (docs/decisions.md D3), as a pure function of the executor's own output.

The executor works in steps, one per market message; every event a step publishes carries the
``Nertz-Input-Seq`` header (the market message's stream sequence). Given that output in log order,
``S`` is the highest input sequence: the state is the fold of every step before ``S``, and step ``S``
may be unfinished, so it is redone from that state without re-publishing the events already stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nertz_executor.core.lock import ExecutorState, Folded, fold


@dataclass(frozen=True, slots=True)
class Recovery:
    """Where a restart resumes.

    Attributes
    ----------
    input_seq : int or None
        ``S``, the stream sequence of the last market message that produced events; None for an empty
        history (nothing to recover).
    before : ExecutorState
        The fold of the events of every step before ``S``.
    step_events : tuple[Event, ...]
        The events of step ``S`` already stored, in log order.
    known_ids : frozenset[str]
        Their ids: when step ``S`` is redone, events with these ids are folded but not re-published.
    """

    input_seq: int | None
    before: ExecutorState
    step_events: tuple[Folded, ...]
    known_ids: frozenset[str]

    def after(self) -> ExecutorState:
        """Return the state after step ``S`` (when its market message was already acknowledged)."""
        return fold(self.before, self.step_events)


def recover(initial: ExecutorState, history: Iterable[tuple[int, Folded]]) -> Recovery:
    """Plan a restart from the executor's past output.

    Parameters
    ----------
    initial : ExecutorState
        The state before any event (:func:`~nertz_executor.core.lock.initial_state`).
    history : iterable of (int, Event)
        ``(input sequence, event)`` of every ``exec.*``/``venue.*`` event the executor published, in
        log order. An event id seen twice is folded once.

    Returns
    -------
    Recovery

    Raises
    ------
    LockViolation
        If the history is not a valid sequence of lock transitions.
    """
    items: list[tuple[int, Folded]] = []
    seen: set[str] = set()
    for seq, event in history:
        if event.event_id not in seen:
            seen.add(event.event_id)
            items.append((seq, event))
    if not items:
        return Recovery(None, initial, (), frozenset())
    last = max(seq for seq, _ in items)
    before = fold(initial, (e for seq, e in items if seq < last))
    step = tuple(e for seq, e in items if seq == last)
    return Recovery(last, before, step, frozenset(e.event_id for e in step))
