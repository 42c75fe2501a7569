"""The one module that builds and parses subjects (ARCHITECTURE.md §2).

Instrument events: ``<domain>.<kind>.<venue>.<market>.<symbol>`` (five tokens), e.g.
``md.book.bybit.linear.BTCUSDT``. In the ``venue`` domain the venue token is the venue that traded
(``venue_name``: ``paper`` or ``bybit``), so ``venue.fill.paper.linear.BTCUSDT`` is the paper
simulation's (an executor output) and ``venue.fill.bybit.linear.BTCUSDT`` is what Bybit reported (an
executor input). Service-wide events: ``<domain>.<kind>.<scope>``, e.g.
``sys.control.all`` or ``sys.dlq.signal``. No other module formats a subject.

Raw exchange frames (the recorder's optional copy, ARCHITECTURE.md §1) are not events and live in
their own short-retention stream ``RAW``: ``raw.<venue>.<market>.<exchange topic>``, e.g.
``raw.bybit.linear.orderbook.200.BTCUSDT`` (the topic's own dots become subject tokens). The ``NERTZ``
stream never binds ``raw.>``.
"""

from __future__ import annotations

from typing import NamedTuple

from nertz_common import events as ev

STREAM = "NERTZ"
DOMAINS = ("md", "sig", "llm", "exec", "venue", "sys")

RAW_STREAM = "RAW"
"""The stream of raw exchange frames (short retention; not part of the log of record)."""
RAW_DOMAIN = "raw"
RAW_NO_TOPIC = "none"
"""Topic token of a raw frame without a usable topic (acks, pongs, invalid JSON)."""

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
    ev.WeightsAdapted: ("sig", "weights"),
    ev.VerdictIssued: ("llm", "verdict"),
    ev.ShadowVerdictIssued: ("llm", "shadow"),
    ev.RiskOverrideIssued: ("llm", "override"),
    ev.NewsAssessed: ("llm", "news"),
    ev.VerdictAwaited: ("exec", "awaited"),
    ev.SignalSuppressed: ("exec", "suppressed"),
    ev.RiskDenied: ("exec", "suppressed"),
    ev.OrderSubmitted: ("exec", "order"),
    ev.OrderRejected: ("exec", "order"),
    ev.EntryExpired: ("exec", "order"),
    # a moved stop is an instruction to the venue: its adapter (``exec.order.>``) sends it
    ev.StopMoved: ("exec", "order"),
    ev.PositionOpened: ("exec", "position"),
    ev.PositionReduced: ("exec", "position"),
    ev.PositionClosed: ("exec", "position"),
    ev.LockEngaged: ("exec", "lock"),
    ev.LockReleased: ("exec", "lock"),
    ev.VenueMismatch: ("exec", "reconcile"),
    ev.OrderFilled: ("venue", "fill"),
    ev.OrderAccepted: ("venue", "order"),
    ev.OrderRefused: ("venue", "order"),
    ev.OrderCanceled: ("venue", "order"),
    ev.PositionSnapshot: ("venue", "position"),
    ev.FundingSettled: ("venue", "funding"),
    ev.WalletSnapshot: ("venue", "wallet"),
    ev.TradingStarted: ("sys", "control"),
    ev.TradingStopped: ("sys", "control"),
    ev.DeadLettered: ("sys", "dlq"),
    ev.ConfigChanged: ("sys", "config"),
    ev.ManualTradeRequested: ("sys", "manual"),
    ev.NotificationPosted: ("sys", "notify"),
    ev.UniverseChanged: ("sys", "universe"),
    ev.NewsRequested: ("sys", "news"),
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
    if t is ev.ShadowVerdictIssued:
        key: tuple[object, ...] = (t, event.shadow)  # type: ignore[attr-defined]
    elif isinstance(event, ev.InstrumentEvent):
        key = (t, _venue_token(event), event.market, event.symbol)
    elif isinstance(event, ev.DeadLettered):
        key = (t, event.service)
    elif isinstance(event, ev.WalletSnapshot):
        key = (t, event.venue_name)
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
    if isinstance(event, ev.ShadowVerdictIssued):  # llm.shadow.<name>: one subject per shadow
        return service(domain, kind, event.shadow)
    if isinstance(event, ev.InstrumentEvent):
        return instrument(domain, kind, _venue_token(event), event.market, event.symbol)
    if isinstance(event, ev.DeadLettered):
        return service(domain, kind, event.service)
    if isinstance(event, ev.WalletSnapshot):
        return service(domain, kind, event.venue_name)
    assert isinstance(event, ev.SystemEvent)
    return service(domain, kind, event.scope)


def _venue_token(event: ev.InstrumentEvent) -> str:
    """The venue token of an instrument subject: the trading venue in the ``venue`` domain."""
    name = getattr(event, "venue_name", None)
    return name if name is not None and ROUTES[type(event)][0] == "venue" else event.venue


def venue_filters(venue_name: str) -> tuple[str, str]:
    """Return the filters of one trading venue's reports: its instrument reports
    (``venue.*.bybit.>``) and its account reports (``venue.wallet.bybit``)."""
    _check_token(venue_name)
    return f"venue.*.{venue_name}.>", f"venue.wallet.{venue_name}"


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


# --- raw exchange frames (stream RAW) -----------------------------------------------------------


def raw(venue: str, market: str, topic: str) -> str:
    """Build the subject of a raw exchange frame, ``raw.<venue>.<market>.<topic>``.

    Parameters
    ----------
    venue, market : str
        E.g. ``bybit``, ``linear``.
    topic : str
        The exchange topic, e.g. ``orderbook.200.BTCUSDT``; each dot-separated part becomes a token.
        Use :data:`RAW_NO_TOPIC` for frames without one.

    Raises
    ------
    ValueError
        If a token is empty or contains ``*``, ``>`` or whitespace.
    """
    key = (venue, market, topic)
    subject = _RAW_SUBJECTS.get(key)
    if subject is None:
        for t in (venue, market, *topic.split(".")):
            _check_token(t)
        subject = f"{RAW_DOMAIN}.{venue}.{market}.{topic}"
        if len(_RAW_SUBJECTS) < _SUBJECTS_MAX:
            _RAW_SUBJECTS[key] = subject
    return subject


_RAW_SUBJECTS: dict[tuple[str, str, str], str] = {}


def parse_raw(subject: str) -> tuple[str, str, str]:
    """Return ``(venue, market, topic)`` of a subject built by :func:`raw`.

    Raises
    ------
    ValueError
        If ``subject`` is not ``raw.<venue>.<market>.<topic...>``.
    """
    tokens = subject.split(".")
    if len(tokens) < 4 or tokens[0] != RAW_DOMAIN:
        raise ValueError(f"expected raw.<venue>.<market>.<topic>, was {subject!r}")
    return tokens[1], tokens[2], ".".join(tokens[3:])


def raw_filter(venue: str | None = None, market: str | None = None) -> str:
    """Return a wildcard over raw frames: all (``raw.>``), one venue, or one venue and market.

    Raises
    ------
    ValueError
        If ``market`` is given without ``venue``, or a token is invalid.
    """
    if venue is None:
        if market is not None:
            raise ValueError("expected a venue with the market")
        return f"{RAW_DOMAIN}.>"
    _check_token(venue)
    if market is None:
        return f"{RAW_DOMAIN}.{venue}.>"
    _check_token(market)
    return f"{RAW_DOMAIN}.{venue}.{market}.>"


def raw_stream_subjects() -> list[str]:
    """Return the subjects the ``RAW`` stream binds (every raw frame, ``raw.>``)."""
    return [raw_filter()]
