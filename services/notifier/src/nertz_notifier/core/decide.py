"""What to post for an event, and the records of what happened to a post.

``decide(state, event, config) -> list[Post]`` is pure: ``state`` is the fold of the log *before*
``event`` (:mod:`nertz_notifier.core.state`); a post whose source is already on the log (posted, or
refused for good) is never proposed again. What is posted:

==========================  ===========  ==============================================================
event                       kind         post
==========================  ===========  ==============================================================
(clock crosses 00:00 UTC)   ``daily``    the previous day's statistics, before the event's own post
``PositionOpened``          ``entry``    symbol, side, qty, entry, TP, SL, leverage
``PositionReduced``         ``reduce``   a reply to the entry: what closed, its P&L, what is left
``PositionClosed``          ``exit``     a reply to the entry: reason, prices, P&L, return, R-multiple
``LockEngaged``             ``lock``     a reply to the entry, unless the reason is ``position_opened``
                                         (every entry of Nertz's own engages the lock: the entry says it)
``VenueMismatch``           ``mismatch`` adopted, halted (needs an operator) or closed
``RiskOverrideIssued``      ``override`` trigger, policy, the overrides with their expiry
``TradingStopped``          ``halt``     the operator's halt of new entries
``TradingStarted``          ``resume``   entries allowed again
``DeadLettered``            ``dead_letter`` one per service per window (the notifier's own: never)
==========================  ===========  ==============================================================

Every post ends with the disclaimer line. The daily statistics of a day are posted when the first
event of a later day on the log's clock arrives (:func:`~nertz_notifier.core.state.on_clock`), with
the round trips closed (``PositionClosed.ts_event``) that day; a day without events gets none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import Struct

from nertz_common import events as ev
from nertz_common.derive import derive
from nertz_notifier.core import render
from nertz_notifier.core.state import (
    CHANNEL,
    SERVICE,
    NotifierState,
    alerts_dead_letter,
    daily_id,
    day_label,
    day_of,
    on_clock,
)

#: LockEngaged reasons that are no news (the entry post says the symbol is locked)
ROUTINE_LOCKS = frozenset({"position_opened"})


class NotifierConfig(Struct, frozen=True, kw_only=True):
    """What the text of a post depends on.

    Attributes
    ----------
    disclaimer : str
        The last line of every post (plain text; escaped).
    dead_letter_interval_ns : int
        One dead-letter alert per producing service per this window, ns.
    """

    disclaimer: str = render.DEFAULT_DISCLAIMER
    dead_letter_interval_ns: int = 3_600_000_000_000

    def initial_state(self) -> NotifierState:
        """Return the state before any event (the fold's start)."""
        return NotifierState(dead_letter_interval_ns=self.dead_letter_interval_ns)


class Post(Struct, frozen=True, kw_only=True):
    """One message to post.

    Attributes
    ----------
    source_event_id : str
        The event it is about (``daily:<date>`` for daily statistics): its idempotence key.
    kind : str
        ``entry``, ``exit``, ``reduce``, ``daily``, ``lock``, ``mismatch``, ``override``, ``halt``,
        ``resume`` or ``dead_letter`` (a metrics label).
    text : str
        The message in Telegram's HTML parse mode, disclaimer included.
    reply_to_message_id : int or None
        The trade's entry message it answers.
    correlation_id : str or None
        The trade's intent id, when the source event has one.
    """

    source_event_id: str
    kind: str
    text: str
    reply_to_message_id: int | None = None
    correlation_id: str | None = None


def decide(state: NotifierState, event: ev.Event, config: NotifierConfig) -> list[Post]:
    """Return the posts ``event`` calls for, in posting order, given the log before it.

    Parameters
    ----------
    state : NotifierState
        The fold of the log up to (not including) ``event``.
    event : Event
    config : NotifierConfig

    Returns
    -------
    list of Post
        Empty when nothing is due or everything due is already on the log.
    """
    out: list[Post] = []
    if on_clock(event) and state.day is not None and day_of(event.ts_event) > state.day:
        day = state.day
        body = render.daily(day_label(day), list(state.closes.get(day, {}).values()))
        out.append(Post(source_event_id=daily_id(day), kind="daily", text=body))
    make = _POSTS.get(type(event))
    if make is not None:
        post = make(state, event)
        if post is not None:
            out.append(post)
    return [
        msgspec.structs.replace(p, text=render.with_disclaimer(p.text, config.disclaimer))
        for p in out
        if not state.done(p.source_event_id)
    ]


def posted(post: Post, at: ev.Event, chat_id: str, message_id: int) -> ev.NotificationPosted:
    """Return the record of ``post`` accepted by Telegram as ``message_id`` in ``chat_id``.

    Its id is derived from the post's source id, its times are ``at.ts_event`` (the event being handled:
    the source itself, or the event whose time crossed midnight for daily statistics).
    """
    record = derive(
        ev.NotificationPosted, at, post.source_event_id, scope=CHANNEL, source_event_id=post.source_event_id,
        kind=post.kind, chat_id=chat_id, message_id=message_id, reply_to_message_id=post.reply_to_message_id,
    )  # fmt: skip
    # derive() takes ``correlation_id`` as its own parameter (for Correlated types): set the field after
    return msgspec.structs.replace(record, correlation_id=post.correlation_id)


def refused(post: Post, at: ev.Event, reason: str, subject: str, raw: str) -> ev.DeadLettered:
    """Return the record of ``post`` refused by Telegram for good (``sys.dlq.notifier``).

    Its id is :func:`~nertz_notifier.core.state.refused_id` of the post's source id, so the fold knows
    the post is done; ``reason`` (cut at 500 characters) says what Telegram answered, ``subject`` and
    ``raw`` are the source event's (empty for daily statistics).
    """
    return derive(
        ev.DeadLettered, at, SERVICE, post.source_event_id, service=SERVICE,
        reason=f"telegram refused the {post.kind} post {post.source_event_id}: {reason}"[:500], subject=subject,
        raw=raw[:10_000],
    )  # fmt: skip


# --- one function per event type ------------------------------------------------------------------


def _correlated(e: ev.Correlated, kind: str, text: str, state: NotifierState, reply: bool) -> Post:
    return Post(
        source_event_id=e.event_id, kind=kind, text=text, correlation_id=e.correlation_id,
        reply_to_message_id=state.entry_message.get(e.correlation_id) if reply else None,
    )  # fmt: skip


def _on_position_opened(state: NotifierState, e: ev.PositionOpened) -> Post:
    return _correlated(e, "entry", render.entry(e, state.leverage.get(e.correlation_id)), state, reply=False)


def _on_position_reduced(state: NotifierState, e: ev.PositionReduced) -> Post:
    return _correlated(e, "reduce", render.reduce(e), state, reply=True)


def _on_position_closed(state: NotifierState, e: ev.PositionClosed) -> Post:
    r = render.r_multiple(e, state.risk.get(e.correlation_id))
    return _correlated(e, "exit", render.exit_(e, r), state, reply=True)


def _on_lock_engaged(state: NotifierState, e: ev.LockEngaged) -> Post | None:
    if e.reason in ROUTINE_LOCKS:
        return None
    return _correlated(e, "lock", render.lock(e), state, reply=True)


def _on_venue_mismatch(state: NotifierState, e: ev.VenueMismatch) -> Post:
    return _correlated(e, "mismatch", render.mismatch(e), state, reply=False)


def _on_risk_override_issued(state: NotifierState, e: ev.RiskOverrideIssued) -> Post:
    return _correlated(e, "override", render.override(e), state, reply=False)


def _on_trading_stopped(state: NotifierState, e: ev.TradingStopped) -> Post:
    return Post(source_event_id=e.event_id, kind="halt", text=render.trading_stopped(e))


def _on_trading_started(state: NotifierState, e: ev.TradingStarted) -> Post:
    return Post(source_event_id=e.event_id, kind="resume", text=render.trading_started(e))


def _on_dead_lettered(state: NotifierState, e: ev.DeadLettered) -> Post | None:
    if not alerts_dead_letter(state, e):
        return None
    w = state.dead_letters.get(e.service)
    suppressed = w.suppressed if w is not None and w.alerted_id != e.event_id else 0
    return Post(source_event_id=e.event_id, kind="dead_letter", text=render.dead_letter(e, suppressed))


_POSTS: dict[type[ev.Event], Callable[[NotifierState, Any], Post | None]] = {
    ev.PositionOpened: _on_position_opened,
    ev.PositionReduced: _on_position_reduced,
    ev.PositionClosed: _on_position_closed,
    ev.LockEngaged: _on_lock_engaged,
    ev.VenueMismatch: _on_venue_mismatch,
    ev.RiskOverrideIssued: _on_risk_override_issued,
    ev.TradingStopped: _on_trading_stopped,
    ev.TradingStarted: _on_trading_started,
    ev.DeadLettered: _on_dead_lettered,
}
