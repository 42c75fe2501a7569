"""The Structural Hard Lock's transitions, written once: ``{(state, transition): state}``.

::

    FLAT ──entry submitted──> ENTRY_PENDING ──lock engaged──> LOCKED ──position closed──> COOLDOWN
      ▲                          │ entry rejected / expired                                │ released
      └──────────────────────────┴─────────────────────────────────────────────────────────┘

The executor's fold (``evolve``), the validator's memory and the api's projection all read the lock
from this table (after NautilusTrader's order state table, ``model/orders/base.pyx``): a pair that is not
in it is a transition the lock forbids. Events that do not move the lock (``VerdictAwaited``,
``SignalSuppressed``, ``RiskDenied``) have no transition.
"""

from __future__ import annotations

from typing import Final, Literal

from nertz_common import events as ev

Transition = Literal[
    "entry_submitted",
    "entry_filled",
    "entry_rejected",
    "entry_expired",
    "position_opened",
    "lock_engaged",
    "exit_submitted",
    "exit_filled",
    "exit_rejected",
    "position_closed",
    "lock_released",
    "position_adopted",
]

FLAT: Final = "FLAT"
ENTRY_PENDING: Final = "ENTRY_PENDING"
LOCKED: Final = "LOCKED"
COOLDOWN: Final = "COOLDOWN"
STATES: tuple[ev.LockState, ...] = (FLAT, ENTRY_PENDING, LOCKED, COOLDOWN)

#: gauge value of each state (metrics: 0 = FLAT .. 3 = COOLDOWN)
LEVEL: dict[str, int] = {s: i for i, s in enumerate(STATES)}

TRANSITIONS: dict[tuple[ev.LockState, Transition], ev.LockState] = {
    (FLAT, "entry_submitted"): ENTRY_PENDING,
    # reconciliation found a position opened outside Nertz and adopts it (its PositionOpened follows)
    (FLAT, "position_adopted"): ENTRY_PENDING,
    (COOLDOWN, "position_adopted"): ENTRY_PENDING,
    (ENTRY_PENDING, "entry_filled"): ENTRY_PENDING,
    (ENTRY_PENDING, "position_opened"): ENTRY_PENDING,
    (ENTRY_PENDING, "lock_engaged"): LOCKED,
    (ENTRY_PENDING, "entry_rejected"): FLAT,
    (ENTRY_PENDING, "entry_expired"): FLAT,
    (LOCKED, "exit_submitted"): LOCKED,
    (LOCKED, "exit_rejected"): LOCKED,
    (LOCKED, "exit_filled"): LOCKED,
    (LOCKED, "position_closed"): COOLDOWN,
    (COOLDOWN, "lock_released"): FLAT,
}

#: the state each transition leads to (unique per transition), for views that only need the result
TARGET: dict[Transition, ev.LockState] = {t: s for (_, t), s in TRANSITIONS.items()}

#: the transitions that change the state (the others keep it: a fill, an open position, an exit order)
MOVES: frozenset[Transition] = frozenset(t for (a, t), b in TRANSITIONS.items() if a != b)

#: states in which a verdict is suppressed (``SignalSuppressed``) instead of reaching the venue
ENGAGED: frozenset[str] = frozenset({ENTRY_PENDING, LOCKED, COOLDOWN})


def transition_of(event: ev.Event) -> Transition | None:
    """Return the lock transition an executor or venue event makes, or None if it makes none."""
    t = type(event)
    if t is ev.OrderSubmitted:
        return "exit_submitted" if event.reduce_only else "entry_submitted"  # type: ignore[attr-defined]
    if t is ev.OrderFilled:
        return "exit_filled" if event.reduce_only else "entry_filled"  # type: ignore[attr-defined]
    if t is ev.OrderRejected:
        return "exit_rejected" if event.reduce_only else "entry_rejected"  # type: ignore[attr-defined]
    if t is ev.VenueMismatch:
        return "position_adopted" if event.action == "adopted" else None  # type: ignore[attr-defined]
    return _SIMPLE.get(t)


_SIMPLE: dict[type[ev.Event], Transition] = {
    ev.EntryExpired: "entry_expired",
    ev.PositionOpened: "position_opened",
    ev.LockEngaged: "lock_engaged",
    ev.PositionClosed: "position_closed",
    ev.LockReleased: "lock_released",
}


def next_state(state: ev.LockState, event: ev.Event) -> ev.LockState | None:
    """Return the lock state after ``event``, ``state`` if the event does not move the lock, or None
    if the event is a transition the lock forbids in ``state``."""
    t = transition_of(event)
    if t is None:
        return state
    return TRANSITIONS.get((state, t))


def target_of(event: ev.Event) -> ev.LockState | None:
    """Return the state ``event`` leads to (whatever the state before), None if it moves no lock."""
    t = transition_of(event)
    return None if t is None else TARGET[t]
