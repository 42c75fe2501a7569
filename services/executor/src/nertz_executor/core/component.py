"""The executor as a kernel component: the Hard Lock, the risk guard and a venue, pure and synchronous.

Driver inputs, in log order: market data (``md.bar``, ``md.book``, ``md.ticker``, ``md.status``) and
operator commands (``sys.control``, applied where they sit in the log). Joins: at every closed bar the
executor waits for that bar's ``FactorSnapshot`` (signal publishes exactly one per closed bar); if the
snapshot names an intent it publishes ``VerdictAwaited`` (the validator's rendezvous), then joins the
``IntentProposed`` and the ``VerdictIssued`` of that intent, and decides:

- a verdict for a symbol whose lock is engaged (ENTRY_PENDING, LOCKED, COOLDOWN) becomes
  ``SignalSuppressed`` and never reaches the venue;
- a rejected verdict in FLAT is its own record (no event);
- an approved one goes through the risk guard (``RiskDenied(rule, reason)``) and becomes an entry
  ``OrderSubmitted`` with exchange-native take-profit and stop-loss, sent to the venue.

Steps are scoped by symbol: while one symbol waits for its snapshot, intent or verdict, only that
symbol's later inputs are held, so a slow model verdict never delays another symbol's fills, TP/SL or
timers. The verdict join is *ordered*: entry decisions complete in log order, and each reads the
account every symbol shares (equity, exposure, today's P&L) as of its own bar's position, with what
other symbols did at later positions taken out (:meth:`Executor._account_as_of`). So the decisions are
those of one executor handling every input in log order, whatever the verdicts' timing.

Every market event is shown to the venue first (fills, TP/SL), then the lock's timers run: an entry not
filled in time expires, a position held past ``max_hold`` (and ``min_hold``) with a return below the
band is closed at market (stale exit), a cooldown elapses. Every event is folded with
:func:`~nertz_executor.core.lock.evolve` *before* it is returned, so a transition the lock forbids
raises before anything is published.

Conventions: every event's ``ts_event = ts_init`` = the ``ts_event`` of the input being handled;
``event_id = derive_id(<type>, correlation_id, ...)``; ``correlation_id`` is the intent id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from nertz_common import events as ev
from nertz_common.derive import derive
from nertz_common.ids import derive_id, order_link_id
from nertz_common.node.component import Component, Join
from nertz_executor.core import risk, rounding
from nertz_executor.core.config import ExecutorConfig
from nertz_executor.core.lock import (
    ExecutorState,
    SymbolAccount,
    SymbolState,
    apply_control,
    evolve,
    initial_state,
    with_funding,
    with_instrument,
    with_volatility,
)
from nertz_executor.core.venue import MarketData
from nertz_executor.core.venue.paper import PaperState, PaperVenue, gross_return, market_price, realized_pnl


class ExecutorSnap(msgspec.Struct):
    """The executor's whole state between steps: the lock state and the paper account."""

    state: ExecutorState
    venue: PaperState


@dataclass(slots=True)
class _Step:
    """A closed bar's decision in progress (one per symbol at most)."""

    bar: ev.Bar
    seq: int
    intent: ev.IntentProposed | None = None


class Executor(Component):
    """The Structural Hard Lock over a venue (see the module docstring).

    Parameters
    ----------
    config : ExecutorConfig
    venue : PaperVenue, optional
        Defaults to a paper venue on ``config``.

    Attributes
    ----------
    state : ExecutorState
        The fold of every event the executor emitted (and the operator commands it read).
    """

    name: ClassVar[str] = "executor"
    scope: ClassVar[str | None] = "symbol"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (
        ev.Bar, ev.BookSnapshot, ev.Ticker, ev.FeedGap, ev.FeedResynced, ev.FeedStale,
        ev.TradingStarted, ev.TradingStopped, ev.InstrumentSpec,
    )  # fmt: skip
    joins: ClassVar[tuple[Join, ...]] = (
        Join(ev.FactorSnapshot, "bar_id"),
        Join(ev.IntentProposed, "correlation_id"),
        Join(ev.VerdictIssued, "correlation_id", ordered=True),
    )
    state_type: ClassVar[type[msgspec.Struct]] = ExecutorSnap

    def __init__(self, config: ExecutorConfig, venue: PaperVenue | None = None) -> None:
        self.config = config
        self.venue = venue or PaperVenue(config)
        self.state: ExecutorState = initial_state(config)
        self._steps: dict[str, _Step] = {}
        # while decisions are in progress: per symbol, (position, lock, account) before each later step
        self._before: dict[str, list[tuple[int, SymbolState, SymbolAccount]]] = {}
        self._out: list[ev.Event] = []

    def scope_of(self, event: ev.Event) -> str | None:
        """The symbol of an input; an operator command for every symbol has none (a barrier)."""
        if isinstance(event, ev.SystemEvent):
            return None if event.scope == "all" else event.scope
        return event.symbol  # type: ignore[attr-defined, no-any-return]

    # --- driver inputs ----------------------------------------------------------------------------

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        """Market effects of the bar; a closed bar then waits for its factor snapshot."""
        sym = self.state.symbols.get(bar.symbol)
        out = [] if sym is None or sym.lock == "FLAT" else self._market(bar)  # FLAT: nothing to do
        if bar.closed:
            self._steps[bar.symbol] = _Step(bar, self.position)
            self.awaiting = (ev.FactorSnapshot, bar.event_id)
        return out

    def on_book_snapshot(self, e: ev.BookSnapshot) -> list[ev.Event]:
        """Market effects of a book (fills at best bid/ask, TP/SL, timers)."""
        return self._market(e)

    def on_ticker(self, e: ev.Ticker) -> list[ev.Event]:
        """Keep the symbol's funding rate (the risk guard's ``funding_rate`` rule reads it), then the
        timers (a ticker carries no tradable price for the paper venue)."""
        self.state = with_funding(self.state, e)
        return self._market(e)

    def on_instrument_spec(self, e: ev.InstrumentSpec) -> list[ev.Event]:
        """Keep the symbol's trading rules (tick size, qty step, minimum qty and notional) for its next
        entries; the latest spec wins."""
        self.state = with_instrument(self.state, e)
        return []

    def on_feed_gap(self, e: ev.FeedGap) -> list[ev.Event]:
        """Timers only."""
        return self._market(e)

    def on_feed_resynced(self, e: ev.FeedResynced) -> list[ev.Event]:
        """Timers only."""
        return self._market(e)

    def on_feed_stale(self, e: ev.FeedStale) -> list[ev.Event]:
        """Timers only."""
        return self._market(e)

    def on_trading_started(self, e: ev.TradingStarted) -> list[ev.Event]:
        """Allow new entries again in the command's scope (``all`` or one symbol), from here on."""
        self.state = apply_control(self.state, e)
        return []

    def on_trading_stopped(self, e: ev.TradingStopped) -> list[ev.Event]:
        """Halt new entries in the command's scope, from here on (open positions keep their TP/SL)."""
        self.state = apply_control(self.state, e)
        return []

    # --- joins ------------------------------------------------------------------------------------

    def on_factor_snapshot(self, f: ev.FactorSnapshot) -> list[ev.Event]:
        """The closed bar's snapshot: with an intent, publish ``VerdictAwaited`` and join the intent."""
        step = self._steps.get(f.symbol)
        if step is None or f.bar_id != step.bar.event_id:
            raise ValueError(f"expected the snapshot of the awaited bar, was of bar {f.bar_id}")
        bar, iid = step.bar, f.intent_id
        if iid is None:
            self._end_step(bar.symbol)
            return []
        self.awaiting = (ev.IntentProposed, iid)
        awaited = derive(
            ev.VerdictAwaited, bar, iid, correlation_id=iid, causation_id=f.event_id,
            lock_state=self.state.symbol(bar.symbol).lock,
        )  # fmt: skip
        return self._emit([awaited])

    def on_intent_proposed(self, intent: ev.IntentProposed) -> list[ev.Event]:
        """The snapshot's intent (size and exits of the order): now join its verdict."""
        self._steps[intent.symbol].intent = intent
        self.awaiting = (ev.VerdictIssued, intent.correlation_id)
        return []

    def on_verdict_issued(self, verdict: ev.VerdictIssued) -> list[ev.Event]:
        """Decide the verdict: suppress, deny, or enter (see the module docstring)."""
        step = self._steps.get(verdict.symbol)
        intent = step.intent if step is not None else None
        if step is None or intent is None or verdict.correlation_id != intent.correlation_id:
            raise ValueError(f"expected the verdict of the awaited intent, was of {verdict.correlation_id}")
        account = self._account_as_of(step.seq)
        self._end_step(verdict.symbol)
        return self._emit(self._decide(step.bar, verdict, intent, account))

    def _end_step(self, symbol: str) -> None:
        del self._steps[symbol]
        self.awaiting = None
        if self._before:  # forget what no step still to come can ask for
            first = self.unfinished()
            for sym in list(self._before):
                kept = [x for x in self._before[sym] if x[0] > first]
                if kept:
                    self._before[sym] = kept
                else:
                    del self._before[sym]

    def _account_as_of(self, seq: int) -> ExecutorState:
        """The state with every symbol as it was before its first step after ``seq`` (steps of other
        symbols that ran while this decision waited for its verdict are taken out)."""
        back = {}
        for sym, hist in self._before.items():
            for pos, lock_, acc in hist:
                if pos > seq:
                    back[sym] = (lock_, acc)
                    break
        return self.state.as_of(back)

    # --- decisions --------------------------------------------------------------------------------

    def _decide(
        self, bar: ev.Bar, verdict: ev.VerdictIssued, intent: ev.IntentProposed, state: ExecutorState
    ) -> list[ev.Event]:
        config = self.config
        iid = verdict.correlation_id
        symbol = bar.symbol
        sym = state.symbol(symbol)
        head: dict[str, Any] = {"correlation_id": iid, "causation_id": verdict.event_id}
        # every intent's volatility joins the symbol's sample (an input, like funding), after this
        # decision read the sample before it
        volatility = state.volatility.get(symbol, ())
        atr_fraction = intent.atr / intent.entry_price if intent.atr is not None and intent.atr > 0 else None
        if atr_fraction is not None:
            self.state = with_volatility(self.state, symbol, atr_fraction)
        if sym.lock != "FLAT":
            return [
                derive(
                    ev.SignalSuppressed,
                    bar,
                    iid,
                    **head,
                    reason=_suppression_reason(sym, intent),
                    lock_state=sym.lock,
                    decision=verdict.decision,
                )
            ]
        if verdict.decision != "approve":
            return []  # the verdict itself is the record
        # orders as Bybit wants them: qty down to the qty step, TP/SL to the tick towards the entry (on
        # paper without a spec: as proposed, so logs from before instrument rules replay identically)
        spec = state.instruments.get(symbol)
        qty, take_profit, stop_loss = intent.qty * verdict.size_multiplier, intent.take_profit, intent.stop_loss
        if spec is not None:
            qty = rounding.qty_down(qty, spec.qty_step)
            take_profit, stop_loss = rounding.exits_towards_entry(intent.side, take_profit, stop_loss, spec.tick_size)
        leverage = risk.adaptive_leverage(
            atr_fraction,
            volatility,
            state.drawdown_at(bar.ts_event),
            [t.pnl_usdt for t in state.recent_trades(config.performance_window)],
            config,
        )
        group = config.group_of(symbol)
        funding = state.funding.get(symbol)
        ctx = risk.RiskContext(
            qty=qty,
            price_ref=intent.entry_price,
            stop_loss=stop_loss,
            leverage=intent.leverage,
            equity_usdt=state.equity_usdt,
            open_notional_usdt=state.open_notional_usdt,
            open_count=state.exposure_count,
            trading_enabled=state.trading_allowed(symbol),
            daily_pnl_usdt=state.daily_pnl_at(bar.ts_event),
            day_start_equity_usdt=state.day_start_equity_at(bar.ts_event),
            side=intent.side,
            order_leverage=leverage,
            has_instrument=spec is not None,
            min_order_qty=None if spec is None else spec.min_order_qty,
            min_notional_usdt=None if spec is None else spec.min_notional_usdt,
            group=group,
            group_open=state.exposure_in_group(group, config.group_of),
            funding_rate_8h=None if funding is None else funding.per_8h,
        )
        denial = risk.check(ctx, config)
        if denial is not None:
            rule, reason = denial
            return [derive(ev.RiskDenied, bar, iid, **head, rule=rule, reason=reason)]
        order_id = order_link_id(iid)
        order = derive(
            ev.OrderSubmitted, bar, iid, order_id, **head,
            order_id=order_id, side="Buy" if intent.side == "long" else "Sell", order_type="Market", qty=qty,
            price_ref=intent.entry_price, take_profit=take_profit, stop_loss=stop_loss,
            reduce_only=False, venue_name=config.venue_name, leverage=leverage.leverage,
        )  # fmt: skip
        return [order]

    def _market(self, event: MarketData) -> list[ev.Event]:
        out: list[ev.Event] = []
        self._out = out
        symbol = event.symbol
        sym = self.state.symbol(symbol)
        lock0 = sym.lock
        if lock0 == "FLAT":
            return out
        venue_events = self.venue.on_market(event)
        for v in venue_events:
            self._on_venue(v, event)
        if lock0 == "ENTRY_PENDING":
            sym = self.state.symbol(symbol)
            if sym.lock == "ENTRY_PENDING" and event.ts_event > sym.entry_deadline_ns:
                timeout_s = (sym.entry_deadline_ns - sym.order_ts_ns) / 1e9
                self.venue.cancel(sym.order_id or "", event)
                self._push(
                    derive(ev.EntryExpired, event, sym.correlation_id, correlation_id=sym.correlation_id,
                           order_id=sym.order_id, reason=f"not filled within {timeout_s:g} s")
                )  # fmt: skip
        elif lock0 == "LOCKED" and not venue_events:
            self._stale_exit(self.state.symbol(symbol), event)
        elif lock0 == "COOLDOWN" and event.ts_event >= sym.cooldown_until_ns:
            self._push(
                derive(ev.LockReleased, event, sym.correlation_id, correlation_id=sym.correlation_id,
                       reason="cooldown_elapsed")
            )  # fmt: skip
        return out

    def _stale_exit(self, sym: SymbolState, event: MarketData) -> None:
        config = self.config
        side = sym.side
        if side is None or sym.correlation_id is None:
            return
        holding = event.ts_event - sym.opened_ts_ns
        if holding < config.max_hold_ns or holding < config.min_hold_ns:
            return
        price = market_price(side, event)
        if price is None or gross_return(side, sym.entry_price, price) >= config.stale_band:
            return
        iid = sym.correlation_id
        order_id = order_link_id(iid, "stale_exit")
        submitted = derive(
            ev.OrderSubmitted, event, iid, order_id, correlation_id=iid,
            order_id=order_id, side="Sell" if side == "long" else "Buy", qty=sym.qty, price_ref=price,
            reduce_only=True, venue_name=config.venue_name,
        )  # fmt: skip
        self._push(submitted)
        for v in self.venue.submit(submitted):
            self._on_venue(v, event, exit_reason="stale_exit")

    def _on_venue(self, v: ev.Event, event: ev.Event, exit_reason: ev.ExitReason | None = None) -> None:
        """Fold a venue event and add the lock events it causes."""
        self._push(v)
        if not isinstance(v, ev.OrderFilled):
            return
        sym = self.state.symbol(v.symbol)
        iid = v.correlation_id
        if not v.reduce_only:
            opened = derive(
                ev.PositionOpened, event, iid, correlation_id=iid, causation_id=v.event_id,
                position_id=derive_id("position", iid), side=sym.side, qty=v.qty, entry_price=v.price,
                take_profit=sym.take_profit, stop_loss=sym.stop_loss, fee_usdt=v.fee_usdt,
            )  # fmt: skip
            self._push(opened)
            self._push(
                derive(ev.LockEngaged, event, iid, correlation_id=iid, causation_id=opened.event_id,
                       reason="position_opened")
            )  # fmt: skip
            return
        side = sym.side
        if side is None or sym.position_id is None:
            return
        fees = sym.entry_fee_usdt + v.fee_usdt
        pnl = realized_pnl(side, sym.qty, sym.entry_price, v.price, fees)
        self._push(
            derive(
                ev.PositionClosed, event, iid, correlation_id=iid, causation_id=v.event_id,
                position_id=sym.position_id, side=side, qty=sym.qty, entry_price=sym.entry_price, exit_price=v.price,
                exit_reason=v.exit_reason or exit_reason or "manual", realized_pnl_usdt=pnl, fee_usdt=fees,
                return_fraction=pnl / (sym.entry_price * sym.qty), holding_ns=event.ts_event - sym.opened_ts_ns,
            )
        )  # fmt: skip

    def _push(self, e: ev.Event) -> None:
        pos = self.position
        if self.unfinished() < pos:
            self._remember(e.symbol, pos)  # type: ignore[attr-defined]
        self.state = evolve(self.state, e)
        self._out.append(e)

    def _remember(self, symbol: str, pos: int) -> None:
        """Keep ``symbol``'s lock and account before the first change of a step that runs ahead of an
        earlier one still in progress (what :meth:`_account_as_of` puts back)."""
        hist = self._before.setdefault(symbol, [])
        if not hist or hist[-1][0] != pos:
            hist.append((pos, self.state.symbol(symbol), self.state.account(symbol)))

    def _emit(self, events: list[ev.Event]) -> list[ev.Event]:
        self._out = []
        for e in events:
            self._push(e)
            if isinstance(e, ev.OrderSubmitted) and not e.reduce_only:
                sym = self.state.symbol(e.symbol)
                for v in self.venue.submit(e, sym.entry_deadline_ns):
                    self._on_venue(v, e)
        return self._out

    # --- state ------------------------------------------------------------------------------------

    def get_state(self) -> ExecutorSnap:
        """Return the lock state and the paper account."""
        return ExecutorSnap(self.state, self.venue.get_state())

    def set_state(self, snap: ExecutorSnap) -> None:
        """Put back a state from :meth:`get_state`."""
        self.state = snap.state
        self.venue.set_state(snap.venue)
        self._steps = {}
        self._before = {}


def _suppression_reason(sym: SymbolState, intent: ev.IntentProposed) -> str:
    if sym.lock == "COOLDOWN":
        return "cooldown"
    if sym.lock == "ENTRY_PENDING":
        return "entry_pending"
    return "locked_same_side" if intent.side == sym.side else "locked_opposing_side"
