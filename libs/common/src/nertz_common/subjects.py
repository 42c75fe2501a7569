"""The one module that builds and parses subjects (ARCHITECTURE.md §2).

Instrument events: ``<domain>.<kind>.<venue>.<market>.<symbol>`` (five tokens), e.g.
``md.book.bybit.linear.BTCUSDT``. Service-wide events: ``<domain>.<kind>.<scope>``, e.g.
``sys.control.all`` or ``sys.dlq.signal``. No other module formats a subject.
"""

from __future__ import annotations

from typing import NamedTuple

from nertz_common import events as ev

STREAM = "NERTZ"
DOMAINS = ("md", "sig", "llm", "exec", "venue", "sys")

#: event type -> (domain, kind)
ROUTES: dict[type[ev.Event], tuple[str, str]] = {
    ev.Bar: ("md", "bar"),
    ev.BookSnapshot: ("md", "book"),
    ev.TradeBatch: ("md", "trade"),
    ev.Ticker: ("md", "ticker"),
    ev.InstrumentSpec: ("md", "instrument"),
    ev.FeedGap: ("md", "status"),
    ev.FeedResynced: ("md", "status"),
    ev.FeedStale: ("md", "status"),
    ev.FactorSnapshot: ("sig", "factor"),
    ev.IntentProposed: ("sig", "intent"),
    ev.VerdictIssued: ("llm", "verdict"),
    ev.VerdictAwaited: ("exec", "awaited"),
    ev.SignalSuppressed: ("exec", "suppressed"),
    ev.RiskDenied: ("exec", "suppressed"),
    ev.OrderSubmitted: ("exec", "order"),
    ev.OrderRejected: ("exec", "order"),
    ev.EntryExpired: ("exec", "order"),
    ev.PositionOpened: ("exec", "position"),
    ev.PositionClosed: ("exec", "position"),
    ev.LockEngaged: ("exec", "lock"),
    ev.LockReleased: ("exec", "lock"),
    ev.OrderFilled: ("venue", "fill"),
    ev.TradingStarted: ("sys", "control"),
    ev.TradingStopped: ("sys", "control"),
    ev.DeadLettered: ("sys", "dlq"),
}
assert set(ROUTES) == set(ev.ALL_EVENT_TYPES), "every event type needs a route"


class Subject(NamedTuple):
    """A parsed subject. ``venue``/``market``/``symbol`` are empty for service-wide subjects."""

    domain: str
    kind: str
    venue: str = ""
    market: str = ""
    symbol: str = ""
    scope: str = ""


def instrument(domain: str, kind: str, venue: str, market: str, symbol: str) -> str:
    """Build a five-token instrument subject.

    Raises
    ------
    ValueError
        If a token is empty or contains ``.``, ``*``, ``>`` or whitespace.
    """
    tokens = (domain, kind, venue, market, symbol)
    for t in tokens:
        _check_token(t)
    return ".".join(tokens)


def service(domain: str, kind: str, scope: str) -> str:
    """Build a three-token service-wide subject, e.g. ``sys.dlq.signal``."""
    for t in (domain, kind, scope):
        _check_token(t)
    return f"{domain}.{kind}.{scope}"


def for_event(event: ev.Event) -> str:
    """Return the subject an event is published on.

    Raises
    ------
    KeyError
        If the event type has no route.
    """
    # cached: the subject is a function of the type and a few tokens (on the hot path of every publish)
    t = type(event)
    if isinstance(event, ev.InstrumentEvent):
        key: tuple[object, ...] = (t, event.venue, event.market, event.symbol)
    elif isinstance(event, ev.DeadLettered):
        key = (t, event.service)
    else:
        key = (t, getattr(event, "scope", None))
    subject = _SUBJECTS.get(key)
    if subject is None:
        subject = _subject_of(event)
        if len(_SUBJECTS) < _SUBJECTS_MAX:
            _SUBJECTS[key] = subject
    return subject


_SUBJECTS: dict[tuple[object, ...], str] = {}
_SUBJECTS_MAX = 100_000


def _subject_of(event: ev.Event) -> str:
    domain, kind = ROUTES[type(event)]
    if isinstance(event, ev.InstrumentEvent):
        return instrument(domain, kind, event.venue, event.market, event.symbol)
    if isinstance(event, ev.DeadLettered):
        return service(domain, kind, event.service)
    assert isinstance(event, ev.SystemEvent)
    return service(domain, kind, event.scope)


def dead_letter(service_name: str) -> str:
    """Return the dead-letter subject of a service, ``sys.dlq.<service>``."""
    return service("sys", "dlq", service_name)


def parse(subject: str) -> Subject:
    """Parse a subject built by this module.

    Raises
    ------
    ValueError
        If the subject has neither three nor five tokens or an unknown domain.
    """
    tokens = subject.split(".")
    if not tokens or tokens[0] not in DOMAINS:
        raise ValueError(f"expected a subject in one of {DOMAINS}, was {subject!r}")
    if len(tokens) == 5:
        return Subject(*tokens)
    if len(tokens) == 3:
        return Subject(tokens[0], tokens[1], scope=tokens[2])
    raise ValueError(f"expected 3 or 5 tokens, was {len(tokens)} in {subject!r}")


def filter_of(domain: str, kind: str | None = None) -> str:
    """Return a wildcard filter over a domain (``md.>``) or one kind (``md.bar.>``)."""
    _check_token(domain)
    if kind is None:
        return f"{domain}.>"
    _check_token(kind)
    return f"{domain}.{kind}.>"


def stream_subjects() -> list[str]:
    """Return the subjects the ``NERTZ`` stream binds (one per domain)."""
    return [filter_of(d) for d in DOMAINS]


_FORBIDDEN = frozenset(".*> \t\r\n")


def _check_token(token: str) -> None:
    if not token or not _FORBIDDEN.isdisjoint(token):
        raise ValueError(f"expected a non-empty subject token without . * > or spaces, was {token!r}")
