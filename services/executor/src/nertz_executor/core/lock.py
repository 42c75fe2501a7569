"""The Structural Hard Lock: per-symbol state machine as a pure fold and pure decisions.

::

    FLAT ──approved verdict, risk ok──> ENTRY_PENDING ──filled──> LOCKED ──TP/SL | stale exit──> COOLDOWN
      ▲                                   │ not filled in time / rejected                         │ elapsed
      └───────────────────────────────────┴────────────────────────────────────────────────────────┘

- :func:`evolve` folds the executor's own events (``exec.*`` and ``venue.*`` ``OrderFilled``) into an
  :class:`ExecutorState`; a transition the lock forbids raises :class:`LockViolation`, so an order can
  structurally not be submitted for a symbol that is not FLAT.
- :func:`decide` turns one input (market data, a closed-bar barrier, a verdict, an operator command)
  into the events it causes. In ENTRY_PENDING, LOCKED and COOLDOWN every verdict for the symbol
  becomes ``SignalSuppressed`` and never reaches the venue.
- :func:`apply_control` applies ``TradingStarted``/``TradingStopped`` (inputs, not outputs).

Conventions: every event's ``ts_event = ts_init`` = the ``ts_event`` of the input being handled;
``event_id = derive_id(<type>, correlation_id, ...)``; ``correlation_id`` is the intent id and
``causation_id`` the event that caused it. Money in USDT, quantities in base currency, times in UNIX ns,
returns as fractions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec
from msgspec import Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id, order_link_id
from nertz_executor.core import paper, risk
from nertz_executor.core.config import DAY_NS, ExecutorConfig

#: gauge value of each lock state (metrics: 0 = FLAT .. 3 = COOLDOWN)
LOCK_LEVEL: dict[str, int] = {"FLAT": 0, "ENTRY_PENDING": 1, "LOCKED": 2, "COOLDOWN": 3}


class LockViolation(Exception):
    """An event the Hard Lock forbids in the current state: an invariant violation (stop the process)."""


class SymbolState(Struct, frozen=True, kw_only=True):
    """The lock of one symbol and its open order or position.

    Attributes
    ----------
    lock : {"FLAT", "ENTRY_PENDING", "LOCKED", "COOLDOWN"}
    venue, market : str
        Routing of the symbol's events.
    correlation_id : str or None
        The intent id of the order/position in hand (kept through COOLDOWN, for ``LockReleased``).
    order_id : str or None
        The entry's ``orderLinkId``.
    side : {"long", "short"} or None
    qty : float
        Order/position quantity, base currency.
    price_ref : float
        The intent's reference entry price, USDT.
    take_profit, stop_loss : float
        Exchange-native exit triggers, USDT.
    order_ts_ns : int
        When the entry was submitted, UNIX ns.
    entry_deadline_ns : int
        The entry expires if not filled by then, UNIX ns.
    position_id : str or None
    entry_price : float
        Entry fill price, USDT (0 until filled).
    entry_fee_usdt : float
        Entry taker fee, USDT.
    opened_ts_ns : int
        When the position opened, UNIX ns; later bars count for TP/SL when they open at or after it.
    cooldown_until_ns : int
        End of the cooldown, UNIX ns (COOLDOWN only).
    """

    lock: ev.LockState = "FLAT"
    venue: str = "bybit"
    market: str = "linear"
    correlation_id: str | None = None
    order_id: str | None = None
    side: ev.PositionSide | None = None
    qty: float = 0.0
    price_ref: float = 0.0
    take_profit: float = 0.0
    stop_loss: float = 0.0
    order_ts_ns: int = 0
    entry_deadline_ns: int = 0
    position_id: str | None = None
    entry_price: float = 0.0
    entry_fee_usdt: float = 0.0
    opened_ts_ns: int = 0
    cooldown_until_ns: int = 0


FLAT = SymbolState()


class ExecutorState(Struct, frozen=True, kw_only=True):
    """The executor's whole state: a fold of its own events (plus operator commands).

    Treat as immutable: :func:`evolve` returns a new state and never mutates ``symbols``.

    Attributes
    ----------
    symbols : dict[str, SymbolState]
        Per-symbol lock; a missing symbol is FLAT.
    start_equity_usdt : float
        Equity at the start (configuration), USDT.
    equity_usdt : float
        ``start_equity_usdt + realized_pnl_usdt``, USDT.
    realized_pnl_usdt : float
        Realized P&L net of fees since the start, USDT.
    peak_equity_usdt : float
        Highest equity seen, USDT (for the drawdown).
    day : int
        UTC day index (``ts_event // 86_400e9``) of the last event folded; -1 before any.
    day_start_equity_usdt : float
        Equity at the start of ``day``, USDT.
    daily_realized_pnl_usdt : float
        Realized P&L of ``day``, USDT.
    awaited : frozenset[str]
        Intent ids whose closed-bar barrier was reached (``VerdictAwaited`` published).
    decided : frozenset[str]
        Intent ids whose verdict produced a decision event (suppressed, denied or submitted): a
        redelivered verdict for one of them does nothing.
    trading_enabled : bool
        False after ``TradingStopped`` until ``TradingStarted``.
    entry_timeout_ns, cooldown_ns : int
        Lock timings the fold needs (from the configuration), ns.
    closed_trades, winning_trades : int
        Round trips closed, and those with a positive net P&L.
    """

    symbols: dict[str, SymbolState] = {}
    start_equity_usdt: float
    equity_usdt: float
    realized_pnl_usdt: float = 0.0
    peak_equity_usdt: float
    day: int = -1
    day_start_equity_usdt: float
    daily_realized_pnl_usdt: float = 0.0
    awaited: frozenset[str] = frozenset()
    decided: frozenset[str] = frozenset()
    trading_enabled: bool = True
    entry_timeout_ns: int
    cooldown_ns: int
    closed_trades: int = 0
    winning_trades: int = 0

    def symbol(self, symbol: str) -> SymbolState:
        """Return the state of ``symbol`` (FLAT when never seen)."""
        return self.symbols.get(symbol, FLAT)

    @property
    def open_positions(self) -> int:
        """Positions open (LOCKED symbols)."""
        return sum(1 for s in self.symbols.values() if s.lock == "LOCKED")

    @property
    def exposure_count(self) -> int:
        """Positions open or pending (LOCKED or ENTRY_PENDING symbols)."""
        return sum(1 for s in self.symbols.values() if s.lock in ("LOCKED", "ENTRY_PENDING"))

    @property
    def open_notional_usdt(self) -> float:
        """Notional of open or pending positions at their entry (or reference) price, USDT."""
        return sum(
            s.qty * (s.entry_price or s.price_ref)
            for s in self.symbols.values()
            if s.lock in ("LOCKED", "ENTRY_PENDING")
        )

    @property
    def drawdown_fraction(self) -> float:
        """Drawdown from the peak, fraction: ``(peak − equity) / peak``."""
        return (self.peak_equity_usdt - self.equity_usdt) / self.peak_equity_usdt if self.peak_equity_usdt else 0.0

    def daily_pnl_at(self, ts_ns: int) -> float:
        """Return the realized P&L of the UTC day of ``ts_ns`` (0 when that day has no event yet), USDT."""
        return self.daily_realized_pnl_usdt if ts_ns // DAY_NS == self.day else 0.0

    def day_start_equity_at(self, ts_ns: int) -> float:
        """Return the equity at the start of the UTC day of ``ts_ns``, USDT."""
        return self.day_start_equity_usdt if ts_ns // DAY_NS == self.day else self.equity_usdt


def initial_state(config: ExecutorConfig) -> ExecutorState:
    """Return the state before any event: every symbol FLAT, equity from the configuration."""
    return ExecutorState(
        start_equity_usdt=config.equity_usdt,
        equity_usdt=config.equity_usdt,
        peak_equity_usdt=config.equity_usdt,
        day_start_equity_usdt=config.equity_usdt,
        trading_enabled=config.trading_enabled,
        entry_timeout_ns=config.entry_timeout_ns,
        cooldown_ns=config.cooldown_ns,
    )


# --- inputs of decide ---------------------------------------------------------------------------

MarketData: TypeAlias = ev.Bar | ev.BookSnapshot | ev.Ticker | ev.FeedGap | ev.FeedResynced | ev.FeedStale


@dataclass(frozen=True, slots=True)
class MarketInput:
    """One market message: drives the paper venue (fills, TP/SL, stale exits) and the timers."""

    event: MarketData


@dataclass(frozen=True, slots=True)
class BarrierInput:
    """A closed bar and its ``FactorSnapshot``: gives ``VerdictAwaited`` when the snapshot has an intent."""

    bar: ev.Bar
    factor: ev.FactorSnapshot


@dataclass(frozen=True, slots=True)
class VerdictInput:
    """A closed bar, its snapshot, the verdict on the snapshot's intent and the intent itself.

    ``intent`` is None when the intent could not be read from the log; an approval then is denied
    (rule ``intent_unavailable``), since the order's size and TP/SL come from the intent.
    """

    bar: ev.Bar
    factor: ev.FactorSnapshot
    verdict: ev.VerdictIssued
    intent: ev.IntentProposed | None


@dataclass(frozen=True, slots=True)
class ControlInput:
    """An operator command; its effect is :func:`apply_control`, it publishes nothing."""

    event: ev.TradingStarted | ev.TradingStopped


Input: TypeAlias = MarketInput | BarrierInput | VerdictInput | ControlInput

#: events the fold accepts
Folded: TypeAlias = ev.ExecEvent | ev.OrderFilled


# --- evolve -------------------------------------------------------------------------------------


def evolve(state: ExecutorState, event: Folded) -> ExecutorState:
    """Fold one of the executor's own events into ``state`` and return the new state.

    Parameters
    ----------
    state : ExecutorState
    event : Event
        An ``exec.*`` event or a venue ``OrderFilled``.

    Returns
    -------
    ExecutorState

    Raises
    ------
    LockViolation
        If the event is a transition the Hard Lock forbids (e.g. an entry ``OrderSubmitted`` for a
        symbol that is not FLAT, a ``PositionClosed`` without an open position).
    TypeError
        If ``event`` is not an executor event.
    """
    state = _roll_day(state, event.ts_event)
    if isinstance(event, ev.VerdictAwaited):
        return msgspec.structs.replace(state, awaited=state.awaited | {event.correlation_id})
    if isinstance(event, ev.SignalSuppressed | ev.RiskDenied):
        return msgspec.structs.replace(state, decided=state.decided | {event.correlation_id})
    if isinstance(event, ev.OrderSubmitted):
        return _on_submitted(state, event)
    if isinstance(event, ev.OrderFilled):
        sym = state.symbol(event.symbol)
        expected = ("LOCKED",) if event.reduce_only else ("ENTRY_PENDING",)
        _expect(sym, event, expected)
        return state
    if isinstance(event, ev.PositionOpened):
        sym = _expect(state.symbol(event.symbol), event, ("ENTRY_PENDING",))
        if sym.position_id is not None:
            raise LockViolation(f"expected no position on {event.symbol}, was {sym.position_id}")
        new = msgspec.structs.replace(
            sym,
            position_id=event.position_id,
            entry_price=event.entry_price,
            entry_fee_usdt=event.fee_usdt,
            opened_ts_ns=event.ts_event,
            qty=event.qty,
        )
        return _with(state, event.symbol, new)
    if isinstance(event, ev.LockEngaged):
        sym = _expect(state.symbol(event.symbol), event, ("ENTRY_PENDING",))
        if sym.position_id is None:
            raise LockViolation(f"expected an open position before LockEngaged on {event.symbol}")
        return _with(state, event.symbol, msgspec.structs.replace(sym, lock="LOCKED"))
    if isinstance(event, ev.PositionClosed):
        sym = _expect(state.symbol(event.symbol), event, ("LOCKED",))
        equity = state.equity_usdt + event.realized_pnl_usdt
        new_sym = SymbolState(
            lock="COOLDOWN",
            venue=sym.venue,
            market=sym.market,
            correlation_id=sym.correlation_id,
            cooldown_until_ns=event.ts_event + state.cooldown_ns,
        )
        state = msgspec.structs.replace(
            state,
            equity_usdt=equity,
            realized_pnl_usdt=state.realized_pnl_usdt + event.realized_pnl_usdt,
            peak_equity_usdt=max(state.peak_equity_usdt, equity),
            daily_realized_pnl_usdt=state.daily_realized_pnl_usdt + event.realized_pnl_usdt,
            closed_trades=state.closed_trades + 1,
            winning_trades=state.winning_trades + (event.realized_pnl_usdt > 0),
        )
        return _with(state, event.symbol, new_sym)
    if isinstance(event, ev.EntryExpired | ev.OrderRejected):
        sym = _expect(state.symbol(event.symbol), event, ("ENTRY_PENDING",))
        return _with(state, event.symbol, SymbolState(venue=sym.venue, market=sym.market))
    if isinstance(event, ev.LockReleased):
        sym = _expect(state.symbol(event.symbol), event, ("COOLDOWN",))
        return _with(state, event.symbol, SymbolState(venue=sym.venue, market=sym.market))
    raise TypeError(f"expected an exec.* event or OrderFilled, was {type(event).__name__}")


def fold(state: ExecutorState, events: Iterable[Folded]) -> ExecutorState:
    """Fold ``events`` in order with :func:`evolve`."""
    for e in events:
        state = evolve(state, e)
    return state


def apply_control(state: ExecutorState, event: ev.TradingStarted | ev.TradingStopped) -> ExecutorState:
    """Apply an operator command: ``TradingStopped`` halts new entries, ``TradingStarted`` allows them.

    Open positions keep their exchange-native TP/SL either way.
    """
    return msgspec.structs.replace(state, trading_enabled=isinstance(event, ev.TradingStarted))


def _on_submitted(state: ExecutorState, event: ev.OrderSubmitted) -> ExecutorState:
    sym = state.symbol(event.symbol)
    if event.reduce_only:
        _expect(sym, event, ("LOCKED",))
        return state
    if sym.lock != "FLAT":
        raise LockViolation(f"expected FLAT for an entry on {event.symbol}, was {sym.lock} (order {event.order_id})")
    if event.take_profit is None or event.stop_loss is None:
        raise LockViolation(f"expected an entry with take_profit and stop_loss, was {event!r}")
    new = SymbolState(
        lock="ENTRY_PENDING",
        venue=event.venue,
        market=event.market,
        correlation_id=event.correlation_id,
        order_id=event.order_id,
        side="long" if event.side == "Buy" else "short",
        qty=event.qty,
        price_ref=event.price_ref,
        take_profit=event.take_profit,
        stop_loss=event.stop_loss,
        order_ts_ns=event.ts_event,
        entry_deadline_ns=event.ts_event + state.entry_timeout_ns,
    )
    state = msgspec.structs.replace(state, decided=state.decided | {event.correlation_id})
    return _with(state, event.symbol, new)


def _expect(sym: SymbolState, event: ev.Correlated, locks: tuple[str, ...]) -> SymbolState:
    if sym.lock not in locks or sym.correlation_id != event.correlation_id:
        raise LockViolation(
            f"expected {type(event).__name__} on {event.symbol} in {'/'.join(locks)} for intent "
            f"{event.correlation_id}, was {sym.lock} for {sym.correlation_id}"
        )
    return sym


def _with(state: ExecutorState, symbol: str, sym: SymbolState) -> ExecutorState:
    return msgspec.structs.replace(state, symbols={**state.symbols, symbol: sym})


def _roll_day(state: ExecutorState, ts_ns: int) -> ExecutorState:
    day = ts_ns // DAY_NS
    if day <= state.day:
        return state
    return msgspec.structs.replace(state, day=day, day_start_equity_usdt=state.equity_usdt, daily_realized_pnl_usdt=0.0)


# --- decide -------------------------------------------------------------------------------------


def decide(state: ExecutorState, inp: Input, config: ExecutorConfig) -> list[ev.Event]:
    """Return the events one input causes, in publishing order (pure: no I/O, no clock).

    Parameters
    ----------
    state : ExecutorState
        The state before the input.
    inp : MarketInput | BarrierInput | VerdictInput | ControlInput
    config : ExecutorConfig

    Returns
    -------
    list[Event]
        ``exec.*`` events and venue ``OrderFilled`` fills; fold them with :func:`evolve` in order.

    Raises
    ------
    ValueError
        If a verdict does not belong to the snapshot's intent or to the bar's symbol.
    """
    if isinstance(inp, MarketInput):
        return _on_market(state, inp.event, config)
    if isinstance(inp, BarrierInput):
        return _on_barrier(state, inp)
    if isinstance(inp, VerdictInput):
        return _on_verdict(state, inp, config)
    return []


def advance(state: ExecutorState, inp: Input, config: ExecutorConfig) -> tuple[ExecutorState, list[ev.Event]]:
    """Decide ``inp`` and fold its events (controls are applied); return the new state and the events."""
    if isinstance(inp, ControlInput):
        return apply_control(state, inp.event), []
    events = decide(state, inp, config)
    return fold(state, events), events  # type: ignore[arg-type]


def _on_market(state: ExecutorState, event: MarketData, config: ExecutorConfig) -> list[ev.Event]:
    sym = state.symbol(event.symbol)
    if sym.lock == "ENTRY_PENDING":
        return _on_pending(state, sym, event, config)
    if sym.lock == "LOCKED":
        return _exit_events(sym, event, sym.opened_ts_ns, config)
    if sym.lock == "COOLDOWN" and event.ts_event >= sym.cooldown_until_ns:
        assert sym.correlation_id is not None
        return [
            ev.LockReleased(
                **_envelope("LockReleased", sym, event, event.event_id, event.symbol),
                reason="cooldown_elapsed",
            )
        ]
    return []


def _on_pending(state: ExecutorState, sym: SymbolState, event: MarketData, config: ExecutorConfig) -> list[ev.Event]:
    assert sym.side is not None and sym.order_id is not None
    fill = paper.entry_fill(sym.side, sym.qty, sym.order_ts_ns, event, config)
    if fill is None or fill.active_from_ns > sym.entry_deadline_ns:
        if event.ts_event > sym.entry_deadline_ns:
            timeout_s = (sym.entry_deadline_ns - sym.order_ts_ns) / 1e9
            return [
                ev.EntryExpired(
                    **_envelope("EntryExpired", sym, event, event.event_id, event.symbol),
                    order_id=sym.order_id,
                    reason=f"not filled within {timeout_s:g} s",
                )
            ]
        return []
    filled = ev.OrderFilled(
        **_envelope("OrderFilled", sym, event, event.event_id, event.symbol, sym.order_id),
        order_id=sym.order_id,
        fill_id=derive_id("fill", sym.order_id),
        side=paper.entry_side(sym.side),
        qty=sym.qty,
        price=fill.price,
        fee_usdt=fill.fee_usdt,
        reduce_only=False,
        venue_name=config.venue_name,
    )
    position_id = derive_id("position", sym.correlation_id)
    opened = ev.PositionOpened(
        **_envelope("PositionOpened", sym, event, filled.event_id, event.symbol),
        position_id=position_id,
        side=sym.side,
        qty=sym.qty,
        entry_price=fill.price,
        take_profit=sym.take_profit,
        stop_loss=sym.stop_loss,
        fee_usdt=fill.fee_usdt,
    )
    engaged = ev.LockEngaged(
        **_envelope("LockEngaged", sym, event, opened.event_id, event.symbol),
        reason="position_opened",
    )
    events: list[ev.Event] = [filled, opened, engaged]
    if isinstance(event, ev.Bar):  # filled at this bar's open: its range happened while open
        after = fold(state, [filled, opened, engaged]).symbol(event.symbol)
        events += _exit_events(after, event, fill.active_from_ns, config)
    return events


def _exit_events(sym: SymbolState, event: MarketData, active_from_ns: int, config: ExecutorConfig) -> list[ev.Event]:
    assert sym.side is not None and sym.correlation_id is not None
    trigger = paper.exit_trigger(sym.side, sym.take_profit, sym.stop_loss, active_from_ns, event)
    events: list[ev.Event] = []
    if trigger is not None:
        reason, trigger_price = trigger
        causation = event.event_id
    else:
        holding = event.ts_event - sym.opened_ts_ns
        price = paper.market_price(sym.side, event)
        if (
            holding < max(config.max_hold_ns, config.min_hold_ns)
            or price is None
            or paper.gross_return(sym.side, sym.entry_price, price) >= config.stale_band
        ):
            return []
        reason, trigger_price = "stale_exit", price
        stale_order_id = order_link_id(sym.correlation_id, "stale_exit")
        submitted = ev.OrderSubmitted(
            **_envelope("OrderSubmitted", sym, event, event.event_id, event.symbol, stale_order_id),
            order_id=stale_order_id,
            side=paper.exit_side(sym.side),
            qty=sym.qty,
            price_ref=price,
            reduce_only=True,
            venue_name=config.venue_name,
        )
        events.append(submitted)
        causation = submitted.event_id
    fill = paper.exit_fill(sym.side, reason, trigger_price, sym.qty, config)
    order_id = order_link_id(sym.correlation_id, reason)
    filled = ev.OrderFilled(
        **_envelope("OrderFilled", sym, event, causation, event.symbol, order_id),
        order_id=order_id,
        fill_id=derive_id("fill", order_id),
        side=paper.exit_side(sym.side),
        qty=sym.qty,
        price=fill.price,
        fee_usdt=fill.fee_usdt,
        reduce_only=True,
        venue_name=config.venue_name,
    )
    fees = sym.entry_fee_usdt + fill.fee_usdt
    pnl = paper.realized_pnl(sym.side, sym.qty, sym.entry_price, fill.price, fees)
    assert sym.position_id is not None
    closed = ev.PositionClosed(
        **_envelope("PositionClosed", sym, event, filled.event_id, event.symbol),
        position_id=sym.position_id,
        side=sym.side,
        qty=sym.qty,
        entry_price=sym.entry_price,
        exit_price=fill.price,
        exit_reason=reason,
        realized_pnl_usdt=pnl,
        fee_usdt=fees,
        return_fraction=pnl / (sym.entry_price * sym.qty),
        holding_ns=event.ts_event - sym.opened_ts_ns,
    )
    return [*events, filled, closed]


def _on_barrier(state: ExecutorState, inp: BarrierInput) -> list[ev.Event]:
    iid = inp.factor.intent_id
    if inp.factor.bar_id != inp.bar.event_id:
        raise ValueError(f"expected the snapshot of bar {inp.bar.event_id}, was of bar {inp.factor.bar_id}")
    if iid is None or iid in state.decided:
        return []
    bar = inp.bar
    return [
        ev.VerdictAwaited(
            event_id=derive_id("VerdictAwaited", iid),
            ts_event=bar.ts_event,
            ts_init=bar.ts_event,
            symbol=bar.symbol,
            venue=bar.venue,
            market=bar.market,
            correlation_id=iid,
            causation_id=inp.factor.event_id,
            lock_state=state.symbol(bar.symbol).lock,
        )
    ]


def _on_verdict(state: ExecutorState, inp: VerdictInput, config: ExecutorConfig) -> list[ev.Event]:
    bar, verdict, intent = inp.bar, inp.verdict, inp.intent
    iid = verdict.correlation_id
    if iid != inp.factor.intent_id or verdict.symbol != bar.symbol:
        raise ValueError(
            f"expected a verdict on intent {inp.factor.intent_id} for {bar.symbol}, was on {iid} for {verdict.symbol}"
        )
    if intent is not None and (intent.correlation_id != iid or intent.symbol != bar.symbol):
        raise ValueError(f"expected intent {iid} on {bar.symbol}, was {intent.correlation_id} on {intent.symbol}")
    if iid in state.decided:
        return []  # a redelivered verdict: its decision is already in the state
    sym = state.symbol(bar.symbol)
    head: dict[str, Any] = {
        "ts_event": bar.ts_event,
        "ts_init": bar.ts_event,
        "symbol": bar.symbol,
        "venue": bar.venue,
        "market": bar.market,
        "correlation_id": iid,
        "causation_id": verdict.event_id,
    }
    if sym.lock != "FLAT":
        return [
            ev.SignalSuppressed(
                event_id=derive_id("SignalSuppressed", iid),
                **head,
                reason=_suppression_reason(sym, intent),
                lock_state=sym.lock,
                decision=verdict.decision,
            )
        ]
    if verdict.decision != "approve":
        return []  # the verdict itself is the record
    if intent is None:
        return [
            ev.RiskDenied(
                event_id=derive_id("RiskDenied", iid),
                **head,
                rule="intent_unavailable",
                reason=f"intent {iid} not found on the log; size and TP/SL unknown",
            )
        ]
    qty = intent.qty * verdict.size_multiplier
    ctx = risk.RiskContext(
        qty=qty,
        price_ref=intent.entry_price,
        stop_loss=intent.stop_loss,
        leverage=intent.leverage,
        equity_usdt=state.equity_usdt,
        open_notional_usdt=state.open_notional_usdt,
        open_count=state.exposure_count,
        trading_enabled=state.trading_enabled,
        daily_pnl_usdt=state.daily_pnl_at(bar.ts_event),
        day_start_equity_usdt=state.day_start_equity_at(bar.ts_event),
    )
    denial = risk.check(ctx, config)
    if denial is not None:
        rule, reason = denial
        return [ev.RiskDenied(event_id=derive_id("RiskDenied", iid), **head, rule=rule, reason=reason)]
    order_id = order_link_id(iid)
    return [
        ev.OrderSubmitted(
            event_id=derive_id("OrderSubmitted", iid, order_id),
            **head,
            order_id=order_id,
            side=paper.entry_side(intent.side),
            order_type="Market",
            qty=qty,
            price_ref=intent.entry_price,
            take_profit=intent.take_profit,
            stop_loss=intent.stop_loss,
            reduce_only=False,
            venue_name=config.venue_name,
        )
    ]


def _suppression_reason(sym: SymbolState, intent: ev.IntentProposed | None) -> str:
    if sym.lock == "COOLDOWN":
        return "cooldown"
    if sym.lock == "ENTRY_PENDING":
        return "entry_pending"
    if intent is None:
        return "locked"
    return "locked_same_side" if intent.side == sym.side else "locked_opposing_side"


def _envelope(kind: str, sym: SymbolState, event: ev.Event, causation_id: str, symbol: str, *parts: object) -> dict:
    assert sym.correlation_id is not None
    return {
        "event_id": derive_id(kind, sym.correlation_id, *parts),
        "ts_event": event.ts_event,
        "ts_init": event.ts_event,
        "symbol": symbol,
        "venue": sym.venue,
        "market": sym.market,
        "correlation_id": sym.correlation_id,
        "causation_id": causation_id,
    }
