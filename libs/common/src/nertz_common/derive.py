"""The one builder of derived events' envelopes (ids, times, routing, correlation, causation).

A derived event is a function of the log: its ``event_id`` is the uuid5 of its type and key parts
(:func:`nertz_common.ids.derive_id`), its ``ts_event`` and ``ts_init`` are the ``ts_event`` of the event
being handled (the log is the clock, ARCHITECTURE.md §2), and an instrument event is routed like the
event it was derived from. From ``IntentProposed`` on, ``correlation_id`` is the intent id and
``causation_id`` the id of the event that caused it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from nertz_common import events as ev
from nertz_common.ids import derive_id

E = TypeVar("E", bound=ev.Event)


def derive(
    cls: type[E],
    at: ev.Event,
    *key: object,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    route: ev.InstrumentEvent | None = None,
    **fields: Any,
) -> E:
    """Build a derived event of type ``cls`` caused at ``at``.

    Parameters
    ----------
    cls : type[Event]
        The event type; its name is the id's kind.
    at : Event
        The event being handled: gives ``ts_event = ts_init`` (UNIX ns) and, by default, the routing
        (``symbol``, ``venue``, ``market``) and the ``causation_id``.
    *key : object
        What the id is a function of besides the type (e.g. the intent id).
    correlation_id : str, optional
        Required for :class:`~nertz_common.events.Correlated` types.
    causation_id : str, optional
        Defaults to ``at.event_id``.
    route : InstrumentEvent, optional
        Take ``symbol``/``venue``/``market`` from this event instead of ``at``.
    **fields
        The type's own fields.

    Raises
    ------
    TypeError
        If a field is missing or unknown (msgspec), or ``at`` cannot route an instrument event.
    """
    env: dict[str, Any] = {"event_id": derive_id(cls.__name__, *key), "ts_event": at.ts_event, "ts_init": at.ts_event}
    if issubclass(cls, ev.InstrumentEvent):
        r = route if route is not None else at
        if not isinstance(r, ev.InstrumentEvent):
            raise TypeError(f"expected an instrument event to route {cls.__name__}, was {type(r).__name__}")
        env["symbol"] = r.symbol
        env["venue"] = r.venue
        env["market"] = r.market
    if issubclass(cls, ev.Correlated):
        env["correlation_id"] = correlation_id
        env["causation_id"] = causation_id if causation_id is not None else at.event_id
    return cls(**env, **fields)
