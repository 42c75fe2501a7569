"""The coin hunter's choice: which symbols to trade, from Bybit's linear tickers (pure).

A symbol is a **candidate** when Bybit lists it as a USDT linear perpetual that is trading
(instruments-info ``contractType = LinearPerpetual``, ``quoteCoin = USDT``, ``status = Trading``). It
**qualifies** when its 24 h turnover (``turnover24h``, USDT) is at least ``min_turnover_usdt`` and its
spread ``(ask1 − bid1) / mid`` (a fraction) at most ``max_spread``. Qualifiers are ranked by turnover
(highest first, ties by symbol); the universe is the pinned symbols Bybit trades (whatever their
figures) plus the best-ranked qualifiers, up to ``max_symbols`` in all (pinned ones count in, and are
kept even beyond it), ordered by turnover.

With the model's suggestions (``NERTZ_UNIVERSE__QWEN``, :func:`suggestions_of`), a suggested symbol
is validated by the same filters; the suggested qualifiers rank first (by turnover among themselves),
then the others by turnover, so the model picks among what qualifies and never brings in what does
not. A suggestion that fails is recorded with the filter it failed.

A change is published only when the set of symbols changes. It records the rules and every candidate
that can matter — each qualifier, each symbol of the previous universe and each pinned one — with its
figures, rank and reason, so :func:`decide_again` reproduces it from the event and the previous
universe alone (the symbols left out fail a filter or are not candidates: they cannot change the
choice; the model's answer is recorded verbatim in the change, and read again). An empty universe
is never chosen (the previous one stays: Bybit answering nothing usable is no reason to stop serving
every symbol).

No I/O, no clock: the time is Bybit's time of the answer, given by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id

PERPETUAL = "LinearPerpetual"
QUOTE = "USDT"
TRADING = "Trading"
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
MAX_SUGGESTIONS = 20
"""Most symbols read from one answer of the model."""
QWEN: ev.UniverseSource = "qwen"


@dataclass(frozen=True, slots=True)
class Rules:
    """The filters, the cap and the pinned symbols.

    Attributes
    ----------
    min_turnover_usdt : float
        Least 24 h turnover of a qualifier, USDT (default 10,000,000).
    max_spread : float
        Largest spread of a qualifier, a fraction of mid (default 0.002 = 0.2 %).
    max_symbols : int
        Most symbols in the universe (pinned ones beyond it are kept).
    pinned : tuple of str
        Symbols always in the universe while Bybit trades them as USDT perpetuals.

    Raises
    ------
    ValueError
        If ``max_symbols < 1`` or a filter is negative or not finite.
    """

    min_turnover_usdt: float = 10_000_000.0
    max_spread: float = 0.002
    max_symbols: int = 5
    pinned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_symbols < 1:
            raise ValueError(f"expected max_symbols >= 1, was {self.max_symbols}")
        for name in ("min_turnover_usdt", "max_spread"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"expected {name} >= 0, was {value}")


@dataclass(frozen=True, slots=True)
class Choice:
    """The universe chosen and every candidate with its rank and reason.

    Attributes
    ----------
    symbols : list of str
        The universe, by 24 h turnover (highest first); empty when nothing qualified.
    candidates : list of UniverseCandidate
        Every candidate seen, ranked ones first (by rank), then the others by symbol.
    """

    symbols: list[str]
    candidates: list[ev.UniverseCandidate]


def quotes(
    tickers: Iterable[Mapping[str, Any]], instruments: Iterable[Mapping[str, Any]]
) -> list[ev.UniverseCandidate]:
    """Return one unranked candidate per ticker row, with its instrument's status, contract and quote coin.

    Parameters
    ----------
    tickers : iterable of dict
        ``/v5/market/tickers?category=linear`` rows (``symbol``, ``turnover24h``, ``bid1Price``,
        ``ask1Price``: decimal strings). Figures that are missing, not numbers or not finite become None
        (a bid or ask must also be > 0); a spread needs ``0 < bid <= ask``.
    instruments : iterable of dict
        ``/v5/market/instruments-info?category=linear`` rows (``symbol``, ``status``, ``contractType``,
        ``quoteCoin``); a ticker without one gets empty ones.

    Returns
    -------
    list of UniverseCandidate
        In the tickers' order, each symbol once (the first row wins); symbols that are not 2-30 upper
        case letters and digits (dated futures such as ``BTC-26DEC25``) are left out.
    """
    specs = {str(i.get("symbol", "")): i for i in instruments}
    out: dict[str, ev.UniverseCandidate] = {}
    for row in tickers:
        symbol = str(row.get("symbol", ""))
        if symbol in out or not _SYMBOL.fullmatch(symbol):
            continue
        spec = specs.get(symbol, {})
        turnover = _number(row.get("turnover24h"))
        bid, ask = _price(row.get("bid1Price")), _price(row.get("ask1Price"))
        spread = (ask - bid) / ((ask + bid) / 2) if bid is not None and ask is not None and ask >= bid else None
        out[symbol] = ev.UniverseCandidate(
            symbol=symbol,
            turnover_24h=turnover if turnover is not None and turnover >= 0 else None,
            bid1_price=bid,
            ask1_price=ask,
            spread=spread,
            status=str(spec.get("status") or ""),
            contract_type=str(spec.get("contractType") or ""),
            quote_coin=str(spec.get("quoteCoin") or ""),
        )
    return list(out.values())


def choose(
    candidates: Iterable[ev.UniverseCandidate],
    previous: Sequence[str],
    rules: Rules,
    suggested: Mapping[str, str] | None = None,
) -> Choice:
    """Rank the candidates, pick the universe and give each candidate its reason.

    Parameters
    ----------
    candidates : iterable of UniverseCandidate
        Bybit's figures per symbol (:func:`quotes`); ranks, flags and reasons given are ignored.
    previous : sequence of str
        The universe in force; a member (or a pinned symbol) absent from ``candidates`` is added as a
        candidate without figures, which Bybit does not trade (so its reason is recorded).
    rules : Rules
    suggested : mapping of str to str, optional
        The model's suggestions, symbol → its reason (:func:`suggestions_of`): suggested qualifiers
        rank first; a suggested symbol Bybit does not list is added as a candidate without figures.

    Returns
    -------
    Choice
    """
    pinned = set(rules.pinned)
    picks = dict(suggested or {})
    seen: dict[str, ev.UniverseCandidate] = {}
    for c in candidates:
        seen.setdefault(c.symbol, c)
    for symbol in sorted({s for s in (*rules.pinned, *previous, *picks) if s not in seen}):
        seen[symbol] = ev.UniverseCandidate(symbol=symbol)  # no figures: not a trading instrument
    barred = {s: _not_tradable(c) for s, c in seen.items()}
    failed = {s: _filter_failure(c, rules) for s, c in seen.items()}
    qualifiers = sorted(
        (c for s, c in seen.items() if barred[s] is None and failed[s] is None),
        key=lambda c: (c.symbol not in picks, *_by_turnover(c)),
    )
    rank = {c.symbol: i for i, c in enumerate(qualifiers, 1)}
    kept = [s for s in dict.fromkeys(rules.pinned) if barred[s] is None]
    slots = max(rules.max_symbols - len(kept), 0)
    chosen = {*kept, *[c.symbol for c in qualifiers if c.symbol not in pinned][:slots]}

    def reason(s: str) -> str:
        if s in picks:
            return f"suggested by {QWEN} ({picks[s]}); {plain(s)}"
        return plain(s)

    def plain(s: str) -> str:
        why = barred[s]
        if why is not None:
            return f"pinned, but {why}" if s in pinned else why
        ranked = _ranked(seen[s], rank[s], rules) if s in rank else None
        if s in pinned:
            return f"pinned; {ranked or f'{failed[s]} (waived)'}"
        if ranked is None:
            return failed[s] or ""
        if s in chosen:
            return ranked
        if not kept:
            return f"rank {rank[s]} > max {rules.max_symbols}"
        return f"rank {rank[s]} > {slots} (max {rules.max_symbols}, {len(kept)} pinned)"

    def annotate(s: str, c: ev.UniverseCandidate) -> ev.UniverseCandidate:
        return msgspec.structs.replace(
            c, rank=rank.get(s), selected=s in chosen, pinned=s in pinned, reason=reason(s),
            source=QWEN if s in picks else "tickers",
        )  # fmt: skip

    annotated = [annotate(s, c) for s, c in seen.items()]
    annotated.sort(key=lambda c: (c.rank is None, c.rank or 0, c.symbol))
    symbols = [c.symbol for c in sorted((seen[s] for s in chosen), key=_by_turnover)]
    return Choice(symbols, annotated)


def change(
    choice: Choice, previous: Sequence[str], rules: Rules, ts_ns: int, *, call: ev.ModelCall | None = None
) -> ev.UniverseChanged | None:
    """Return the ``UniverseChanged`` that moves ``previous`` to ``choice``, or None.

    None when the set of symbols is the same (a new ranking alone is no change) or the choice is empty
    (the previous universe stays).

    Parameters
    ----------
    choice : Choice
        From :func:`choose` with the same ``previous`` and ``rules``.
    previous : sequence of str
        The universe in force.
    rules : Rules
    ts_ns : int
        Bybit's time of the answer the figures come from, UNIX ns: the event's ``ts_event`` and ``ts_init``.
    call : ModelCall, optional
        The model's suggestion call the choice read (recorded in the change; its source is then ``qwen``).

    Returns
    -------
    UniverseChanged or None
        Its candidates are the ones that can matter to the choice, and the model's suggestions: every
        ranked one, every symbol of ``previous``, every pinned one and every suggested one.
    """
    if not choice.symbols or set(choice.symbols) == set(previous):
        return None
    before = set(previous)
    keep = before | set(rules.pinned)
    return ev.UniverseChanged(
        event_id=derive_id("UniverseChanged", ts_ns, ",".join(choice.symbols), ",".join(sorted(before))),
        ts_event=ts_ns,
        ts_init=ts_ns,
        symbols=list(choice.symbols),
        added=[s for s in choice.symbols if s not in before],
        removed=sorted(before - set(choice.symbols)),
        candidates=[c for c in choice.candidates if c.rank is not None or c.symbol in keep or c.source == QWEN],
        min_turnover_usdt=rules.min_turnover_usdt,
        max_spread=rules.max_spread,
        max_symbols=rules.max_symbols,
        source=QWEN if call is not None else "tickers",
        call=call,
    )


def previous_of(event: ev.UniverseChanged) -> list[str]:
    """Return the universe a ``UniverseChanged`` replaced (its symbols, less the added, plus the removed)."""
    return [*(s for s in event.symbols if s not in event.added), *event.removed]


def decide_again(event: ev.UniverseChanged, previous: Sequence[str]) -> ev.UniverseChanged | None:
    """Decide a recorded change again from its own figures and rules and the universe it replaced.

    A replay of the log compares the result with ``event``: equal, field for field, when the choice
    is a function of what was recorded.

    Parameters
    ----------
    event : UniverseChanged
        The recorded change.
    previous : sequence of str
        The universe in force before it (the previous ``UniverseChanged``'s symbols, or the configured
        symbols before the first one).
    """
    rules = Rules(
        min_turnover_usdt=event.min_turnover_usdt,
        max_spread=event.max_spread,
        max_symbols=event.max_symbols,
        pinned=tuple(c.symbol for c in event.candidates if c.pinned),
    )
    figures = [
        msgspec.structs.replace(c, rank=None, selected=False, pinned=False, reason="", source="tickers")
        for c in event.candidates
    ]
    suggested = suggestions_of(event.call).symbols if event.call is not None else {}
    return change(choose(figures, previous, rules, suggested), previous, rules, event.ts_event, call=event.call)


# --- the model's suggestions --------------------------------------------------------------------


class _Pick(Struct, frozen=True, forbid_unknown_fields=False):
    symbol: Annotated[str, Meta(min_length=1, max_length=40)]
    reason: Annotated[str, Meta(max_length=300)] = ""


class _Picks(Struct, frozen=True, forbid_unknown_fields=False):
    symbols: Annotated[list[_Pick], Meta(max_length=100)]


_PICKS = msgspec.json.Decoder(_Picks)


@dataclass(frozen=True, slots=True)
class Suggestions:
    """What the model's answer suggests.

    Attributes
    ----------
    symbols : dict of str to str
        Symbol → the model's reason, in the answer's order (at most :data:`MAX_SUGGESTIONS`).
    failure : str, optional
        Why the answer suggests nothing: the call's outcome (``timeout``, ``http_429``...), ``length``,
        ``empty``, ``invalid_json`` or ``schema``; None when it was read.
    detail : str
        The failure's detail, or the entries left out (not USDT linear symbols, repeated, past the cap).
    """

    symbols: dict[str, str]
    failure: str | None = None
    detail: str = ""


def suggestions_of(call: ev.ModelCall) -> Suggestions:
    """Read the model's suggestions from its recorded answer (never raises: a bad answer suggests nothing).

    The answer is a JSON object ``{"symbols": [{"symbol": "SOLUSDT", "reason": "..."}, ...]}`` (fenced
    or wrapped in text is accepted: the outer braces are read). A symbol is upper-cased and kept when
    it is 2–30 letters and digits ending in ``USDT``; others, repeats and those past
    :data:`MAX_SUGGESTIONS` are left out and listed in ``detail``.
    """
    if call.outcome != "ok":
        detail = f"{call.outcome} {call.error_code}" if call.error_code else call.outcome
        return Suggestions({}, call.outcome, f"model call failed ({detail})")
    if call.finish_reason == "length":
        return Suggestions({}, "length", "model answer cut short (finish_reason=length)")
    text = (call.raw_text or "").strip()
    start, end = text.find("{"), text.rfind("}")
    text = text[start : end + 1] if 0 <= start < end else text
    if not text:
        return Suggestions({}, "empty", "model answered nothing")
    try:
        picks = _PICKS.decode(text)
    except msgspec.ValidationError as e:
        return Suggestions({}, "schema", f"model answer breaks the suggestion schema ({e})")
    except msgspec.DecodeError as e:
        return Suggestions({}, "invalid_json", f"model answer is not JSON ({e})")
    out: dict[str, str] = {}
    left: list[str] = []
    for p in picks.symbols:
        symbol = p.symbol.strip().upper()
        if not _SYMBOL.fullmatch(symbol) or not symbol.endswith(QUOTE) or symbol in out or len(out) >= MAX_SUGGESTIONS:
            left.append(p.symbol)
            continue
        out[symbol] = " ".join(p.reason.split())[:200] or "no reason given"
    return Suggestions(out, None, f"left out: {', '.join(left)}" if left else "")


def _by_turnover(c: ev.UniverseCandidate) -> tuple[float, str]:
    return -(c.turnover_24h or 0.0), c.symbol


def _not_tradable(c: ev.UniverseCandidate) -> str | None:
    if not c.status:
        return "not a trading instrument on Bybit (absent from instruments-info or the tickers)"
    if c.contract_type != PERPETUAL:
        return f"contract {c.contract_type or 'unknown'}, not {PERPETUAL}"
    if c.quote_coin != QUOTE:
        return f"quote {c.quote_coin or 'unknown'}, not {QUOTE}"
    if c.status != TRADING:
        return f"status {c.status}, not {TRADING}"
    return None


def _filter_failure(c: ev.UniverseCandidate, rules: Rules) -> str | None:
    if c.turnover_24h is None:
        return "no 24h turnover"
    if c.turnover_24h < rules.min_turnover_usdt:
        return f"turnover {usdt(c.turnover_24h)} < {usdt(rules.min_turnover_usdt)}"
    if c.spread is None:
        return "no valid bid/ask"
    if c.spread > rules.max_spread:
        return f"spread {percent(c.spread)} > {percent(rules.max_spread)}"
    return None


def _ranked(c: ev.UniverseCandidate, rank: int, rules: Rules) -> str:
    return (
        f"rank {rank}: turnover {usdt(c.turnover_24h or 0.0)} >= {usdt(rules.min_turnover_usdt)}, "
        f"spread {percent(c.spread or 0.0)} <= {percent(rules.max_spread)}"
    )


def usdt(x: float) -> str:
    """Format an amount of USDT shortly: ``4.1M``, ``10M``, ``4.9B``, ``950K``, ``12``."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.1f}".removesuffix(".0") + unit
    return f"{x:.0f}"


def percent(fraction: float) -> str:
    """Format a fraction as a percentage with three significant digits: ``0.002`` → ``0.2 %``."""
    return f"{fraction * 100:.3g} %"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _price(value: Any) -> float | None:
    x = _number(value)
    return x if x is not None and x > 0 else None
