"""``nertz watch``: a live terminal view of the log, per symbol (ARCHITECTURE.md §7).

Three layers, the first two pure:

- :class:`WatchState` folds log events (``apply``), one handler per event type: the price, the factor
  scores and the combined score against its entry threshold, the trend, the Hard Lock's state and since
  when, the last verdict with its reasons, the open position with its unrealized P&L and R-multiple, the
  realized P&L, the trading switches and a ticker of suppressed signals, risk denials, overrides and
  operator commands. No clock: "now" is the latest event time seen.
- :func:`render` turns a state into a rich renderable that lays itself out for the width it is given:
  every column from 120 columns; the factor columns from 90 (the reasons under the verdict, no TP/SL);
  trend, R-multiple and realized P&L from 70; below, the symbol, price, score, lock, verdict, position
  and unrealized P&L. Free text (reasons, the ticker) is cut first, numbers and symbols never.
- :func:`run` reads the ``NERTZ`` stream with ephemeral ordered consumers (never a durable one, so the
  services' consumers are not touched): first the last event of every watched subject before the start
  (the lock, position and switches that outlive the window), then the log from the start on, following
  it live, and draws the state with ``rich.live.Live`` a few times a second.

Conventions: prices in USDT, quantities in base currency, times are event times (UNIX ns, shown in UTC).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec
from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nertz_common import events as ev
from nertz_common import lock, subjects

if TYPE_CHECKING:
    from nertz_signal.core.config import SignalConfig

#: how many ticker entries are kept and shown
TICKER_SIZE = 8
#: terminal widths (columns) from which the narrow, medium and wide layouts are used (below: the essentials)
NARROW_WIDTH = 70
MEDIUM_WIDTH = 90
WIDE_WIDTH = 120
#: the factor columns, in the design's order
FACTORS: tuple[str, ...] = ev.FactorName.__args__  # type: ignore[attr-defined]

_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}


class WatchError(Exception):
    """``nertz watch`` cannot start: NATS does not answer or the stream is missing (exit 1)."""


def parse_symbols(text: str | None) -> list[str] | None:
    """Parse ``--symbols`` (``"BTCUSDT,ethusdt"``) into upper-case symbols, None for all symbols.

    Raises
    ------
    ValueError
        If a symbol is not 2 to 30 letters and digits, or the list names none.
    """
    if text is None:
        return None
    out = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in out if not _SYMBOL.match(s)]
    if bad or not out:
        raise ValueError(
            f"--symbols: expected comma-separated exchange symbols like BTCUSDT,ETHUSDT, was {text!r}"
            + (f" ({', '.join(map(repr, bad))} not a symbol)" if bad else "")
        )
    return list(dict.fromkeys(out))


def parse_since(text: str) -> tuple[str, int]:
    """Parse ``--since``: a duration before the log's last event (``90s``, ``30m``, ``1h``, ``2d``) or a UTC
    time (``2025-06-01T12:00``).

    Returns
    -------
    ("ago", ns) or ("at", ns)
        The duration in ns, or the UNIX time in ns.

    Raises
    ------
    ValueError
        If ``text`` is neither.
    """
    m = _DURATION.match(text.strip().lower())
    if m:
        return "ago", int(float(m.group(1)) * _UNIT_NS[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: expected a duration like 30m, 1h, 2d or a UTC time like 2025-06-01T12:00, was {text!r}"
        ) from None
    return "at", int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1e9)


# --- the fold -----------------------------------------------------------------------------------------


@dataclass
class Switch:
    """A trading switch as the last command left it: ``on`` (entries allowed) or not, who and when (UNIX ns)."""

    on: bool
    actor: str
    reason: str
    ts_ns: int


@dataclass
class Position:
    """The open position of a symbol.

    Attributes
    ----------
    position_id : str
    side : {"long", "short"}
    qty : float
        What is still open, base currency.
    entry_price : float
        USDT.
    take_profit, stop_loss : float or None
        Exits in force, USDT (None when not known: the position was first seen by a reduction).
    initial_stop : float or None
        The stop-loss at the opening, USDT: one R is ``|entry_price − initial_stop|``.
    opened_ns : int
        When it opened, UNIX ns (0 when not seen).
    """

    position_id: str
    side: ev.PositionSide
    qty: float
    entry_price: float
    take_profit: float | None = None
    stop_loss: float | None = None
    initial_stop: float | None = None
    opened_ns: int = 0

    def unrealized_usdt(self, price: float) -> float:
        """Return the P&L of the open quantity at ``price`` (USDT), before the exit's fee:
        ``±(price − entry_price) × qty`` (+ for a long)."""
        return self._sign * (price - self.entry_price) * self.qty

    def r_multiple(self, price: float) -> float | None:
        """Return the move to ``price`` in units of the initial risk, ``±(price − entry) / |entry − initial
        stop|``; None without an initial stop (or a zero one)."""
        if self.initial_stop is None or self.initial_stop == self.entry_price:
            return None
        return self._sign * (price - self.entry_price) / abs(self.entry_price - self.initial_stop)

    @property
    def _sign(self) -> int:
        return 1 if self.side == "long" else -1


@dataclass
class TickerItem:
    """One line of the ticker: ``kind`` is ``suppressed``, ``denied``, ``override``, ``trading``, ``config``,
    ``manual`` or ``venue``; ``symbol`` is empty for a command to every symbol."""

    ts_ns: int
    symbol: str
    kind: str
    text: str


@dataclass
class SymbolView:
    """What the screen shows of one symbol; None where nothing was seen yet.

    ``price`` (USDT) is the last bar close or ticker price, ``price_source`` says which (``bar``,
    ``last``, ``mark``); ``lock`` the Hard Lock's state and ``lock_since_ns`` when it moved there (None when
    the state was learnt from an event that does not move it); ``realized_usdt`` the P&L realized in the
    watched window, net of fees, over ``trades`` closed round trips.
    """

    symbol: str
    price: float | None = None
    price_source: str = ""
    factors: ev.FactorSnapshot | None = None
    intent: ev.IntentProposed | None = None
    verdict: ev.VerdictIssued | None = None
    lock: ev.LockState | None = None
    lock_since_ns: int | None = None
    entry: ev.OrderSubmitted | None = None
    position: Position | None = None
    last_close: ev.PositionClosed | None = None
    realized_usdt: float = 0.0
    trades: int = 0
    halt: Switch | None = None
    overrides: list[ev.RiskOverride] = field(default_factory=list)
    reduced_usdt: dict[str, float] = field(default_factory=dict)


#: a handler of an instrument event: ``(state, event, the symbol's view, counted)``, where ``counted`` is
#: False for a seeded event (its P&L is before the window)
Handler: TypeAlias = Callable[["WatchState", Any, SymbolView, bool], None]
#: a handler of a service-wide event: ``(state, event)``
SystemHandler: TypeAlias = Callable[["WatchState", Any], None]
_HANDLERS: dict[type[ev.Event], Handler] = {}
_SYSTEM_HANDLERS: dict[type[ev.Event], SystemHandler] = {}


def _on(*types: type[ev.Event]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in types:
            _HANDLERS[t] = fn
        return fn

    return register


def _on_system(*types: type[ev.Event]) -> Callable[[SystemHandler], SystemHandler]:
    def register(fn: SystemHandler) -> SystemHandler:
        for t in types:
            _SYSTEM_HANDLERS[t] = fn
        return fn

    return register


class WatchState:
    """The watch view as a fold of log events: :meth:`apply` one event at a time, in log order.

    Parameters
    ----------
    symbols : iterable of str, optional
        Show only these symbols (in this order, from the start); default every symbol seen, in order of
        appearance.
    signal_config : SignalConfig, optional
        The signal settings whose entry thresholds the combined scores are shown against (a
        ``ConfigChanged`` of ``signal.*`` keys on the log replaces them); None shows no threshold.
    ticker_size : int
        Ticker entries kept.
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        signal_config: SignalConfig | None = None,
        ticker_size: int = TICKER_SIZE,
    ) -> None:
        self.wanted: frozenset[str] | None = frozenset(symbols) if symbols is not None else None
        self.symbols: dict[str, SymbolView] = {s: SymbolView(s) for s in symbols or ()}
        self.signal_config = signal_config
        self.ticker: deque[TickerItem] = deque(maxlen=ticker_size)
        self.trading: Switch | None = None
        #: the latest event time seen, UNIX ns (the view's "now")
        self.now_ns = 0
        #: the stream sequence of the last event applied
        self.last_seq: int | None = None
        #: event time of the first event of the window (realized P&L counts from there), UNIX ns
        self.window_start_ns: int | None = None

    def apply(self, event: ev.Event, seq: int | None = None, seeded: bool = False) -> None:
        """Fold one event into the view.

        Parameters
        ----------
        event : Event
            Any event; types the view does not show, and other symbols' events, are ignored.
        seq : int, optional
            Its stream sequence.
        seeded : bool
            The event comes from before the window (the last of its subject): it sets state (price,
            lock, position, switches, verdict) and adds nothing to the realized P&L.
        """
        if seq is not None:
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self.now_ns = max(self.now_ns, event.ts_event)
        if not seeded and self.window_start_ns is None:
            self.window_start_ns = event.ts_event
        if not isinstance(event, ev.InstrumentEvent):
            system = _SYSTEM_HANDLERS.get(type(event))
            if system is not None:
                system(self, event)
            return
        view = self._view(event.symbol)
        if view is None:
            return
        target = lock.target_of(event)
        if target is not None and target != view.lock:
            view.lock, view.lock_since_ns = target, event.ts_event
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, view, not seeded)

    def realized_usdt(self) -> float:
        """Return the realized P&L of every shown symbol in the window, USDT."""
        return sum(v.realized_usdt for v in self.symbols.values())

    def _view(self, symbol: str) -> SymbolView | None:
        if self.wanted is not None and symbol not in self.wanted:
            return None
        view = self.symbols.get(symbol)
        if view is None:
            view = self.symbols[symbol] = SymbolView(symbol)
        return view

    def _tick(self, event: ev.Event, symbol: str, kind: str, text: str) -> None:
        self.ticker.append(TickerItem(event.ts_event, symbol, kind, text))

    def threshold_of(self, view: SymbolView) -> float | None:
        """Return the entry threshold ``|combined|`` must reach now (score units): the configured one of the
        last snapshot's factor set, raised by an ``entry_threshold`` override still in force at the latest
        event time; None without a signal configuration or a snapshot."""
        if self.signal_config is None or view.factors is None:
            return None
        thr = self.signal_config.threshold_for(list(view.factors.used))
        for o in view.overrides:
            if o.kind == "entry_threshold" and o.value is not None and o.until_ns > self.now_ns:
                thr = max(thr, o.value)
        return thr


# --- one handler per event type ----------------------------------------------------------------------


@_on(ev.Bar)
def on_bar(state: WatchState, e: ev.Bar, view: SymbolView, counted: bool) -> None:
    view.price, view.price_source = e.close, "bar"


@_on(ev.Ticker)
def on_ticker(state: WatchState, e: ev.Ticker, view: SymbolView, counted: bool) -> None:
    if e.last_price is not None:
        view.price, view.price_source = e.last_price, "last"
    elif e.mark_price is not None:
        view.price, view.price_source = e.mark_price, "mark"


@_on(ev.FactorSnapshot)
def on_factor_snapshot(state: WatchState, e: ev.FactorSnapshot, view: SymbolView, counted: bool) -> None:
    view.factors = e
    if view.price is None:
        view.price, view.price_source = e.close, "bar"


@_on(ev.IntentProposed)
def on_intent_proposed(state: WatchState, e: ev.IntentProposed, view: SymbolView, counted: bool) -> None:
    view.intent = e


@_on(ev.VerdictIssued)
def on_verdict_issued(state: WatchState, e: ev.VerdictIssued, view: SymbolView, counted: bool) -> None:
    view.verdict = e


def _learn_lock(view: SymbolView, lock_state: ev.LockState) -> None:
    if lock_state != view.lock:  # reported by the executor, not moved here: since when is not known
        view.lock, view.lock_since_ns = lock_state, None


@_on(ev.VerdictAwaited)
def on_verdict_awaited(state: WatchState, e: ev.VerdictAwaited, view: SymbolView, counted: bool) -> None:
    _learn_lock(view, e.lock_state)


@_on(ev.SignalSuppressed)
def on_signal_suppressed(state: WatchState, e: ev.SignalSuppressed, view: SymbolView, counted: bool) -> None:
    _learn_lock(view, e.lock_state)
    state._tick(e, e.symbol, "suppressed", f"{e.decision} in {e.lock_state}: {e.reason}")


@_on(ev.RiskDenied)
def on_risk_denied(state: WatchState, e: ev.RiskDenied, view: SymbolView, counted: bool) -> None:
    state._tick(e, e.symbol, "denied", f"{e.rule}: {e.reason}")


@_on(ev.RiskOverrideIssued)
def on_risk_override_issued(state: WatchState, e: ev.RiskOverrideIssued, view: SymbolView, counted: bool) -> None:
    view.overrides = [o for o in view.overrides if o.until_ns > e.ts_event] + list(e.overrides)
    what = ", ".join(_override_text(o) for o in e.overrides) or "no action"
    refused = f"; {len(e.refused)} refused" if e.refused else ""
    state._tick(e, e.symbol, "override", f"{what} ({e.policy}: {e.trigger}){refused}")


@_on(ev.OrderSubmitted)
def on_order_submitted(state: WatchState, e: ev.OrderSubmitted, view: SymbolView, counted: bool) -> None:
    if not e.reduce_only:
        view.entry = e


@_on(ev.OrderRejected)
def on_order_rejected(state: WatchState, e: ev.OrderRejected, view: SymbolView, counted: bool) -> None:
    if not e.reduce_only:
        view.entry = None


@_on(ev.EntryExpired)
def on_entry_expired(state: WatchState, e: ev.EntryExpired, view: SymbolView, counted: bool) -> None:
    view.entry = None


@_on(ev.PositionOpened)
def on_position_opened(state: WatchState, e: ev.PositionOpened, view: SymbolView, counted: bool) -> None:
    view.entry = None
    view.position = Position(e.position_id, e.side, e.qty, e.entry_price, e.take_profit, e.stop_loss,
                             e.stop_loss, e.ts_event)  # fmt: skip


@_on(ev.PositionReduced)
def on_position_reduced(state: WatchState, e: ev.PositionReduced, view: SymbolView, counted: bool) -> None:
    pos = view.position
    if pos is None or pos.position_id != e.position_id:
        view.position = pos = Position(e.position_id, e.side, e.qty_left, e.entry_price)
    pos.qty = e.qty_left
    view.reduced_usdt[e.position_id] = view.reduced_usdt.get(e.position_id, 0.0) + e.realized_pnl_usdt
    if counted:
        view.realized_usdt += e.realized_pnl_usdt


@_on(ev.StopMoved)
def on_stop_moved(state: WatchState, e: ev.StopMoved, view: SymbolView, counted: bool) -> None:
    if view.position is not None and view.position.position_id == e.position_id:
        view.position.stop_loss, view.position.take_profit = e.stop_loss, e.take_profit


@_on(ev.PositionClosed)
def on_position_closed(state: WatchState, e: ev.PositionClosed, view: SymbolView, counted: bool) -> None:
    view.position, view.last_close = None, e
    seen = view.reduced_usdt.pop(e.position_id, 0.0)  # the reductions already counted, or seeded
    if counted:
        view.realized_usdt += e.realized_pnl_usdt + e.reduced_pnl_usdt - seen
        view.trades += 1


@_on(ev.VenueMismatch)
def on_venue_mismatch(state: WatchState, e: ev.VenueMismatch, view: SymbolView, counted: bool) -> None:
    if e.action == "halted":
        view.halt = Switch(False, "reconciliation", e.reason, e.ts_event)
    state._tick(e, e.symbol, "venue", f"{e.action}: {e.reason}")


@_on_system(ev.TradingStarted)
def on_trading_started(state: WatchState, e: ev.TradingStarted) -> None:
    _switch(state, e, Switch(True, e.actor, "", e.ts_event))


@_on_system(ev.TradingStopped)
def on_trading_stopped(state: WatchState, e: ev.TradingStopped) -> None:
    _switch(state, e, Switch(False, e.actor, e.reason, e.ts_event))


def _switch(state: WatchState, e: ev.SystemEvent, switch: Switch) -> None:
    on, reason = switch.on, switch.reason
    if e.scope == "all":
        state.trading = switch
        if on:
            for v in state.symbols.values():
                v.halt = None
        symbol = ""
    else:
        scoped = state._view(e.scope)
        if scoped is None:
            return
        scoped.halt = None if on else switch
        symbol = e.scope
    text = f"{'started' if on else 'stopped'} by {switch.actor}" + (f": {reason}" if reason else "")
    state._tick(e, symbol, "trading", text)


@_on_system(ev.ConfigChanged)
def on_config_changed(state: WatchState, e: ev.ConfigChanged) -> None:
    if state.signal_config is not None:
        state.signal_config = _changed(state.signal_config, e.changes)
    changes = ", ".join(f"{k}={v}" for k, v in e.changes.items())
    state._tick(e, "", "config", f"{changes} by {e.actor}" + (f": {e.reason}" if e.reason else ""))


@_on_system(ev.ManualTradeRequested)
def on_manual_trade_requested(state: WatchState, e: ev.ManualTradeRequested) -> None:
    if state._view(e.scope) is None:
        return
    side = e.side or "side of the score"
    state._tick(e, e.scope, "manual", f"trade requested ({side}) by {e.actor}" + (f": {e.reason}" if e.reason else ""))


def _changed(cfg: SignalConfig, changes: dict[str, ev.ConfigValue]) -> SignalConfig:
    from pydantic import ValidationError

    from nertz_cli.config import merge
    from nertz_signal.core.config import SignalConfig

    nested: dict[str, Any] = {}
    for key, value in changes.items():
        group, _, rest = key.partition(".")
        if group != "signal" or not rest:
            continue
        *parents, leaf = rest.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if not nested:
        return cfg
    try:
        return SignalConfig.model_validate(merge(cfg.model_dump(), nested))
    except (ValidationError, TypeError, AttributeError):
        return cfg  # the services refuse it too: the thresholds stay


def _override_text(o: ev.RiskOverride) -> str:
    what = {
        "position_size": f"size ×{o.value}",
        "entry_threshold": f"threshold ≥ {o.value}",
        "disable_side": f"no {o.side}s",
        "disable_symbol": "symbol disabled",
    }.get(o.kind, o.kind)
    return f"{what} until {_hm(o.until_ns)}"


#: events that only move the lock (every event moves it by :func:`nertz_common.lock.target_of` in ``apply``)
_LOCK_ONLY: tuple[type[ev.Event], ...] = (ev.LockEngaged, ev.LockReleased)
#: the event types the view shows: the log is read with filters on their subjects only
SHOWN: frozenset[type[ev.Event]] = frozenset(_HANDLERS) | frozenset(_SYSTEM_HANDLERS) | frozenset(_LOCK_ONLY)


def filters() -> list[str]:
    """Return the subject filters of the event types the view shows (``md.bar.>``, ``exec.lock.>``...)."""
    return sorted({subjects.filter_of(*subjects.ROUTES[t]) for t in SHOWN})


# --- rendering ----------------------------------------------------------------------------------------


def render(state: WatchState, bus: str = "") -> RenderableType:
    """Return the screen of ``state`` as a rich renderable that fits the width it is drawn at.

    Parameters
    ----------
    state : WatchState
    bus : str
        The connection's state for the header (``live``, ``reconnecting``...); empty to leave it out.
    """
    return _Screen(state, bus)


class _Screen:
    def __init__(self, state: WatchState, bus: str) -> None:
        self.state, self.bus = state, bus

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        level = 3 if width >= WIDE_WIDTH else 2 if width >= MEDIUM_WIDTH else 1 if width >= NARROW_WIDTH else 0
        s = self.state
        yield _header(s, self.bus)
        if not s.symbols:
            yield Text("no events yet" + (f" for {', '.join(sorted(s.wanted))}" if s.wanted else ""), style="dim")
        else:
            yield _markets(s, level)
            yield _trades(s, level)
        yield _ticker(s, level)


def _header(s: WatchState, bus: str) -> RenderableType:
    t = Text()
    t.append("nertz watch", style="bold")
    t.append(f"  {subjects.STREAM} seq {s.last_seq:,}" if s.last_seq is not None else f"  {subjects.STREAM}")
    t.append("  event time " + (_utc(s.now_ns) + " UTC" if s.now_ns else "-"))
    if bus:
        t.append("  bus: ")
        t.append(bus, style="green" if bus == "live" else "yellow")
    t.append("  trading: ")
    if s.trading is None:
        t.append("?", style="dim")
    else:
        t.append("ON" if s.trading.on else "OFF", style="bold green" if s.trading.on else "bold red")
    if s.symbols:
        since = f" since {_hm(s.window_start_ns)}" if s.window_start_ns else ""
        t.append(f"  realized{since}: ")
        t.append(_usdt(s.realized_usdt()) + " USDT", style=_pnl_style(s.realized_usdt()))
    return t


def _table(s: WatchState, title: str) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, title_style="bold",
              header_style="bold", padding=(0, 1))  # fmt: skip
    t.add_column("symbol", no_wrap=True, min_width=max((len(x) for x in s.symbols), default=6))
    return t


def _markets(s: WatchState, level: int) -> Table:
    t = _table(s, "markets")
    t.add_column("price", justify="right", no_wrap=True)
    if level >= 1:
        t.add_column("trend", no_wrap=True)
    t.add_column("score/thr", justify="right", no_wrap=True)
    if level >= 2:
        for name in FACTORS:
            t.add_column(name.upper(), justify="right", no_wrap=True)
    if level >= 3:
        t.add_column("signal", max_width=28)  # the elastic column: narrowed first
    t.add_column("lock (UTC)", no_wrap=True)
    for v in s.symbols.values():
        f = v.factors
        row: list[RenderableType] = [Text(v.symbol, style="bold"), _price_cell(v, level >= 3)]
        if level >= 1:
            row.append(_trend_cell(f))
        row.append(_score_cell(s, v))
        if level >= 2:
            row += [_factor_cell(getattr(f, name) if f else None) for name in FACTORS]
        if level >= 3:
            row.append(_signal_cell(v))
        row.append(_lock_cell(s, v, level))
        _add_row(t, row)
    return t


def _trades(s: WatchState, level: int) -> Table:
    t = _table(s, "verdicts and positions")
    # the free text (the reasons) is narrowed first: its own column when wide, under the verdict when not
    t.add_column("verdict (UTC)", no_wrap=level >= 3)
    if level >= 3:
        t.add_column("reasons")
    t.add_column("position", no_wrap=True)
    t.add_column("uP&L USDT", justify="right", no_wrap=True)
    if level >= 1:
        t.add_column("R", justify="right", no_wrap=True)
        t.add_column("realized", justify="right", no_wrap=True)
    for v in s.symbols.values():
        verdict = _verdict_cell(v, level)
        if level in (1, 2) and v.verdict is not None:
            verdict.append("\n").append_text(_reasons(v.verdict))
        row: list[RenderableType] = [Text(v.symbol, style="bold"), verdict]
        if level >= 3:
            row.append(_reasons(v.verdict))
        row.append(_position_cell(v, long=level >= 3))
        pos, price = v.position, v.price
        u = r = None
        if pos is not None and price is not None:
            u, r = pos.unrealized_usdt(price), pos.r_multiple(price)
        row.append(Text("-", style="dim") if u is None else Text(_usdt(u), style=_pnl_style(u)))
        if level >= 1:
            row.append(Text("-", style="dim") if r is None else Text(f"{r:+.2f}R", style=_pnl_style(r)))
            row.append(Text(f"{_usdt(v.realized_usdt)} ({v.trades})", style=_pnl_style(v.realized_usdt)))
        _add_row(t, row)
    return t


def _ticker(s: WatchState, level: int) -> RenderableType:
    t = Table(title=f"suppressed signals, denials, overrides, commands (last {s.ticker.maxlen})", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, title_style="bold", header_style="bold", padding=(0, 1))  # fmt: skip
    t.add_column("time UTC", no_wrap=True)
    if level >= 1:
        t.add_column("symbol", no_wrap=True, min_width=7)
    if level >= 2:
        t.add_column("kind", no_wrap=True)
    t.add_column("what")
    if not s.ticker:
        t.add_row(*(["-"] * len(t.columns)), style="dim")
    for item in reversed(s.ticker):
        symbol = item.symbol or "all"
        if level >= 2:
            row = [symbol, item.kind, item.text]
        elif level >= 1:
            row = [symbol, f"{item.kind}: {item.text}"]
        else:
            row = [f"{symbol} {item.kind}: {item.text}"]
        _add_row(t, [Text(_hms(item.ts_ns)), *map(Text, row)], style=_KIND_STYLE.get(item.kind, ""))
    return t


def _add_row(t: Table, cells: list[RenderableType], style: str = "") -> None:
    # every cell stays on one line (cut with an ellipsis); a table's column without ``no_wrap`` (its
    # free text) is the one rich narrows first when the terminal is narrow, so the rest stays whole
    for c in cells:
        if isinstance(c, Text):
            c.no_wrap, c.overflow = True, "ellipsis"
    t.add_row(*cells, style=style)


_KIND_STYLE = {"suppressed": "yellow", "denied": "red", "override": "magenta", "trading": "cyan",
               "config": "cyan", "manual": "cyan", "venue": "red"}  # fmt: skip
_LOCK_STYLE = {"FLAT": "green", "ENTRY_PENDING": "yellow", "LOCKED": "bold red", "COOLDOWN": "blue"}


def _price_cell(v: SymbolView, long: bool) -> Text:
    if v.price is None:
        return Text("-", style="dim")
    return Text(_px(v.price)).append(f" {v.price_source}" if long else "", style="dim")


def _trend_cell(f: ev.FactorSnapshot | None) -> Text:
    if f is None:
        return Text("-", style="dim")
    return Text(f.trend, style={"up": "green", "down": "red"}.get(f.trend, "dim"))


def _score_cell(s: WatchState, v: SymbolView) -> Text:
    f, thr = v.factors, s.threshold_of(v)
    if f is None:
        return Text("-", style="dim")
    reached = thr is not None and abs(f.combined) >= thr
    t = Text(f"{f.combined:+.1f}", style="bold green" if reached else _pnl_style(f.combined))
    if thr is not None:
        t.append(f"/±{thr:.1f}", style="dim")
    return t


def _factor_cell(x: float | None) -> Text:
    return Text("-", style="dim") if x is None else Text(f"{x:+.2f}", style=_pnl_style(x))


def _signal_cell(v: SymbolView) -> Text:
    f = v.factors
    if f is None:
        return Text("")
    if f.veto:
        return Text(f"veto: {f.veto}", style="yellow")
    if f.intent_id:
        side = v.intent.side if v.intent is not None and v.intent.event_id == f.intent_id else ""
        return Text(f"intent {side}".strip(), style="bold cyan")
    return Text("")


def _lock_cell(s: WatchState, v: SymbolView, level: int) -> Text:
    if v.lock is None:
        t = Text("?", style="dim")
    else:
        t = Text(v.lock, style=_LOCK_STYLE.get(v.lock, ""))
        if v.lock_since_ns is not None:
            since = _hms(v.lock_since_ns) if level >= 3 else _hm(v.lock_since_ns)
            ago = f" ({_ago(s.now_ns - v.lock_since_ns)})" if level >= 2 else ""
            t.append(f" {since}{ago}", style="dim")
    if v.halt is not None:
        t.append(" halted", style="bold red")
    return t


def _verdict_cell(v: SymbolView, level: int) -> Text:
    d = v.verdict
    if d is None:
        return Text("-", style="dim")
    t = Text(d.decision, style="bold green" if d.decision == "approve" else "bold red")
    if level == 0:
        return t.append(f" {d.confidence:.2f}")
    if v.intent is not None and v.intent.correlation_id == d.correlation_id:
        t.append(f" {v.intent.side}")
    t.append(f" {d.confidence:.2f}" + (f" {d.policy}" if level >= 3 else "") + " ")
    t.append(_hms(d.ts_event) if level >= 3 else _hm(d.ts_event), style="dim")
    return t


def _reasons(d: ev.VerdictIssued | None) -> Text:
    if d is None:
        return Text("")
    parts = [*d.reasons, *([f"failure: {d.failure}"] if d.failure else []), *d.risk_flags]
    return Text("; ".join(parts) or "(no reasons)", style="italic")


def _position_cell(v: SymbolView, long: bool) -> Text:
    p = v.position
    if p is not None:
        t = Text(f"{p.side} ", style="bold green" if p.side == "long" else "bold red")
        t.append(f"{p.qty:g} @ {_px(p.entry_price)}")
        if long:
            t.append(f" TP {_px(p.take_profit)} SL {_px(p.stop_loss)}", style="dim")
        return t
    if v.entry is not None:
        o = v.entry
        return Text(f"entry {o.side} {o.qty:g} @~{_px(o.price_ref)} pending", style="yellow")
    c = v.last_close
    if c is not None:
        t = Text(f"closed {c.exit_reason} ", style="dim")
        t.append(_usdt(c.trade_pnl_usdt), style=_pnl_style(c.trade_pnl_usdt))
        t.append(f" {_hms(c.ts_event)}", style="dim")
        return t
    return Text("-", style="dim")


def _pnl_style(x: float | None) -> str:
    return "" if not x else ("green" if x > 0 else "red")


def _px(p: float | None) -> str:
    if p is None:
        return "-"
    if p >= 1000:
        return f"{p:,.2f}"
    return f"{p:,.4f}" if p >= 1 else f"{p:.6g}"


def _usdt(x: float) -> str:
    return f"{x:+,.2f}"


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _utc(ns: int) -> str:
    return _dt(ns).strftime("%Y-%m-%d %H:%M:%S")


def _hms(ns: int) -> str:
    return _dt(ns).strftime("%H:%M:%S")


def _hm(ns: int) -> str:
    return _dt(ns).strftime("%H:%M")


def _ago(ns: int) -> str:
    s = max(0, ns) // 1_000_000_000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s < 86_400 else f"{s // 86_400}d{s % 86_400 // 3600}h"


# --- reading the log ----------------------------------------------------------------------------------


class _Stamp(msgspec.Struct):
    ts_event: int = 0


_stamp = msgspec.json.Decoder(_Stamp)


async def start_of(js: Any, since: tuple[str, int], stream: str = subjects.STREAM) -> int:
    """Return the first stream sequence whose event time is at or after ``since`` (see :func:`parse_since`;
    a duration counts back from the event time of the stream's last message).

    Found by bisection on the sequence with single-message reads (the log is in event-time order but for
    backfilled bars, so the start is approximate around them). ``last_seq + 1`` when nothing is that recent.

    Raises
    ------
    nats.js.errors.NotFoundError
        If the stream does not exist.
    """
    st = (await js.stream_info(stream)).state
    if st.last_seq < st.first_seq:
        return st.last_seq + 1

    async def probe(seq: int) -> tuple[int, int]:
        m = await js.get_msg(stream, seq=seq, subject=">", next=True)
        try:
            return m.seq, _stamp.decode(m.data or b"{}").ts_event
        except msgspec.DecodeError:
            return m.seq, 0

    kind, ns = since
    target = ns if kind == "at" else (await probe(st.last_seq))[1] - ns
    lo, hi = st.first_seq, st.last_seq + 1
    while lo < hi:
        mid = (lo + hi) // 2
        seq, ts = await probe(mid)
        if ts >= target:
            hi = mid
        else:
            lo = seq + 1
    return lo


@dataclass
class Options:
    """What ``nertz watch`` was asked for.

    Attributes
    ----------
    nats_url : str
        One server, or a cluster's nodes separated by commas.
    symbols : list of str or None
        Only these symbols (None: all).
    since : ("ago" | "at", int)
        Where the window starts (:func:`parse_since`); ignored with ``from_seq``.
    from_seq : int or None
        Start at this stream sequence.
    refresh_hz : float
        Screen refreshes per second (> 0).
    screen : bool
        Draw on the terminal's alternate screen (full-screen, like ``top``).
    """

    nats_url: str
    symbols: list[str] | None
    since: tuple[str, int]
    from_seq: int | None = None
    refresh_hz: float = 4.0
    screen: bool = True
    stream: str = subjects.STREAM


class LogReader:
    """Read the log into a :class:`WatchState` with ephemeral ordered consumers (no ack, no durable).

    :meth:`seed` folds the last event of every watched subject before the window; :meth:`follow` the log
    from the window's start on, live; :meth:`refollow` starts again after the last sequence seen (after
    a reconnect). ``bus`` says where it is, for the header.

    Parameters
    ----------
    nc, js : nats.aio.client.Client, JetStreamContext
        A connected client and its JetStream context.
    state : WatchState
    stream : str
    """

    def __init__(self, nc: Any, js: Any, state: WatchState, stream: str = subjects.STREAM) -> None:
        self.nc, self.js, self.state, self.stream = nc, js, state, stream
        self.bus = "connecting"
        self.filters = filters()
        self.undecodable = 0
        self._sub: Any = None
        self._next_seq = 1

    def _decode(self, msg: Any) -> tuple[int, int, ev.AnyEvent | None]:
        from nertz_common.node.log import ack_fields

        seq, _, _, pending = ack_fields(msg.reply)
        try:
            return seq, pending, ev.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            return seq, pending, None

    async def seed(self, start: int) -> None:
        """Fold the last event of every watched subject before the stream sequence ``start`` (as seeded).

        Raises
        ------
        nats.errors.Error, TimeoutError
            If the server does not answer.
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        last = (await self.js.stream_info(self.stream)).state.last_seq
        if start <= 1 or last < 1:
            return
        done = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            seq, pending, event = self._decode(msg)
            if event is not None and seq < start:
                self.state.apply(event, seq, seeded=True)
            if pending == 0 or seq >= last:
                done.set()

        self.bus = "reading the state before the window"
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE,
                             filter_subjects=self.filters)  # fmt: skip
        sub = await self.js.subscribe(">", stream=self.stream, cb=on_msg, ordered_consumer=True, config=cfg)
        try:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)
                if not done.is_set() and (await sub.consumer_info()).num_pending == 0 and not sub.pending_msgs:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def follow(self, start: int) -> None:
        """Subscribe from the stream sequence ``start`` (or after the last one seen, if later) and fold what
        comes, in the subscription's callback, until :meth:`close` or the next :meth:`follow`.

        Raises
        ------
        nats.errors.Error, TimeoutError
            If the consumer cannot be created.
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self._next_seq = max(self._next_seq, start)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

        async def on_msg(msg: Any) -> None:
            seq, pending, event = self._decode(msg)
            if seq < self._next_seq:
                return  # a redelivery across a restart of the consumer
            self._next_seq = seq + 1
            if event is not None:
                self.state.apply(event, seq)
            self.bus = "live" if pending == 0 else f"catching up ({pending:,} to go)"

        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._next_seq,
                             ack_policy=AckPolicy.NONE, filter_subjects=self.filters)  # fmt: skip
        self._sub = await self.js.subscribe(">", stream=self.stream, cb=on_msg, ordered_consumer=True, config=cfg)
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and self.bus != "live" and not self._sub.pending_msgs:
            self.bus = "live"

    def restart_at(self, seq: int) -> None:
        """Make the next :meth:`follow` start at ``seq`` at the earliest."""
        self._next_seq = max(self._next_seq, seq)

    async def refollow(self, stop: asyncio.Event) -> None:
        """After a reconnect: follow again from the next sequence, retrying until it works or ``stop``."""
        delay = 0.25
        while not stop.is_set() and self.nc.is_connected:
            try:
                await self.follow(self._next_seq)
                return
            except Exception as e:  # the server is back but JetStream is not yet (leader, stream recovery)
                self.bus = f"reconnecting ({type(e).__name__})"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(2.0, delay * 2)

    async def close(self) -> None:
        """Unsubscribe (the ephemeral consumer goes with it)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


def run(opts: Options, console: Console | None = None) -> int:
    """Show the live view until Ctrl-C (or SIGTERM); return the exit code (0).

    Raises
    ------
    WatchError
        If NATS cannot be reached at start-up or the stream does not exist.
    """
    from nertz_common import aio

    return aio.run(_watch(opts, console or Console()))


def _signal_config() -> SignalConfig | None:
    from nertz_cli import config
    from nertz_common.errors import ConfigurationError

    try:
        return config.load().signal
    except ConfigurationError:
        return None  # the environment's settings are invalid: show no threshold


async def _watch(opts: Options, console: Console) -> int:
    import nats
    import nats.errors
    import nats.js.errors

    from nertz_common import bus

    state = WatchState(opts.symbols)
    stop = asyncio.Event()
    reader: LogReader | None = None
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def quiet(e: Exception) -> None:
        pass  # nats-py logs to stderr by default, which would tear through the screen

    async def on_disconnect() -> None:
        if reader is not None and not stop.is_set():
            reader.bus = "reconnecting"

    async def on_reconnect() -> None:
        if reader is not None and not stop.is_set():
            task = loop.create_task(reader.refollow(stop))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            servers = bus.servers(opts.nats_url)  # one server, or a cluster's nodes separated by commas
        except ValueError as e:
            raise WatchError(str(e)) from None
        connecting = nats.connect(
            servers, name="nertz-watch", connect_timeout=3, max_reconnect_attempts=2, reconnect_time_wait=0.5,
            ping_interval=5, max_outstanding_pings=2, error_cb=quiet, disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )  # fmt: skip
        try:
            nc = await asyncio.wait_for(connecting, 10)
        except (TimeoutError, OSError, nats.errors.Error) as e:
            raise WatchError(f"could not connect to NATS at {opts.nats_url}: {e!r}") from None
        # fail fast at start-up (a few attempts), then never give up: nats-py reads the option at each reconnect
        nc.options["max_reconnect_attempts"] = -1
        try:
            js = nc.jetstream(timeout=10)
            try:
                start = opts.from_seq if opts.from_seq is not None else await start_of(js, opts.since, opts.stream)
            except nats.js.errors.NotFoundError:
                raise WatchError(
                    f"no stream {opts.stream} at {opts.nats_url} (`nertz streams apply` creates it)"
                ) from None
            reader = LogReader(nc, js, state, opts.stream)
            with Live(render(state, reader.bus), console=console, screen=opts.screen, auto_refresh=False,
                      redirect_stdout=True, redirect_stderr=True) as live:  # fmt: skip
                work = loop.create_task(_read(reader, start, stop))
                try:
                    while not stop.is_set():
                        live.update(render(state, reader.bus), refresh=True)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 1.0 / opts.refresh_hz)
                        if work.done() and not work.cancelled() and work.exception() is not None:
                            raise work.exception()  # type: ignore[misc]
                finally:
                    for t in (work, *tasks):
                        t.cancel()
                    with contextlib.suppress(BaseException):
                        await work
            await reader.close()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


async def _read(reader: LogReader, start: int, stop: asyncio.Event) -> None:
    reader.bus = "loading the signal settings"
    # the thresholds come from the settings the services read (numpy and pydantic: a second to import),
    # loaded while the screen is already up; before any event, so a ConfigChanged applies on top of them
    reader.state.signal_config = await asyncio.to_thread(_signal_config)
    try:
        await reader.seed(start)
    except Exception as e:  # NATS went away while the seed was read: the window alone fills the screen
        reader.bus = f"no state before the window ({type(e).__name__})"
    reader.restart_at(start)
    await reader.refollow(stop)  # if NATS is down now, the reconnect follows
