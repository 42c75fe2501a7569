"""The Structural Hard Lock: the executor's state as a pure fold of its own events.

::

    FLAT ──approved verdict, risk ok──> ENTRY_PENDING ──filled──> LOCKED ──TP/SL | stale exit──> COOLDOWN
      ▲                                   │ not filled in time / rejected                         │ elapsed
      └───────────────────────────────────┴────────────────────────────────────────────────────────┘

Managing the open position moves no lock: ``StopMoved`` sets its exits, ``PositionReduced`` lowers its
``qty`` and adds the realized part to the symbol's account (equity and the daily breaker see it at once).

:func:`evolve` folds one executor event (``exec.*``, and the venue's ``OrderFilled``) into an
:class:`ExecutorState`. Which transitions exist is written once, in :data:`nertz_common.lock.TRANSITIONS`
(the validator's memory and the api's projection read the same table); a pair that is not in it raises
:class:`LockViolation`, so an order can structurally not be submitted for a symbol that is not FLAT.
Each event type has its own small fold function (after eventsourcing's mutators).
:func:`apply_control` applies ``TradingStarted``/``TradingStopped`` (inputs, not outputs), by scope.

Conventions: money in USDT, quantities in base currency, times in UNIX ns, returns as fractions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import msgspec
from msgspec import Struct

from nertz_common import events as ev
from nertz_common import lock
from nertz_common.errors import InvariantViolation
from nertz_executor.core.config import DAY_NS, ExecutorConfig

#: gauge value of each lock state (metrics: 0 = FLAT .. 3 = COOLDOWN)
LOCK_LEVEL = lock.LEVEL


class LockViolation(InvariantViolation):
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
        When the position opened, UNIX ns.
    cooldown_until_ns : int
        End of the cooldown, UNIX ns (COOLDOWN only).
    exit_order_id : str or None
        The executor's own exit order in flight (a stale exit sent to a real venue, not yet filled).
    filled_qty, filled_value_usdt, filled_fee_usdt : float
        A real venue's fills of the order in hand so far (the entry's while ENTRY_PENDING, the exit's
        while LOCKED): quantity (base currency), ``Σ qty × price`` and fees (USDT). A position opens,
        or closes, once they cover the order (:func:`absorb`).
    funding_usdt : float
        Funding paid on the open position so far, USDT (received < 0); part of its realized P&L.
    fill_ids : tuple[str, ...]
        Ids of the venue reports of the order in hand already taken (a duplicated report is ignored).
    adopted : bool
        The position was opened outside Nertz and adopted at reconciliation.
    tp1_order_id : str or None
        The scaled plan's TP1 (a reduce-only Limit order) while it works; None without one.
    tp1_qty, tp1_price : float
        TP1's quantity (base currency) and limit price (USDT).
    tp1_filled_qty : float
        What TP1 closed so far (its ``PositionReduced``), base currency; TP1 is done once it covers
        ``tp1_qty``.
    trailing_distance, active_price : float
        The position's trailing stop (``StopMoved`` phase ``trail``): distance behind the best price and
        where it starts following, USDT; 0 without one.
    reduced_qty, reduced_pnl_usdt, reduced_fee_usdt : float
        What earlier ``PositionReduced`` closed: quantity (base currency), realized P&L and fees (USDT);
        ``qty`` is what is left, and ``entry_fee_usdt`` the entry fee's share of it.
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
    exit_order_id: str | None = None
    filled_qty: float = 0.0
    filled_value_usdt: float = 0.0
    filled_fee_usdt: float = 0.0
    funding_usdt: float = 0.0
    fill_ids: tuple[str, ...] = ()
    adopted: bool = False
    tp1_order_id: str | None = None
    tp1_qty: float = 0.0
    tp1_price: float = 0.0
    tp1_filled_qty: float = 0.0
    trailing_distance: float = 0.0
    active_price: float = 0.0
    reduced_qty: float = 0.0
    reduced_pnl_usdt: float = 0.0
    reduced_fee_usdt: float = 0.0

    @property
    def filled_price(self) -> float:
        """Volume-weighted price of the fills so far, USDT (0 before any)."""
        return self.filled_value_usdt / self.filled_qty if self.filled_qty > 0 else 0.0


FLAT = SymbolState()


class SymbolAccount(Struct, frozen=True, kw_only=True):
    """What one symbol's round trips added to the account.

    The account every symbol shares is the sum of these, so it can be read as of any position by
    taking each symbol's account as of that position (:meth:`ExecutorState.as_of`).

    Attributes
    ----------
    realized_pnl_usdt : float
        Realized P&L net of fees of the symbol's round trips, USDT.
    pnl_day : int
        UTC day index (``ts_event // 86_400e9``) of the symbol's last close; -1 before any.
    day_pnl_usdt : float
        Realized P&L of the symbol on ``pnl_day``, USDT.
    closed_trades, winning_trades : int
        Round trips closed, and those with a positive net P&L.
    closes : tuple of TradeResult
        The symbol's latest closes, oldest first: every close within ``drawdown_window_ns`` of its last
        one, and at least the last ``performance_window`` (the adaptive leverage's inputs: peak equity and
        recent results, read account-wide by :meth:`ExecutorState.peak_equity_at` and
        :meth:`ExecutorState.recent_trades`).
    """

    realized_pnl_usdt: float = 0.0
    pnl_day: int = -1
    day_pnl_usdt: float = 0.0
    closed_trades: int = 0
    winning_trades: int = 0
    closes: tuple[TradeResult, ...] = ()

    def pnl_on(self, day: int) -> float:
        """Realized P&L of the UTC day ``day``, USDT (0 when the last close was another day)."""
        return self.day_pnl_usdt if self.pnl_day == day else 0.0


NO_TRADES = SymbolAccount()


class TradeResult(Struct, frozen=True, kw_only=True):
    """One closed round trip as the adaptive leverage reads it: when it closed (UNIX ns, the
    ``PositionClosed``'s ``ts_event``) and its realized P&L net of fees (USDT)."""

    ts_ns: int
    pnl_usdt: float


class FundingRate(Struct, frozen=True, kw_only=True):
    """The latest funding rate of a symbol (``Ticker.funding_rate``): a fraction per ``interval_h`` hours."""

    rate: float
    interval_h: int = 8

    @property
    def per_8h(self) -> float:
        """The rate per 8 h, fraction: ``rate × 8 / interval_h``."""
        return self.rate * 8.0 / self.interval_h


class ExecutorState(Struct, frozen=True, kw_only=True):
    """The executor's whole state: a fold of its own events (plus operator commands).

    Treat as immutable: :func:`evolve` returns a new state and never mutates ``symbols``. The account
    figures (equity, realized P&L, exposure, today's P&L) are sums over the symbols, so a view *as of*
    an earlier position is the same struct with some symbols' entries put back (:meth:`as_of`).

    Attributes
    ----------
    symbols : dict[str, SymbolState]
        Per-symbol lock; a missing symbol is FLAT.
    accounts : dict[str, SymbolAccount]
        Per-symbol realized results; a missing symbol has none.
    start_equity_usdt : float
        Equity at the start (configuration), USDT.
    trading_enabled : bool
        False after ``TradingStopped`` for every symbol (scope ``all``) until ``TradingStarted``.
    halted : frozenset[str]
        Symbols stopped by a per-symbol ``TradingStopped`` (scope = the symbol).
    entry_timeout_ns, cooldown_ns : int
        Lock timings the fold needs (from the configuration), ns.
    wallet_equity_usdt : float or None
        The account equity a real venue last reported (``WalletSnapshot``), USDT; None on paper, where
        equity is ``start_equity_usdt + realized_pnl_usdt``.
    instruments : dict[str, InstrumentSpec]
        The latest ``InstrumentSpec`` of each symbol (an input, kept so snapshots hold it).
    funding : dict[str, FundingRate]
        The latest funding rate of each symbol, from its tickers (an input).
    volatility : dict[str, tuple[float, ...]]
        Per symbol, the ATR / entry price of its last ``volatility_window`` intents, oldest first (an
        input; the adaptive leverage's reference volatility when none is configured).
    drawdown_window_ns, performance_window, volatility_window : int
        How much of the closes and intents the fold keeps (from the configuration).
    """

    symbols: dict[str, SymbolState] = {}
    accounts: dict[str, SymbolAccount] = {}
    start_equity_usdt: float
    trading_enabled: bool = True
    halted: frozenset[str] = frozenset()
    entry_timeout_ns: int
    cooldown_ns: int
    wallet_equity_usdt: float | None = None
    instruments: dict[str, ev.InstrumentSpec] = {}
    funding: dict[str, FundingRate] = {}
    volatility: dict[str, tuple[float, ...]] = {}
    drawdown_window_ns: int = 30 * DAY_NS
    performance_window: int = 20
    volatility_window: int = 50

    def symbol(self, symbol: str) -> SymbolState:
        """Return the state of ``symbol`` (FLAT when never seen)."""
        return self.symbols.get(symbol, FLAT)

    def account(self, symbol: str) -> SymbolAccount:
        """Return the realized results of ``symbol`` (none when it never closed a trade)."""
        return self.accounts.get(symbol, NO_TRADES)

    def trading_allowed(self, symbol: str) -> bool:
        """True unless trading is stopped for every symbol or for this one."""
        return self.trading_enabled and symbol not in self.halted

    def as_of(self, symbols: dict[str, tuple[SymbolState, SymbolAccount]]) -> ExecutorState:
        """Return this state with the given symbols' lock and account put back (a view as of earlier)."""
        if not symbols:
            return self
        locks = {**self.symbols, **{s: v[0] for s, v in symbols.items()}}
        accounts = {**self.accounts, **{s: v[1] for s, v in symbols.items()}}
        return msgspec.structs.replace(self, symbols=locks, accounts=accounts)

    @property
    def realized_pnl_usdt(self) -> float:
        """Realized P&L net of fees since the start, USDT."""
        return sum(a.realized_pnl_usdt for a in self.accounts.values())

    @property
    def equity_usdt(self) -> float:
        """The venue's reported equity when there is one, else ``start_equity_usdt + realized_pnl_usdt``, USDT."""
        if self.wallet_equity_usdt is not None:
            return self.wallet_equity_usdt
        return self.start_equity_usdt + self.realized_pnl_usdt

    @property
    def closed_trades(self) -> int:
        """Round trips closed."""
        return sum(a.closed_trades for a in self.accounts.values())

    @property
    def winning_trades(self) -> int:
        """Round trips closed with a positive net P&L."""
        return sum(a.winning_trades for a in self.accounts.values())

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

    def daily_pnl_at(self, ts_ns: int) -> float:
        """Return the realized P&L of the UTC day of ``ts_ns``, USDT."""
        day = ts_ns // DAY_NS
        return sum(a.pnl_on(day) for a in self.accounts.values())

    def day_start_equity_at(self, ts_ns: int) -> float:
        """Return the equity at the start of the UTC day of ``ts_ns``, USDT."""
        return self.equity_usdt - self.daily_pnl_at(ts_ns)

    def _closes(self, since_ns: int | None = None) -> list[tuple[int, str, int, TradeResult]]:
        return sorted(
            (t.ts_ns, s, i, t)
            for s, a in self.accounts.items()
            for i, t in enumerate(a.closes)
            if since_ns is None or t.ts_ns >= since_ns
        )

    def recent_trades(self, n: int) -> list[TradeResult]:
        """Return the last ``n`` closed trades account-wide, oldest first.

        Trades are ordered by close time (``ts_event``), ties by symbol, so the answer is the same
        whatever order the symbols' steps ran in.
        """
        return [c[3] for c in self._closes()[-n:]] if n > 0 else []

    def peak_equity_at(self, ts_ns: int) -> float:
        """Return the highest account equity over the closes of the ``drawdown_window_ns`` before
        ``ts_ns`` (and now), USDT.

        Walks back from today's equity (:attr:`equity_usdt`) through the window's closes, latest first
        (close time, ties by symbol): the equity before a close is the equity after it less its P&L.
        """
        equity = peak = self.equity_usdt
        for c in reversed(self._closes(ts_ns - self.drawdown_window_ns)):
            equity -= c[3].pnl_usdt
            peak = max(peak, equity)
        return peak

    def exposure_in_group(self, group: str, group_of: Callable[[str], str]) -> int:
        """Return the positions open or pending (LOCKED or ENTRY_PENDING) of the symbols in ``group``."""
        engaged = ("LOCKED", "ENTRY_PENDING")
        return sum(1 for s, st in self.symbols.items() if st.lock in engaged and group_of(s) == group)

    def drawdown_at(self, ts_ns: int) -> float:
        """Return the account drawdown from its peak equity (:meth:`peak_equity_at`), fraction in [0, 1]."""
        peak = self.peak_equity_at(ts_ns)
        return min(1.0, max(0.0, (peak - self.equity_usdt) / peak)) if peak > 0 else 0.0


def initial_state(config: ExecutorConfig) -> ExecutorState:
    """Return the state before any event: every symbol FLAT, equity from the configuration."""
    return ExecutorState(
        start_equity_usdt=config.equity_usdt,
        trading_enabled=config.trading_enabled,
        entry_timeout_ns=config.entry_timeout_ns,
        cooldown_ns=config.cooldown_ns,
        drawdown_window_ns=config.drawdown_window_ns,
        performance_window=config.performance_window,
        volatility_window=config.volatility_window,
    )


def with_instrument(state: ExecutorState, spec: ev.InstrumentSpec) -> ExecutorState:
    """Keep ``spec`` as the symbol's trading rules (the latest wins)."""
    return msgspec.structs.replace(state, instruments={**state.instruments, spec.symbol: spec})


def with_funding(state: ExecutorState, ticker: ev.Ticker) -> ExecutorState:
    """Keep the ticker's funding rate as the symbol's latest (unchanged when the ticker has none).

    ``funding_interval_h`` defaults to 8 h when the ticker does not say.
    """
    if ticker.funding_rate is None:
        return state
    rate = FundingRate(rate=ticker.funding_rate, interval_h=ticker.funding_interval_h or 8)
    if state.funding.get(ticker.symbol) == rate:
        return state
    return msgspec.structs.replace(state, funding={**state.funding, ticker.symbol: rate})


def with_volatility(state: ExecutorState, symbol: str, atr_fraction: float) -> ExecutorState:
    """Add an intent's ATR / entry price (fraction) to the symbol's last ``volatility_window``."""
    kept = (*state.volatility.get(symbol, ()), atr_fraction)[-state.volatility_window :]
    return msgspec.structs.replace(state, volatility={**state.volatility, symbol: kept})


#: events the fold accepts
Folded: TypeAlias = ev.ExecEvent | ev.OrderFilled


# --- evolve -------------------------------------------------------------------------------------


def evolve(state: ExecutorState, event: ev.Event) -> ExecutorState:
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
        If the event is a transition the Hard Lock forbids (:data:`nertz_common.lock.TRANSITIONS`), or
        names another intent than the one the symbol holds (e.g. an entry ``OrderSubmitted`` for a
        symbol that is not FLAT, a ``PositionClosed`` without an open position).
    TypeError
        If ``event`` is not an executor event.
    """
    fold_one = _FOLDS.get(type(event))
    if fold_one is None:
        raise TypeError(f"expected an exec.* event or OrderFilled, was {type(event).__name__}")
    t = lock.transition_of(event)
    if t is None:
        return fold_one(state, state.symbol(event.symbol), event)  # type: ignore[attr-defined]
    sym = state.symbol(event.symbol)  # type: ignore[attr-defined]
    target = lock.TRANSITIONS.get((sym.lock, t))
    if target is None:
        raise LockViolation(
            f"expected {type(event).__name__} ({t}) on {event.symbol} in a state that allows it, "  # type: ignore[attr-defined]
            f"was {sym.lock} for intent {sym.correlation_id} (event's intent {event.correlation_id})"  # type: ignore[attr-defined]
        )
    if t not in ("entry_submitted", "position_adopted") and sym.correlation_id != event.correlation_id:  # type: ignore[attr-defined]
        raise LockViolation(
            f"expected {type(event).__name__} on {event.symbol} for intent {sym.correlation_id}, "  # type: ignore[attr-defined]
            f"was for {event.correlation_id}"  # type: ignore[attr-defined]
        )
    return fold_one(state, sym, event)


def fold(state: ExecutorState, events: Iterable[ev.Event]) -> ExecutorState:
    """Fold ``events`` in order with :func:`evolve`."""
    for e in events:
        state = evolve(state, e)
    return state


def apply_control(state: ExecutorState, event: ev.TradingStarted | ev.TradingStopped) -> ExecutorState:
    """Apply an operator command in its scope: ``all`` or one symbol.

    ``TradingStopped(all)`` halts new entries on every symbol; ``TradingStopped(<symbol>)`` on that one.
    ``TradingStarted(all)`` lifts every halt; ``TradingStarted(<symbol>)`` lifts that symbol's (a stop of
    every symbol stays). Open positions keep their exchange-native TP/SL either way.
    """
    start = isinstance(event, ev.TradingStarted)
    if event.scope == "all":
        return msgspec.structs.replace(state, trading_enabled=start, halted=frozenset() if start else state.halted)
    halted = state.halted - {event.scope} if start else state.halted | {event.scope}
    return msgspec.structs.replace(state, halted=halted)


def _with(state: ExecutorState, symbol: str, sym: SymbolState) -> ExecutorState:
    return msgspec.structs.replace(state, symbols={**state.symbols, symbol: sym})


def _no_change(state: ExecutorState, sym: SymbolState, e: Any) -> ExecutorState:
    return state


def _on_order_submitted(state: ExecutorState, sym: SymbolState, e: ev.OrderSubmitted) -> ExecutorState:
    if e.reduce_only and is_tp1(e):
        tp1 = msgspec.structs.replace(sym, tp1_order_id=e.order_id, tp1_qty=e.qty, tp1_price=e.price or e.price_ref)
        return _with(state, e.symbol, tp1)
    if e.reduce_only:
        return _with(state, e.symbol, msgspec.structs.replace(sym, exit_order_id=e.order_id))
    if e.take_profit is None or e.stop_loss is None:
        raise LockViolation(f"expected an entry with take_profit and stop_loss, was {e!r}")
    new = SymbolState(
        lock="ENTRY_PENDING",
        venue=e.venue,
        market=e.market,
        correlation_id=e.correlation_id,
        order_id=e.order_id,
        side="long" if e.side == "Buy" else "short",
        qty=e.qty,
        price_ref=e.price_ref,
        take_profit=e.take_profit,
        stop_loss=e.stop_loss,
        order_ts_ns=e.ts_event,
        entry_deadline_ns=e.ts_event + state.entry_timeout_ns,
    )
    return _with(state, e.symbol, new)


def _on_position_opened(state: ExecutorState, sym: SymbolState, e: ev.PositionOpened) -> ExecutorState:
    if sym.position_id is not None:
        raise LockViolation(f"expected no position on {e.symbol}, was {sym.position_id}")
    new = msgspec.structs.replace(
        sym,
        position_id=e.position_id,
        entry_price=e.entry_price,
        entry_fee_usdt=e.fee_usdt,
        opened_ts_ns=e.ts_event,
        qty=e.qty,
        side=e.side,
        take_profit=e.take_profit,
        stop_loss=e.stop_loss,
        filled_qty=0.0,
        filled_value_usdt=0.0,
        filled_fee_usdt=0.0,
    )
    return _with(state, e.symbol, new)


def _on_lock_engaged(state: ExecutorState, sym: SymbolState, e: ev.LockEngaged) -> ExecutorState:
    if sym.position_id is None:
        raise LockViolation(f"expected an open position before LockEngaged on {e.symbol}")
    return _with(state, e.symbol, msgspec.structs.replace(sym, lock="LOCKED"))


def _on_position_closed(state: ExecutorState, sym: SymbolState, e: ev.PositionClosed) -> ExecutorState:
    acc = state.account(e.symbol)
    day = e.ts_event // DAY_NS
    pnl = e.realized_pnl_usdt  # what is left of the position (its reductions were added as they happened)
    trade = e.trade_pnl_usdt  # the round trip's, by which it counts as a win and in the recent results
    new_acc = SymbolAccount(
        realized_pnl_usdt=acc.realized_pnl_usdt + pnl,
        pnl_day=day,
        day_pnl_usdt=acc.pnl_on(day) + pnl,
        closed_trades=acc.closed_trades + 1,
        winning_trades=acc.winning_trades + (trade > 0),
        closes=_kept(acc.closes, TradeResult(ts_ns=e.ts_event, pnl_usdt=trade), state),
    )
    new_sym = SymbolState(
        lock="COOLDOWN",
        venue=sym.venue,
        market=sym.market,
        correlation_id=sym.correlation_id,
        cooldown_until_ns=e.ts_event + state.cooldown_ns,
    )
    state = msgspec.structs.replace(state, accounts={**state.accounts, e.symbol: new_acc})
    return _with(state, e.symbol, new_sym)


def _kept(closes: tuple[TradeResult, ...], new: TradeResult, state: ExecutorState) -> tuple[TradeResult, ...]:
    # every close within the drawdown window of this one, and at least the last performance_window
    out = (*closes, new)
    since = new.ts_ns - state.drawdown_window_ns
    first = next((i for i, t in enumerate(out) if t.ts_ns >= since), len(out))
    return out[min(first, max(0, len(out) - state.performance_window)) :]


def _to_flat(state: ExecutorState, sym: SymbolState, e: ev.Correlated) -> ExecutorState:
    return _with(state, e.symbol, SymbolState(venue=sym.venue, market=sym.market))


def _on_order_rejected(state: ExecutorState, sym: SymbolState, e: ev.OrderRejected) -> ExecutorState:
    if e.reduce_only and sym.tp1_order_id is not None and e.order_id == sym.tp1_order_id:
        # TP1 is gone: the rest of the position rides to TP2 (or its stop)
        return _with(state, e.symbol, msgspec.structs.replace(sym, tp1_order_id=None, tp1_qty=0.0, tp1_price=0.0))
    if e.reduce_only:  # the exit may be sent again
        return _with(state, e.symbol, msgspec.structs.replace(sym, exit_order_id=None))
    return _to_flat(state, sym, e)


def _managed(sym: SymbolState, e: ev.PositionReduced | ev.StopMoved) -> None:
    """Management of the open position: no lock transition, but only of the position in hand."""
    if sym.lock != "LOCKED" or sym.position_id != e.position_id or sym.correlation_id != e.correlation_id:
        raise LockViolation(
            f"expected {type(e).__name__} of the open position on {e.symbol} ({sym.position_id}, intent "
            f"{sym.correlation_id}), was of {e.position_id} (intent {e.correlation_id}) in {sym.lock}"
        )


def _on_position_reduced(state: ExecutorState, sym: SymbolState, e: ev.PositionReduced) -> ExecutorState:
    _managed(sym, e)
    if not 0 < e.qty_closed < sym.qty:
        raise LockViolation(f"expected 0 < qty_closed < {sym.qty:g} on {e.symbol} (else a close), was {e.qty_closed:g}")
    share = entry_fee_share(sym, e.qty_closed)
    new = msgspec.structs.replace(
        sym,
        qty=e.qty_left,
        entry_fee_usdt=sym.entry_fee_usdt - share,
        tp1_filled_qty=sym.tp1_filled_qty + (e.qty_closed if e.order_id == sym.tp1_order_id else 0.0),
        reduced_qty=sym.reduced_qty + e.qty_closed,
        reduced_pnl_usdt=sym.reduced_pnl_usdt + e.realized_pnl_usdt,
        reduced_fee_usdt=sym.reduced_fee_usdt + e.fee_usdt,
    )
    # the realized part counts in the account at once (equity, today's P&L: the daily breaker)
    acc = state.account(e.symbol)
    day = e.ts_event // DAY_NS
    pnl = e.realized_pnl_usdt
    new_acc = msgspec.structs.replace(
        acc, realized_pnl_usdt=acc.realized_pnl_usdt + pnl, pnl_day=day, day_pnl_usdt=acc.pnl_on(day) + pnl
    )
    state = msgspec.structs.replace(state, accounts={**state.accounts, e.symbol: new_acc})
    return _with(state, e.symbol, new)


def _on_stop_moved(state: ExecutorState, sym: SymbolState, e: ev.StopMoved) -> ExecutorState:
    _managed(sym, e)
    new = msgspec.structs.replace(
        sym,
        stop_loss=e.stop_loss,
        take_profit=e.take_profit or 0.0,
        trailing_distance=e.trailing_distance or 0.0,
        active_price=e.active_price or 0.0,
    )
    return _with(state, e.symbol, new)


def is_tp1(order: ev.OrderSubmitted) -> bool:
    """True if ``order`` is the scaled plan's TP1: a reduce-only Limit order sent to take profit."""
    return order.reduce_only and order.order_type == "Limit" and order.exit_reason == "take_profit"


def entry_fee_share(sym: SymbolState, qty_closed: float) -> float:
    """Return the share of the position's (remaining) entry fee that ``qty_closed`` of it carries, USDT."""
    return sym.entry_fee_usdt * qty_closed / sym.qty if sym.qty > 0 else 0.0


def _on_venue_mismatch(state: ExecutorState, sym: SymbolState, e: ev.VenueMismatch) -> ExecutorState:
    if e.action == "adopted":  # a position opened outside Nertz: its PositionOpened and LockEngaged follow
        adopted = SymbolState(
            lock="ENTRY_PENDING", venue=sym.venue, market=sym.market, correlation_id=e.correlation_id, adopted=True
        )
        return _with(state, e.symbol, adopted)
    if e.action == "halted":
        return msgspec.structs.replace(state, halted=state.halted | {e.symbol})
    return state


# --- what a real venue reports (inputs, folded into the symbol in hand) ---------------------------


def absorb(state: ExecutorState, report: ev.OrderFilled | ev.FundingSettled | ev.WalletSnapshot) -> ExecutorState:
    """Fold a real venue's report into ``state``: a fill adds to the fills of the order in hand, a
    funding payment to the position's funding, a wallet report sets the equity.

    The caller (the executor) decides what a report means (a position opened, closed, or a report the
    log does not explain) before absorbing it; this only keeps the running sums, so a restart
    (snapshot + tail) resumes them.
    """
    if isinstance(report, ev.WalletSnapshot):
        return msgspec.structs.replace(state, wallet_equity_usdt=report.equity_usdt)
    sym = state.symbol(report.symbol)
    ids = (*sym.fill_ids[-63:], report.fill_id)
    if isinstance(report, ev.OrderFilled) and report.reduce_only and report.order_id == sym.tp1_order_id:
        # a fill of TP1 reduces the position (its PositionReduced), it does not add to the close
        return _with(state, report.symbol, msgspec.structs.replace(sym, fill_ids=ids))
    if isinstance(report, ev.FundingSettled):
        return _with(
            state,
            report.symbol,
            msgspec.structs.replace(sym, funding_usdt=sym.funding_usdt + report.fee_usdt, fill_ids=ids),
        )
    new = msgspec.structs.replace(
        sym,
        filled_qty=sym.filled_qty + report.qty,
        filled_value_usdt=sym.filled_value_usdt + report.qty * report.price,
        filled_fee_usdt=sym.filled_fee_usdt + report.fee_usdt,
        fill_ids=ids,
    )
    return _with(state, report.symbol, new)


_FOLDS: dict[type[ev.Event], Callable[[ExecutorState, SymbolState, Any], ExecutorState]] = {
    ev.VerdictAwaited: _no_change,
    ev.SignalSuppressed: _no_change,
    ev.RiskDenied: _no_change,
    ev.OrderSubmitted: _on_order_submitted,
    ev.OrderFilled: _no_change,
    ev.OrderRejected: _on_order_rejected,
    ev.PositionOpened: _on_position_opened,
    ev.LockEngaged: _on_lock_engaged,
    ev.PositionClosed: _on_position_closed,
    ev.EntryExpired: _to_flat,
    ev.LockReleased: _to_flat,
    ev.VenueMismatch: _on_venue_mismatch,
    ev.PositionReduced: _on_position_reduced,
    ev.StopMoved: _on_stop_moved,
}
