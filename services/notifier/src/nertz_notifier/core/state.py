"""The notifier's state: a pure fold of the log.

``evolve(state, event) -> state`` over the notifier's inputs (``exec.*``, ``llm.override.*``, ``sys.*``,
its own ``NotificationPosted`` records among them) keeps what deciding a post needs:

- **what was posted**: the source event ids of the ``NotificationPosted`` records (and of the notifier's
  own ``DeadLettered`` records, posts Telegram refused for good), so a redelivered or re-read event is
  never posted twice: idempotence by event id, across restarts, from the log alone;
- **where each trade's entry is**: the message id of its entry post by ``correlation_id`` (the intent
  id), so exits and partial reduces are posted as replies to it;
- **what the entry said**: its leverage (the entry ``OrderSubmitted``) and its initial risk
  (``|entry − stop-loss|`` of ``PositionOpened``, USDT per unit), for the exit's R-multiple;
- **the log's clock**: the UTC day of the latest event that carries the log's time (every event but
  the ``sys.*`` ones, whose times are the wall clock of an operator or a dead letter), and each day's
  closed trades by event id, for the daily statistics posted when that clock crosses 00:00 UTC;
- **dead-letter alert windows** per producing service, so a burst of dead letters gives one alert per
  window (the count of the others goes into the next alert).

Every collection is keyed by event id or by day, so folding an event twice changes nothing a post
depends on (a redelivery after a bus outage, the read-back at start overlapping the consumer) — but
for the count of dead letters not alerted, which a redelivery of one of them raises by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from msgspec import Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id

DAY_NS = 86_400_000_000_000
#: the channel NotificationPosted names in its ``scope``
CHANNEL = "telegram"
#: the service name of the notifier's own dead letters (posts refused for good)
SERVICE = "notifier"
#: days of closed trades kept before the current one (a late close of yesterday still counts)
KEEP_DAYS = 2


class ClosedTrade(Struct, frozen=True, kw_only=True, gc=False):
    """A round trip's result, for the daily statistics.

    Attributes
    ----------
    pnl_usdt : float
        Realized P&L of the whole round trip net of every fee, USDT (``PositionClosed.trade_pnl_usdt``).
    fee_usdt : float
        Its fees and funding, USDT (``PositionClosed.trade_fee_usdt``).
    """

    pnl_usdt: float
    fee_usdt: float


class DeadLetterWindow(Struct, frozen=True, kw_only=True, gc=False):
    """One service's dead-letter alert window.

    Attributes
    ----------
    opened_ns : int
        ``ts_event`` of the dead letter that was alerted and opened the window, UNIX ns.
    alerted_id : str
        Its event id.
    suppressed : int
        Dead letters of the service since, not alerted (counted in the next alert).
    """

    opened_ns: int
    alerted_id: str
    suppressed: int = 0


class NotifierState(Struct, frozen=True, kw_only=True):
    """What the notifier knows from the log (see the module docstring). Treat as immutable.

    Attributes
    ----------
    posted : dict[str, int]
        Source event id (or ``daily:<date>``) → Telegram message id of its post.
    refused : frozenset[str]
        Event ids of the notifier's ``DeadLettered`` records (:func:`refused_id` of a source id).
    entry_message : dict[str, int]
        Correlation id (intent id) → message id of the trade's entry post.
    leverage : dict[str, float]
        Correlation id → leverage of the entry order (x), while the trade is open.
    risk : dict[str, float]
        Correlation id → ``|entry_price − stop_loss|`` at entry (USDT per unit of base), while open.
    day : int or None
        UTC day (``ts_event // DAY_NS``) of the latest event on the log's clock; None before any.
    closes : dict[int, dict[str, ClosedTrade]]
        UTC day → ``PositionClosed`` event id → its round trip's result (the last :data:`KEEP_DAYS`
        days before ``day``, and ``day``).
    dead_letters : dict[str, DeadLetterWindow]
        Producing service → its alert window.
    dead_letter_interval_ns : int
        Length of a dead-letter alert window, ns (configuration the fold needs).
    """

    posted: dict[str, int] = {}
    refused: frozenset[str] = frozenset()
    entry_message: dict[str, int] = {}
    leverage: dict[str, float] = {}
    risk: dict[str, float] = {}
    day: int | None = None
    closes: dict[int, dict[str, ClosedTrade]] = {}
    dead_letters: dict[str, DeadLetterWindow] = {}
    dead_letter_interval_ns: int = 3_600_000_000_000

    def done(self, source_id: str) -> bool:
        """True when the post of ``source_id`` is on the log: posted, or refused for good."""
        return source_id in self.posted or refused_id(source_id) in self.refused


def refused_id(source_id: str) -> str:
    """Return the event id of the notifier's ``DeadLettered`` record for the post of ``source_id``."""
    return derive_id(ev.DeadLettered.__name__, SERVICE, source_id)


def day_label(day: int) -> str:
    """Return UTC day ``day`` (days since 1970-01-01) as ``2025-05-30``."""
    return str(dt.date(1970, 1, 1) + dt.timedelta(days=day))


def daily_id(day: int) -> str:
    """Return the source id of the daily statistics of UTC day ``day`` (``daily:2025-05-30``)."""
    return f"daily:{day_label(day)}"


def day_of(ts_ns: int) -> int:
    """Return the UTC day (days since 1970-01-01) of ``ts_ns`` (UNIX ns)."""
    return ts_ns // DAY_NS


def on_clock(event: ev.Event) -> bool:
    """True when ``event``'s time is the log's clock (every event but the ``sys.*`` ones)."""
    return not isinstance(event, ev.SystemEvent)


def alerts_dead_letter(state: NotifierState, e: ev.DeadLettered) -> bool:
    """True when ``e`` opens a new alert window of its service (the notifier's own never do)."""
    if e.service == SERVICE:
        return False
    w = state.dead_letters.get(e.service)
    return w is None or w.alerted_id == e.event_id or e.ts_event >= w.opened_ns + state.dead_letter_interval_ns


# --- evolve ---------------------------------------------------------------------------------------


def evolve(state: NotifierState, event: ev.Event) -> NotifierState:
    """Fold one event of the notifier's view of the log into ``state`` and return the new state.

    Parameters
    ----------
    state : NotifierState
    event : Event
        Any event; those the notifier does not track only move the clock (when :func:`on_clock`).

    Returns
    -------
    NotifierState
        A new state (``state`` is not changed), or ``state`` itself when nothing changed.
    """
    if on_clock(event):
        day = day_of(event.ts_event)
        if state.day is None or day > state.day:
            keep = {d: c for d, c in state.closes.items() if d >= day - KEEP_DAYS}
            state = msgspec.structs.replace(state, day=day, closes=keep)
    fold_one = _FOLDS.get(type(event))
    return fold_one(state, event) if fold_one is not None else state


def fold(state: NotifierState, events: Iterable[ev.Event]) -> NotifierState:
    """Fold ``events`` in order with :func:`evolve`."""
    for e in events:
        state = evolve(state, e)
    return state


def _on_notification_posted(state: NotifierState, e: ev.NotificationPosted) -> NotifierState:
    if e.scope != CHANNEL or state.posted.get(e.source_event_id) == e.message_id:
        return state
    entries = state.entry_message
    if e.kind == "entry" and e.correlation_id is not None:
        entries = {**entries, e.correlation_id: e.message_id}
    return msgspec.structs.replace(
        state, posted={**state.posted, e.source_event_id: e.message_id}, entry_message=entries
    )


def _on_dead_lettered(state: NotifierState, e: ev.DeadLettered) -> NotifierState:
    if e.service == SERVICE:
        return (
            state
            if e.event_id in state.refused
            else msgspec.structs.replace(state, refused=state.refused | {e.event_id})
        )
    w = state.dead_letters.get(e.service)
    if w is not None and w.alerted_id == e.event_id:
        return state  # the alerted one again (a redelivery)
    if w is None or alerts_dead_letter(state, e):
        w = DeadLetterWindow(opened_ns=e.ts_event, alerted_id=e.event_id)
    else:
        w = msgspec.structs.replace(w, suppressed=w.suppressed + 1)
    return msgspec.structs.replace(state, dead_letters={**state.dead_letters, e.service: w})


def _on_order_submitted(state: NotifierState, e: ev.OrderSubmitted) -> NotifierState:
    if e.reduce_only or e.leverage is None:
        return state
    return msgspec.structs.replace(state, leverage={**state.leverage, e.correlation_id: e.leverage})


def _on_position_opened(state: NotifierState, e: ev.PositionOpened) -> NotifierState:
    return msgspec.structs.replace(state, risk={**state.risk, e.correlation_id: abs(e.entry_price - e.stop_loss)})


def _on_position_closed(state: NotifierState, e: ev.PositionClosed) -> NotifierState:
    day = day_of(e.ts_event)
    trades = {
        **state.closes.get(day, {}),
        e.event_id: ClosedTrade(pnl_usdt=e.trade_pnl_usdt, fee_usdt=e.trade_fee_usdt),
    }
    cid = e.correlation_id
    return msgspec.structs.replace(
        state,
        closes={**state.closes, day: trades},
        leverage={k: v for k, v in state.leverage.items() if k != cid},
        risk={k: v for k, v in state.risk.items() if k != cid},
    )


_FOLDS: dict[type[ev.Event], Callable[[NotifierState, Any], NotifierState]] = {
    ev.NotificationPosted: _on_notification_posted,
    ev.DeadLettered: _on_dead_lettered,
    ev.OrderSubmitted: _on_order_submitted,
    ev.PositionOpened: _on_position_opened,
    ev.PositionClosed: _on_position_closed,
}
