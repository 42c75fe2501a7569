"""The news analyst: Qwen, searching the web, asked for a symbol's news of the last days; a kernel component.

``news-analyst`` runs beside the validator in the llm-validator process, on its own JetStream lane and
with its own snapshots (docs/decisions.md D25). Its clock is the closed bars (``md.bar``) in log order
and its steps are scoped by symbol, so one symbol's search never holds another's:

- **on a schedule**: the first closed bar of a symbol in a new slot of ``refresh_h`` hours of event time
  (``ts_event // refresh``, 6 h by default) asks. A symbol's first bar (nothing to compare its slot with)
  and backfilled bars (``Bar.warmup``) only set the slot: what is asked is a function of the log, not of
  where the analyst started reading it;
- **on demand**: a ``NewsRequested`` (``sys.news.<symbol>``, from ``POST /news/{symbol}``) asks at once.

Each question is an :class:`~nertz_validator.core.component.Ask` with ``enable_search`` (DashScope's web
search) and the ``news.v1`` prompt: the symbol, its coin and the window ``[as_of − window_days, as_of]``,
``as_of`` being the event time of the step. The answer — the model's raw text, model id, prompt hash,
latency and tokens (a :class:`~nertz_common.events.ModelCall`) — is recorded in the
:class:`~nertz_common.events.NewsAssessed` it becomes, beside the parsed impact (−2..+2), key events
(date, title, impact, critical) and summary (:func:`assessment_of`). Anything else — a failed call, text
that is not JSON, a broken schema, an impact out of range, a date that is no date — is a
``NewsAssessed`` with ``failure`` set and no content: its readers do nothing with it (fail closed: no
veto invented, no position closed) and the symbol's previous news stays in force.

A web search answers about *now*, whatever the question's date: asked about a bar of the past (a first
start over a long log, a catch-up, a replayed recording) it would date today's news back. So the live
analyst's outside party answers a question more than ``max_lag_s`` older than the wall clock with a
``stale`` outcome without asking (:func:`nertz_validator.adapters.qwen.fresh_only`): a ``NewsAssessed``
with ``failure="stale"``, recorded like any answer.

Call keys are ``news:<symbol>:<slot start ns>`` and ``news:<symbol>:request:<request id>``;
:meth:`NewsAnalyst.recorded` finds each answer in its ``NewsAssessed`` again, so a restart or a replay
serves it back instead of searching again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, NamedTuple

import msgspec
from msgspec import Meta, Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Call, Component
from nertz_validator.core import prompt
from nertz_validator.core.answer import unfence
from nertz_validator.core.component import Ask, same_ask

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
MAX_EVENTS = 20

Impact = Annotated[float, Meta(ge=-2.0, le=2.0)]
#: the outcome of a question its outside party did not search: it was about the past (see ``fresh_only``)
STALE = "stale"


@dataclass(frozen=True, slots=True)
class NewsPolicy:
    """How the news analyst asks.

    Attributes
    ----------
    model : str
        Pinned model id with web search (``qwen3-max``: the international region's).
    prompt : str
        Template id (``news.v1``).
    refresh_h : float
        Schedule slot, hours of event time (6).
    window_days : int
        Days of news asked for, up to the step's time (7).
    json_mode : bool
        Ask for a JSON object (``response_format``) too; off by default, the prompt asks for it.
    forced_search : bool
        ``search_options={"forced_search": true}``: search every time, not when the model thinks it needs to.
    """

    model: str = "qwen3-max"
    prompt: str = "news.v1"
    refresh_h: float = 6.0
    window_days: int = 7
    json_mode: bool = False
    forced_search: bool = True

    def check(self) -> None:
        """Raise ValueError if the template does not exist or a bound is broken."""
        prompt.template(self.prompt)
        if not self.refresh_h > 0:
            raise ValueError(f"expected refresh_h > 0, was {self.refresh_h}")
        if self.window_days < 1:
            raise ValueError(f"expected window_days >= 1, was {self.window_days}")


class NewsState(msgspec.Struct):
    """The analyst's state between steps: per symbol, the schedule slot of its latest closed bar."""

    slots: dict[str, int] = {}


def news_key(symbol: str, *, slot_ns: int | None = None, request_id: str | None = None) -> str:
    """The key of a news call: ``news:<symbol>:<slot start ns>`` or ``news:<symbol>:request:<request id>``."""
    if request_id is not None:
        return f"news:{symbol}:request:{request_id}"
    return f"news:{symbol}:{slot_ns}"


def key_of(e: ev.NewsAssessed) -> str:
    """The call key a ``NewsAssessed`` answered (see :func:`news_key`)."""
    return news_key(e.symbol, slot_ns=e.slot_ns, request_id=e.request_id)


def coin_of(symbol: str) -> str:
    """The coin a linear symbol trades: ``BTCUSDT`` → ``BTC`` (``1000PEPEUSDT`` → ``1000PEPE``)."""
    for quote in ("USDT", "USDC", "PERP", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return symbol


def iso(ts_ns: int) -> str:
    """``ts_ns`` (UNIX ns) as ``YYYY-MM-DDTHH:MMZ``."""
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def news_doc(symbol: str, as_of_ns: int, window_days: int) -> dict[str, Any]:
    """The user document of a news prompt: the symbol, its coin and the window of news asked for."""
    return {
        "task": "news",
        "symbol": symbol,
        "coin": coin_of(symbol),
        "from": iso(as_of_ns - window_days * DAY_NS),
        "as_of": iso(as_of_ns),
        "window_days": window_days,
    }


# --- what the answer means ----------------------------------------------------------------------


class _EventAnswer(Struct, frozen=True, forbid_unknown_fields=False):
    date: Annotated[str, Meta(min_length=1, max_length=40)]
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    impact: Impact
    critical: bool = False


class _NewsAnswer(Struct, frozen=True, forbid_unknown_fields=False):
    impact: Impact
    key_events: Annotated[list[_EventAnswer], Meta(max_length=MAX_EVENTS)] = []
    summary: Annotated[str, Meta(max_length=2000)] = ""


_ANSWER = msgspec.json.Decoder(_NewsAnswer)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Assessment(NamedTuple):
    """What an answer says: its content, or the failure (code and detail) that makes it say nothing."""

    impact: float = 0.0
    key_events: tuple[ev.NewsItem, ...] = ()
    summary: str = ""
    failure: str | None = None
    detail: str = ""


def event_time(date: str, as_of_ns: int) -> int:
    """Return the time a key event's date stands for, UNIX ns, at most ``as_of_ns``.

    A date alone (``2025-06-01``) stands for the end of that day (UTC): the latest it may have happened,
    so an event is never taken as older than it may be. A time without an offset is UTC. A later time
    than ``as_of_ns`` (a scheduled event, or a wrong date) is ``as_of_ns``.

    Raises
    ------
    ValueError
        If ``date`` is not an ISO 8601 date or date and time.
    """
    s = date.strip()
    if _DATE_ONLY.fullmatch(s):
        day = datetime.fromisoformat(s).replace(tzinfo=UTC)
        ns = (day + timedelta(days=1) - _EPOCH) // timedelta(microseconds=1) * 1000 - 1
    else:
        t = datetime.fromisoformat(s.replace(" ", "T", 1))
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t
        ns = (t - _EPOCH) // timedelta(microseconds=1) * 1000
    return max(0, min(ns, as_of_ns))


def assessment_of(call: ev.ModelCall, as_of_ns: int) -> Assessment:
    """Return what the model's answer to a news call says (see the module docstring for the failures).

    Parameters
    ----------
    call : ModelCall
        The recorded call.
    as_of_ns : int
        The event time the news was asked at, UNIX ns (the key events' dates are clamped to it).
    """
    if call.outcome == STALE:
        return Assessment(
            failure=STALE, detail=f"not searched: {call.error_message or 'the question is about the past'}"
        )
    if call.outcome != "ok":
        detail = f"{call.outcome} {call.error_code}" if call.error_code else call.outcome
        return Assessment(failure=call.outcome, detail=f"model call failed ({detail})")
    if call.finish_reason == "length":
        return Assessment(failure="length", detail="model answer cut short (finish_reason=length)")
    text = _json_part(call.raw_text or "")
    if not text:
        return Assessment(failure="empty", detail="model answered nothing")
    try:
        a = _ANSWER.decode(text)
    except msgspec.ValidationError as e:
        return Assessment(failure="schema", detail=f"model answer breaks the news schema ({e})")
    except msgspec.DecodeError as e:
        return Assessment(failure="invalid_json", detail=f"model answer is not JSON ({e})")
    items = []
    for i, k in enumerate(a.key_events):
        try:
            ts = event_time(k.date, as_of_ns)
        except ValueError:
            return Assessment(failure="schema", detail=f"key_events[{i}].date: expected a date, was {k.date!r}")
        items.append(ev.NewsItem(date=k.date, ts_ns=ts, title=k.title, impact=k.impact, critical=k.critical))
    return Assessment(a.impact, tuple(items), a.summary)


def _json_part(text: str) -> str:
    """The JSON object of an answer without JSON mode: unfenced, and cut to its outer braces."""
    text = unfence(text.strip())
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


# --- the component ------------------------------------------------------------------------------


class NewsAnalyst(Component):
    """Ask Qwen with web search for each symbol's news, on a schedule and on demand (see the module docstring).

    Parameters
    ----------
    policy : NewsPolicy

    Raises
    ------
    ValueError
        If the policy's template does not exist or a bound is broken.
    """

    name: ClassVar[str] = "news-analyst"
    scope: ClassVar[str | None] = "symbol"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (ev.Bar, ev.NewsRequested)
    state_type: ClassVar[type[msgspec.Struct]] = NewsState

    def __init__(self, policy: NewsPolicy | None = None) -> None:
        self.policy = policy or NewsPolicy()
        self.policy.check()
        self.refresh_ns = int(self.policy.refresh_h * HOUR_NS)
        self.slots: dict[str, int] = {}
        self._asking: dict[str, ev.Bar | ev.NewsRequested] = {}

    def scope_of(self, event: ev.Event) -> str | None:
        """The symbol of a bar or of a request (a request for ``all`` is a barrier, and asks nothing)."""
        if isinstance(event, ev.NewsRequested):
            return None if event.scope == "all" else event.scope
        return getattr(event, "symbol", None)

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        """Ask at the symbol's first closed bar of a new schedule slot (see the module docstring)."""
        if not bar.closed:
            return []
        slot = bar.ts_event // self.refresh_ns
        prev = self.slots.get(bar.symbol)
        if prev is not None and slot <= prev:
            return []
        self.slots[bar.symbol] = slot
        if prev is None or bar.warmup:
            return []
        self._ask(bar, bar.symbol, news_key(bar.symbol, slot_ns=slot * self.refresh_ns))
        return []

    def on_news_requested(self, e: ev.NewsRequested) -> list[ev.Event]:
        """An operator asked for the symbol's news now."""
        if e.scope == "all":
            return []
        self._ask(e, e.scope, news_key(e.scope, request_id=e.event_id))
        return []

    def _ask(self, at: ev.Bar | ev.NewsRequested, symbol: str, key: str) -> None:
        p = self.policy
        r = prompt.render(p.prompt, news_doc(symbol, at.ts_event, p.window_days))
        self._asking[symbol] = at
        self.ask(
            Ask(key=key, role="news", symbol=symbol, model=p.model, prompt_id=r.prompt_id, prompt_sha256=r.sha256,
                messages=list(r.messages), json_mode=p.json_mode, enable_search=True,
                search_options={"forced_search": True} if p.forced_search else None, as_of_ns=at.ts_event)
        )  # fmt: skip

    def on_answer(self, call: Call, answer: Any) -> list[ev.Event]:
        """Resume with the model's answer (a :class:`~nertz_common.events.ModelCall`): one ``NewsAssessed``."""
        assert isinstance(call, Ask) and isinstance(answer, ev.ModelCall)
        at = self._asking.pop(call.symbol)
        a = assessment_of(answer, at.ts_event)
        if isinstance(at, ev.Bar):
            route: dict[str, Any] = dict(venue=at.venue, market=at.market, trigger="schedule",
                                         slot_ns=(at.ts_event // self.refresh_ns) * self.refresh_ns)  # fmt: skip
        else:
            route = dict(trigger="request", request_id=at.event_id)
        return [
            ev.NewsAssessed(
                event_id=derive_id("NewsAssessed", call.key), ts_event=at.ts_event, ts_init=at.ts_event,
                symbol=call.symbol, **route, window_days=self.policy.window_days, impact=a.impact,
                key_events=list(a.key_events), summary=a.summary, failure=a.failure, failure_detail=a.detail,
                call=answer,
            )
        ]  # fmt: skip

    # --- the kernel's hooks -----------------------------------------------------------------------

    def recorded(self, event: ev.Event) -> list[tuple[str, Any]]:
        """The model call recorded in a ``NewsAssessed``, by its key."""
        if isinstance(event, ev.NewsAssessed) and event.call is not None:
            return [(key_of(event), event.call)]
        return []

    def same_question(self, call: Call, answer: Any) -> bool:
        """A recorded answer answers ``call`` when the model and the prompt (its hash) are the same."""
        return same_ask(call, answer)

    def get_state(self) -> NewsState:
        """Return the schedule slots (between steps nothing else is held)."""
        return NewsState(dict(self.slots))

    def set_state(self, state: NewsState) -> None:
        """Put back a state from :meth:`get_state`."""
        self.slots = dict(state.slots)
        self._asking = {}
