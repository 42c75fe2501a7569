"""The executor as a kernel component: the Hard Lock, the risk guard and a venue, pure and synchronous.

Driver inputs, in log order: market data (``md.bar``, ``md.book``, ``md.ticker``, ``md.status``) and
operator commands (``sys.control``, ``sys.config``, ``sys.manual``, applied where they sit in the log).
A ``ManualTradeRequested`` is a step like a closed bar: the executor waits for signal's snapshot of the
request (``bar_id`` = the request's id) and from there on decides as for a bar, Hard Lock included;
for a symbol without a closed bar yet signal publishes nothing, and the executor does not wait.

Joins: at every closed bar the executor waits for that bar's ``FactorSnapshot`` (signal publishes
exactly one per closed bar); if the snapshot names an intent it publishes ``VerdictAwaited`` (the
validator's rendezvous), then joins the ``IntentProposed`` and the ``VerdictIssued`` of that intent,
and decides:

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
band is closed at market (stale exit), a cooldown elapses.

The news protection (``news_protection``, off by default): a ``NewsAssessed`` of the symbol with a
critical key event against the position (negative for a long, positive for a short) at most
``news_protection_ns`` old marks the position, open or pending, for a close; the next market event
after ``min_hold`` closes it at market like the stale exit, exit reason ``news`` (docs/decisions.md D25).
A failed assessment does nothing.

Exit management (issue 8) is management of the open position, never an entry: the lock stays LOCKED.
The ``scaled`` plan sends, once the entry filled, TP1 (a reduce-only Limit order for ``tp1_fraction`` of
the position at ``tp1_r`` R) and sets TP2 at ``tp2_r`` R of the fill (``StopMoved`` phase ``entry``,
when it differs from the entry's); TP1's fills are ``PositionReduced``. Once the unrealized return
reaches ``breakeven_trigger`` (bars' high/low, books' best bid/ask, after the position opened) the stop
moves to entry + ``breakeven_offset`` (phase ``breakeven``); after TP1 filled, a trailing stop follows
the best price at ``trail_distance`` of TP1's price (phase ``trail``). These decisions read the log only,
so they are the same on paper and on Bybit: the paper venue simulates the moved stop and the trailing
stop, Bybit's adapter sends them as ``/v5/position/trading-stop``. Every event is folded with
:func:`~nertz_executor.core.lock.evolve` *before* it is returned, so a transition the lock forbids
raises before anything is published.

Conventions: every event's ``ts_event = ts_init`` = the ``ts_event`` of the input being handled;
``event_id = derive_id(<type>, correlation_id, ...)``; ``correlation_id`` is the intent id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from nertz_common import events as ev
from nertz_common import live_config
from nertz_common import news as news_
from nertz_common.derive import derive
from nertz_common.ids import derive_id, order_link_id
from nertz_common.node.component import Component, Join
from nertz_executor.core import risk, rounding
from nertz_executor.core.config import ExecutorConfig
from nertz_executor.core.lock import (
    ExecutorState,
    SymbolAccount,
    SymbolState,
    absorb,
    apply_control,
    entry_fee_share,
    evolve,
    initial_state,
    with_funding,
    with_instrument,
    with_volatility,
)
from nertz_executor.core.venue import MarketData
from nertz_executor.core.venue.exchange import ExchangeVenue
from nertz_executor.core.venue.paper import (
    PaperState,
    PaperVenue,
    best_price,
    gross_return,
    market_price,
    r_multiple,
    realized_pnl,
)

log = logging.getLogger("nertz.executor")

#: quantities closer than this are equal (base currency; Bybit's smallest qtyStep is far above it)
_QTY_EPS = 1e-9
#: prices this close (relative) are the same price
_PRICE_EPS = 1e-12


class ExecutorSnap(msgspec.Struct):
    """The executor's whole state between steps: the lock state and the paper account (None on a
    real venue, whose reports are folded into the lock state)."""

    state: ExecutorState
    venue: PaperState | None = None
    #: the ``executor.`` keys of every ConfigChanged read so far (the latest value per key)
    config_overrides: dict[str, ev.ConfigValue] = {}
    #: symbols with a closed bar on the log (a manual request waits for signal's answer only for these)
    bar_symbols: list[str] = []
    #: positions the news protection closes at the next market event: symbol -> (intent id, why)
    news_exits: dict[str, tuple[str, str]] = {}


@dataclass(slots=True)
class _Step:
    """A closed bar's (or a manual request's) decision in progress (one per symbol at most).

    ``key`` is the ``bar_id`` of the snapshot awaited; ``at`` the event the step's outputs are derived
    at (the bar; for a manual request its snapshot, once it arrived).
    """

    key: str
    seq: int
    at: ev.InstrumentEvent | None
    intent: ev.IntentProposed | None = None


class Executor(Component):
    """The Structural Hard Lock over a venue (see the module docstring).

    Parameters
    ----------
    config : ExecutorConfig
    venue : PaperVenue, optional
        Defaults to a paper venue on ``config``.
    reconfigure : callable, optional
        ``reconfigure(overrides) -> ExecutorConfig``: the configuration the executor was started with,
        with the ``executor.`` keys of the log's ConfigChanged applied (raises
        :class:`~nertz_common.live_config.ConfigRejected`); without it config changes are ignored.

    Attributes
    ----------
    state : ExecutorState
        The fold of every event the executor emitted (and the operator commands it read).
    """

    name: ClassVar[str] = "executor"
    scope: ClassVar[str | None] = "symbol"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (
        ev.Bar, ev.BookSnapshot, ev.Ticker, ev.FeedGap, ev.FeedResynced, ev.FeedStale,
        ev.TradingStarted, ev.TradingStopped, ev.InstrumentSpec, ev.ConfigChanged, ev.ManualTradeRequested,
        # what a real venue reports (recorded on the log by its adapter; a paper run has none)
        ev.OrderAccepted, ev.OrderRefused, ev.OrderCanceled, ev.OrderFilled, ev.FundingSettled,
        ev.PositionSnapshot, ev.WalletSnapshot,
        # the news analyst's assessments (the news protection)
        ev.NewsAssessed,
    )  # fmt: skip
    joins: ClassVar[tuple[Join, ...]] = (
        Join(ev.FactorSnapshot, "bar_id"),
        Join(ev.IntentProposed, "correlation_id"),
        Join(ev.VerdictIssued, "correlation_id", ordered=True),
    )
    state_type: ClassVar[type[msgspec.Struct]] = ExecutorSnap

    def __init__(
        self,
        config: ExecutorConfig,
        venue: PaperVenue | ExchangeVenue | None = None,
        reconfigure: Callable[[Mapping[str, ev.ConfigValue]], ExecutorConfig] | None = None,
    ) -> None:
        self.config = config
        self.base = config
        self.reconfigure = reconfigure
        self.overrides: dict[str, ev.ConfigValue] = {}
        self.bar_symbols: set[str] = set()
        self.news_exits: dict[str, tuple[str, str]] = {}
        #: ConfigChanged this executor refused (another base configuration than the api validated on)
        self.config_rejected = 0
        if venue is None:
            venue = PaperVenue(config) if config.venue_name == "paper" else ExchangeVenue(config.venue_name)
        self.venue: PaperVenue | ExchangeVenue = venue
        self.state: ExecutorState = initial_state(config)
        self._steps: dict[str, _Step] = {}
        # while decisions are in progress: per symbol, (position, lock, account) before each later step
        self._before: dict[str, list[tuple[int, SymbolState, SymbolAccount]]] = {}
        self._out: list[ev.Event] = []

    def scope_of(self, event: ev.Event) -> str | None:
        """The symbol of an input; an operator command for every symbol has none (a barrier)."""
        if isinstance(event, ev.SystemEvent):
            return None if event.scope == "all" else event.scope
        return getattr(event, "symbol", None)  # a wallet report has none: a barrier

    # --- driver inputs ----------------------------------------------------------------------------

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        """Market effects of the bar; a closed bar then waits for its factor snapshot."""
        sym = self.state.symbols.get(bar.symbol)
        out = [] if sym is None or sym.lock == "FLAT" else self._market(bar)  # FLAT: nothing to do
        if bar.closed:
            self.bar_symbols.add(bar.symbol)
            self._steps[bar.symbol] = _Step(bar.event_id, self.position, bar)
            self.awaiting = (ev.FactorSnapshot, bar.event_id)
        return out

    def on_manual_trade_requested(self, e: ev.ManualTradeRequested) -> list[ev.Event]:
        """An operator's trade: wait for signal's snapshot of the request, then decide as for a bar."""
        if e.scope in self.bar_symbols:
            self._steps[e.scope] = _Step(e.event_id, self.position, None)
            self.awaiting = (ev.FactorSnapshot, e.event_id)
        return []

    def on_config_changed(self, e: ev.ConfigChanged) -> list[ev.Event]:
        """Apply the ``executor.`` keys of a config change from here on (all, or none if one is bad)."""
        mine = live_config.section(e.changes, "executor")
        if not mine:
            return []
        if self.reconfigure is None:
            self.config_rejected += 1
            log.warning("config.ignored", extra={"event_id": e.event_id, "reason": "built without reconfigure"})
            return []
        overrides = {**self.overrides, **mine}
        try:
            config = self.reconfigure(overrides)
        except live_config.ConfigRejected as err:
            self.config_rejected += 1
            log.warning("config.rejected", extra={"event_id": e.event_id, "errors": err.errors})
            return []
        self.overrides = overrides
        self._configure(config)
        return []

    def _configure(self, config: ExecutorConfig) -> None:
        self.config = config
        if isinstance(self.venue, PaperVenue):
            self.venue.config = config

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

    def on_news_assessed(self, e: ev.NewsAssessed) -> list[ev.Event]:
        """With the news protection on, mark the symbol's position (open or pending) for a close at the next
        market event when the assessment has a critical key event against it (see the module docstring)."""
        config = self.config
        if not config.news_protection or e.failure is not None:
            return []
        sym = self.state.symbol(e.symbol)
        if sym.lock not in ("ENTRY_PENDING", "LOCKED") or sym.side is None or sym.correlation_id is None:
            return []
        against = news_.critical(e.key_events, e.ts_event, config.news_protection_ns, -1 if sym.side == "long" else 1)
        if against:
            why = news_.describe(against[0])
            self.news_exits[e.symbol] = (sym.correlation_id, why)
            log.warning("news.protection", extra={"symbol": e.symbol, "correlation_id": sym.correlation_id,
                                                  "event_id": e.event_id, "news": why})  # fmt: skip
        return []

    def on_trading_started(self, e: ev.TradingStarted) -> list[ev.Event]:
        """Allow new entries again in the command's scope (``all`` or one symbol), from here on."""
        self.state = apply_control(self.state, e)
        return []

    def on_trading_stopped(self, e: ev.TradingStopped) -> list[ev.Event]:
        """Halt new entries in the command's scope, from here on (open positions keep their TP/SL)."""
        self.state = apply_control(self.state, e)
        return []

    # --- a real venue's reports (driver inputs, in log order) ------------------------------------------

    def on_order_accepted(self, e: ev.OrderAccepted) -> list[ev.Event]:
        """The venue took an order: nothing changes (its fills or its refusal decide)."""
        return []

    def on_order_refused(self, e: ev.OrderRefused) -> list[ev.Event]:
        """The venue refused an order of the symbol in hand: ``OrderRejected`` with its code and message.

        An entry's refusal returns the symbol to FLAT; an exit's leaves the position (and its
        exchange-native TP/SL) as it is, so the executor's own exit may be sent again.
        """
        sym = self.state.symbol(e.symbol)
        if not self._ours(e) or e.order_id not in (sym.order_id, sym.exit_order_id, sym.tp1_order_id):
            return []  # not the order in hand (a refusal of a retried duplicate, an expired entry)
        if e.reduce_only != (e.order_id in (sym.exit_order_id, sym.tp1_order_id)):
            return []
        self._out = []
        self._push(
            derive(ev.OrderRejected, e, e.correlation_id, e.order_id, correlation_id=sym.correlation_id or "",
                   causation_id=e.event_id, order_id=e.order_id, reason=f"{e.ret_code} {e.ret_msg}",
                   reduce_only=e.reduce_only)
        )  # fmt: skip
        return self._out

    def on_order_canceled(self, e: ev.OrderCanceled) -> list[ev.Event]:
        """The entry in hand ended unfilled (``OrderRejected``) or part filled (the position opens with
        that part); an exit order ended: it may be sent again."""
        sym = self.state.symbol(e.symbol)
        if not self._ours(e):
            return []
        self._out = []
        if sym.lock == "ENTRY_PENDING" and e.order_id == sym.order_id:
            if sym.filled_qty > 0:
                self._opened(e, sym.filled_qty, sym.filled_price, sym.filled_fee_usdt)
                self._plan_exits(e)
            else:
                self._push(
                    derive(ev.OrderRejected, e, e.correlation_id, e.order_id, correlation_id=sym.correlation_id or "",
                           causation_id=e.event_id, order_id=e.order_id, reason=f"canceled by the venue: {e.reason}")
                )  # fmt: skip
        elif sym.lock == "LOCKED" and e.order_id in (sym.exit_order_id, sym.tp1_order_id):
            self._push(
                derive(ev.OrderRejected, e, e.correlation_id, e.order_id, correlation_id=sym.correlation_id or "",
                       causation_id=e.event_id, order_id=e.order_id, reason=f"canceled by the venue: {e.reason}",
                       reduce_only=True)
            )  # fmt: skip
        return self._out

    def on_order_filled(self, e: ev.OrderFilled) -> list[ev.Event]:
        """A real venue's fill: the position opens once the entry's fills cover it, closes once the
        exit's fills (a take-profit, stop-loss, trailing stop or the executor's own exit) cover it; a
        fill of TP1 (reduce-only, part of the position) reduces it (``PositionReduced``) and leaves it open.

        A duplicated report (same ``fill_id``) is ignored. A fill the lock cannot place (an order placed
        outside Nertz, or one of its own entries that filled after it expired) changes nothing here: it
        stays on the log as the venue's fact, and the adapter follows it with a reconciliation of that
        symbol's position, which adopts or halts (:meth:`on_position_snapshot`) with the whole position.
        """
        sym = self.state.symbol(e.symbol)
        if not self._ours(e) or e.fill_id in sym.fill_ids:
            return []
        self._out = []
        entry = sym.lock == "ENTRY_PENDING" and not e.reduce_only and e.order_id == sym.order_id
        exit_ = sym.lock == "LOCKED" and e.reduce_only
        if not (entry or exit_):
            return self._out
        self._absorb(e)
        sym = self.state.symbol(e.symbol)
        if entry and (e.leaves_qty <= 0 or sym.filled_qty >= sym.qty - _QTY_EPS):
            self._opened(e, sym.filled_qty, sym.filled_price, sym.filled_fee_usdt)
            self._plan_exits(e)
        elif exit_ and sym.tp1_order_id is not None and e.order_id == sym.tp1_order_id:
            self._reduced(e, e.qty, e.price, e.fee_usdt, e.exit_reason or "take_profit")
        elif exit_ and sym.filled_qty >= sym.qty - _QTY_EPS:
            own: ev.ExitReason = "manual"
            if e.order_id == sym.exit_order_id:
                own = "news" if e.order_id == order_link_id(sym.correlation_id or "", "news") else "stale_exit"
            self._closed(e, sym.filled_price, sym.filled_fee_usdt, e.exit_reason or own)
        return self._out

    def on_funding_settled(self, e: ev.FundingSettled) -> list[ev.Event]:
        """A funding payment on the open position: counted in its realized P&L when it closes."""
        sym = self.state.symbol(e.symbol)
        if self._ours(e) and sym.lock == "LOCKED" and e.fill_id not in sym.fill_ids:
            self._absorb(e)
        return []

    def on_wallet_snapshot(self, e: ev.WalletSnapshot) -> list[ev.Event]:
        """The venue's equity: the account's equity from here on (the risk guard reads it)."""
        if e.venue_name == self.config.venue_name:
            self.state = absorb(self.state, e)
        return []

    def on_position_snapshot(self, e: ev.PositionSnapshot) -> list[ev.Event]:
        """Reconcile the lock with the venue's position (``source == "reconcile"`` only; the private
        stream's pushes are recorded, not compared, since their order against fills is not guaranteed).

        - a position where the lock holds none (FLAT, COOLDOWN): adopted and locked (``on_foreign =
          "adopt"``, when it has an exchange-native take-profit and stop-loss) or the symbol halted
          (``"halt"``, or a position without both exits);
        - no position where the lock holds one: closed on the log at the mark price (exit reason
          ``reconciled``) and the symbol halted, since the fill that closed it is unknown;
        - another side or quantity: the symbol halted.
        """
        if not self._ours(e) or e.source != "reconcile":
            return []
        self._out = []
        sym = self.state.symbol(e.symbol)
        held = sym.lock == "LOCKED" or (sym.lock == "ENTRY_PENDING" and sym.filled_qty > 0)
        venue_qty = e.qty if e.side is not None else 0.0
        if venue_qty <= _QTY_EPS:
            if sym.lock == "LOCKED":
                self._mismatch(e, "closed", f"the venue holds no position where the lock holds {sym.side} {sym.qty:g}")
                price = e.mark_price or sym.entry_price
                self._closed(e, price, 0.0, "reconciled")
                self._mismatch(e, "halted", "the fill that closed the position is not on the log")
            return self._out
        if sym.lock in ("FLAT", "COOLDOWN"):
            exits = e.take_profit is not None and e.stop_loss is not None
            if self.config.on_foreign == "adopt" and e.entry_price is not None and exits:
                iid = derive_id("adopted", e.symbol, e.event_id)
                self._mismatch(e, "adopted", f"a {e.side} position of {e.qty:g} at {e.entry_price:g} opened outside "
                               "Nertz: adopted and locked", correlation_id=iid)  # fmt: skip
                self._opened(e, e.qty, e.entry_price, 0.0, side=e.side, take_profit=e.take_profit,
                             stop_loss=e.stop_loss, reason="position_adopted")  # fmt: skip
            elif self.config.on_foreign == "adopt":
                self._mismatch(e, "halted", f"a {e.side} position of {e.qty:g} opened outside Nertz without an "
                               "exchange-native take-profit and stop-loss: halted, not adopted")  # fmt: skip
            else:
                self._mismatch(e, "halted", f"a {e.side} position of {e.qty:g} opened outside Nertz")
            return self._out
        if not held:  # ENTRY_PENDING without a fill: the entry's fills come next on the log
            return self._out
        qty = sym.qty if sym.lock == "LOCKED" else sym.filled_qty
        if e.side != sym.side or abs(venue_qty - qty) > _QTY_EPS:
            self._mismatch(
                e, "halted", f"the venue holds {e.side} {venue_qty:g} where the lock holds {sym.side} {qty:g}"
            )
        return self._out

    def _ours(self, e: ev.Event) -> bool:
        return getattr(e, "venue_name", None) == self.config.venue_name

    def _absorb(self, report: ev.OrderFilled | ev.FundingSettled) -> None:
        if self.unfinished() < self.position:
            self._remember(report.symbol, self.position)
        self.state = absorb(self.state, report)

    def _mismatch(self, e: ev.Event, action: str, reason: str, correlation_id: str | None = None) -> None:
        symbol: str = e.symbol  # type: ignore[attr-defined]
        iid = correlation_id or self.state.symbol(symbol).correlation_id or derive_id("mismatch", symbol, e.event_id)
        self._push(
            derive(ev.VenueMismatch, e, iid, action, correlation_id=iid, causation_id=e.event_id, action=action,
                   reason=reason, venue_name=self.config.venue_name)
        )  # fmt: skip

    # --- joins ------------------------------------------------------------------------------------

    def on_factor_snapshot(self, f: ev.FactorSnapshot) -> list[ev.Event]:
        """The closed bar's snapshot: with an intent, publish ``VerdictAwaited`` and join the intent."""
        step = self._steps.get(f.symbol)
        if step is None or f.bar_id != step.key:
            raise ValueError(f"expected the snapshot of the awaited bar, was of bar {f.bar_id}")
        if step.at is None:  # a manual request: the snapshot routes and times what follows
            step.at = f
        bar, iid = step.at, f.intent_id
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
        assert step.at is not None
        return self._emit(self._decide(step.at, verdict, intent, account))

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
        self, bar: ev.InstrumentEvent, verdict: ev.VerdictIssued, intent: ev.IntentProposed, state: ExecutorState
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
        if config.exit_plan == "scaled":  # the entry carries TP2 (of the reference price until it fills)
            take_profit = r_multiple(intent.side, intent.entry_price, stop_loss, config.tp2_r)
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
            if sym.lock == "LOCKED":  # the paper entry filled on this event
                self._plan_exits(event)
            # (an entry a real venue part filled is resolved by its fills or its cancel, never expired)
            elif sym.lock == "ENTRY_PENDING" and sym.filled_qty == 0 and event.ts_event > sym.entry_deadline_ns:
                timeout_s = (sym.entry_deadline_ns - sym.order_ts_ns) / 1e9
                self.venue.cancel(sym.order_id or "", event)
                self._push(
                    derive(ev.EntryExpired, event, sym.correlation_id, correlation_id=sym.correlation_id,
                           order_id=sym.order_id, reason=f"not filled within {timeout_s:g} s")
                )  # fmt: skip
        elif lock0 == "LOCKED":
            if not venue_events:
                sym = self.state.symbol(symbol)
                if not self._news_exit(sym, event):
                    self._stale_exit(sym, event)
            sym = self.state.symbol(symbol)
            if sym.lock == "LOCKED" and sym.exit_order_id is None:
                self._breakeven(sym, event)
        elif lock0 == "COOLDOWN" and event.ts_event >= sym.cooldown_until_ns:
            self._push(
                derive(ev.LockReleased, event, sym.correlation_id, correlation_id=sym.correlation_id,
                       reason="cooldown_elapsed")
            )  # fmt: skip
        return out

    def _stale_exit(self, sym: SymbolState, event: MarketData) -> None:
        config = self.config
        side = sym.side
        if side is None or sym.correlation_id is None or sym.exit_order_id is not None:
            return  # (an exit already in flight at a real venue)
        holding = event.ts_event - sym.opened_ts_ns
        if holding < config.max_hold_ns or holding < config.min_hold_ns:
            return
        price = market_price(side, event)
        if price is None or gross_return(side, sym.entry_price, price) >= config.stale_band:
            return
        self._exit_at_market(sym, event, price, "stale_exit")

    def _news_exit(self, sym: SymbolState, event: MarketData) -> bool:
        """The news protection's close of a position it marked, once ``min_hold`` passed; True if sent."""
        marked = self.news_exits.get(event.symbol)
        if marked is None:
            return False
        if marked[0] != sym.correlation_id:  # marked for a position that is gone
            del self.news_exits[event.symbol]
            return False
        side = sym.side
        if side is None or sym.exit_order_id is not None or event.ts_event - sym.opened_ts_ns < self.config.min_hold_ns:
            return False
        price = market_price(side, event)
        if price is None:
            return False
        self._exit_at_market(sym, event, price, "news")
        return True

    def _exit_at_market(self, sym: SymbolState, event: MarketData, price: float, reason: ev.ExitReason) -> None:
        """Close the position in hand at market: a reduce-only exit (order id of the intent and ``reason``)."""
        side, iid = sym.side, sym.correlation_id
        assert side is not None and iid is not None
        order_id = order_link_id(iid, reason)
        submitted = derive(
            ev.OrderSubmitted, event, iid, order_id, correlation_id=iid,
            order_id=order_id, side="Sell" if side == "long" else "Buy", qty=sym.qty, price_ref=price,
            reduce_only=True, venue_name=self.config.venue_name,
        )  # fmt: skip
        self._push(submitted)
        for v in self.venue.submit(submitted):
            self._on_venue(v, event, exit_reason=reason)

    def _on_venue(self, v: ev.Event, event: ev.Event, exit_reason: ev.ExitReason | None = None) -> None:
        """Fold an event of the paper venue (one of the executor's outputs) and add the lock events it causes."""
        self._push(v)
        if not isinstance(v, ev.OrderFilled):
            return
        if not v.reduce_only:
            self._opened(v, v.qty, v.price, v.fee_usdt, at=event)
        elif v.order_id == self.state.symbol(v.symbol).tp1_order_id:
            self._reduced(v, v.qty, v.price, v.fee_usdt, v.exit_reason or "take_profit", at=event)
        else:
            self._closed(v, v.price, v.fee_usdt, v.exit_reason or exit_reason or "manual", at=event)

    # --- exit management (the open position; the lock stays LOCKED) ------------------------------------

    def _plan_exits(self, at: ev.Event) -> None:
        """The scaled plan, once the entry filled: TP2 at ``tp2_r`` R of the fill (``StopMoved`` when it
        differs from the entry's) and TP1, a reduce-only Limit order for ``tp1_fraction`` of the position
        at ``tp1_r`` R (none when the rounded parts fall below the instrument's minimum quantity)."""
        config = self.config
        symbol: str = at.symbol  # type: ignore[attr-defined]
        sym = self.state.symbol(symbol)
        side, iid = sym.side, sym.correlation_id
        if config.exit_plan != "scaled" or sym.adopted or side is None or iid is None or sym.position_id is None:
            return
        if sym.stop_loss <= 0 or sym.entry_price == sym.stop_loss:
            return
        tp1 = r_multiple(side, sym.entry_price, sym.stop_loss, config.tp1_r)
        tp2 = r_multiple(side, sym.entry_price, sym.stop_loss, config.tp2_r)
        qty1 = sym.qty * config.tp1_fraction
        spec = self.state.instruments.get(symbol)
        if spec is not None:
            qty1 = rounding.qty_down(qty1, spec.qty_step)
            tp1 = rounding.exits_towards_entry(side, tp1, sym.stop_loss, spec.tick_size)[0] if tp1 > 0 else tp1
            tp2 = rounding.exits_towards_entry(side, tp2, sym.stop_loss, spec.tick_size)[0] if tp2 > 0 else tp2
        if tp1 <= 0 or tp2 <= 0:
            return  # a short whose R-multiples reach below zero: the entry's take-profit stays alone
        if abs(tp2 - sym.take_profit) > _PRICE_EPS * tp2:
            self._move(at, "entry", f"TP2 at {config.tp2_r:g} R of the filled entry", take_profit=tp2)
        least = spec.min_order_qty if spec is not None else _QTY_EPS
        if qty1 < least or sym.qty - qty1 < least:
            return
        order_id = order_link_id(iid, "tp1")
        submitted = derive(
            ev.OrderSubmitted, at, iid, order_id, correlation_id=iid, order_id=order_id,
            side="Sell" if side == "long" else "Buy", order_type="Limit", qty=qty1, price_ref=tp1, price=tp1,
            reduce_only=True, venue_name=config.venue_name, exit_reason="take_profit",
        )  # fmt: skip
        self._send(submitted, at)

    def _reduced(
        self,
        cause: ev.OrderFilled,
        qty: float,
        price: float,
        fee_usdt: float,
        exit_reason: ev.ExitReason,
        *,
        at: ev.Event | None = None,
    ) -> None:
        """``PositionReduced`` by ``qty`` at ``price`` (fee ``fee_usdt`` and its share of the entry fee);
        a reduction that leaves nothing is the close. Once TP1 is done, the trailing stop starts."""
        at = at or cause
        sym = self.state.symbol(cause.symbol)
        side = sym.side
        if side is None or sym.position_id is None:
            return
        if qty >= sym.qty - _QTY_EPS:
            self._closed(cause, price, fee_usdt, exit_reason, at=at)
            return
        iid = sym.correlation_id or ""
        fees = fee_usdt + entry_fee_share(sym, qty)
        self._push(
            derive(
                ev.PositionReduced, at, iid, cause.event_id, correlation_id=iid, causation_id=cause.event_id,
                position_id=sym.position_id, side=side, qty_closed=qty, qty_left=sym.qty - qty,
                entry_price=sym.entry_price, exit_price=price,
                realized_pnl_usdt=realized_pnl(side, qty, sym.entry_price, price, fees), fee_usdt=fees,
                exit_reason=exit_reason, order_id=cause.order_id,
            )
        )  # fmt: skip
        sym = self.state.symbol(cause.symbol)
        if cause.order_id == sym.tp1_order_id and sym.tp1_filled_qty >= sym.tp1_qty - _QTY_EPS:
            self._trail(sym, at)

    def _trail(self, sym: SymbolState, at: ev.Event) -> None:
        """After TP1: a trailing stop ``trail_distance`` × TP1's price behind the best price, from TP1's price."""
        config = self.config
        if config.trail_distance <= 0 or sym.trailing_distance > 0 or sym.tp1_price <= 0:
            return
        distance = config.trail_distance * sym.tp1_price
        spec = self.state.instruments.get(at.symbol)  # type: ignore[attr-defined]
        if spec is not None:  # on the tick grid, at least one tick
            distance = max(rounding.to_step(distance, spec.tick_size), spec.tick_size)
        self._move(at, "trail", f"TP1 filled: trail {config.trail_distance:.2%} behind the best price",
                   trailing_distance=distance, active_price=sym.tp1_price)  # fmt: skip

    def _breakeven(self, sym: SymbolState, event: MarketData) -> None:
        """The stop to entry + ``breakeven_offset`` once the return reached ``breakeven_trigger`` (event
        time: a bar that opened, or a book, after the position opened)."""
        config = self.config
        side = sym.side
        if config.breakeven_trigger <= 0 or side is None or sym.position_id is None or sym.entry_price <= 0:
            return
        if isinstance(event, ev.Bar) and event.open_time_ns < sym.opened_ts_ns:
            return  # its range may lie before the entry
        px = best_price(side, event)
        if px is None or gross_return(side, sym.entry_price, px) < config.breakeven_trigger:
            return
        long = side == "long"
        stop = sym.entry_price * (1 + config.breakeven_offset if long else 1 - config.breakeven_offset)
        spec = self.state.instruments.get(event.symbol)
        if spec is not None:  # rounded into profit (a long's up, a short's down)
            stop = rounding.to_step(stop, spec.tick_size, up=long)
        better = stop > sym.stop_loss if long else (sym.stop_loss <= 0 or stop < sym.stop_loss)
        if not better or (stop >= px if long else stop <= px):
            return
        self._move(event, "breakeven", f"return reached {config.breakeven_trigger:.2%}: stop to entry "
                   f"{'+' if long else '-'} {config.breakeven_offset:.2%}", stop_loss=stop)  # fmt: skip

    def _move(
        self,
        at: ev.Event,
        phase: ev.StopPhase,
        reason: str,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_distance: float | None = None,
        active_price: float | None = None,
    ) -> None:
        """``StopMoved`` of the position in hand: the given exits, the others as they are."""
        sym = self.state.symbol(at.symbol)  # type: ignore[attr-defined]
        iid = sym.correlation_id or ""
        moved = derive(
            ev.StopMoved, at, iid, phase, correlation_id=iid, position_id=sym.position_id,
            stop_loss=sym.stop_loss if stop_loss is None else stop_loss,
            take_profit=(sym.take_profit or None) if take_profit is None else take_profit,
            trailing_distance=(sym.trailing_distance or None) if trailing_distance is None else trailing_distance,
            active_price=(sym.active_price or None) if active_price is None else active_price,
            phase=phase, reason=reason, venue_name=self.config.venue_name,
        )  # fmt: skip
        self._send(moved, at)

    def _send(self, e: ev.OrderSubmitted | ev.StopMoved, at: ev.Event) -> None:
        """Fold ``e`` and hand it to the venue (the paper venue may answer at once; a real one answers on
        the log, its adapter reading ``e`` there)."""
        self._push(e)
        answers = self.venue.move_stop(e) if isinstance(e, ev.StopMoved) else self.venue.submit(e)
        for v in answers:
            self._on_venue(v, at)

    def _opened(
        self,
        cause: ev.Event,
        qty: float,
        price: float,
        fee_usdt: float,
        *,
        at: ev.Event | None = None,
        side: ev.PositionSide | None = None,
        take_profit: float | None = None,
        stop_loss: float | None = None,
        reason: str = "position_opened",
    ) -> None:
        """``PositionOpened`` and ``LockEngaged`` for the entry in hand (at the time of ``at``, default
        ``cause``)."""
        at = at or cause
        symbol: str = cause.symbol  # type: ignore[attr-defined]
        sym = self.state.symbol(symbol)
        iid = sym.correlation_id or ""
        opened = derive(
            ev.PositionOpened, at, iid, correlation_id=iid, causation_id=cause.event_id,
            position_id=derive_id("position", iid), side=side or sym.side, qty=qty, entry_price=price,
            take_profit=sym.take_profit if take_profit is None else take_profit,
            stop_loss=sym.stop_loss if stop_loss is None else stop_loss, fee_usdt=fee_usdt,
        )  # fmt: skip
        self._push(opened)
        self._push(derive(ev.LockEngaged, at, iid, correlation_id=iid, causation_id=opened.event_id, reason=reason))

    def _closed(
        self, cause: ev.Event, price: float, fee_usdt: float, exit_reason: ev.ExitReason, *, at: ev.Event | None = None
    ) -> None:
        """``PositionClosed`` of the position in hand at ``price``; fees are the entry's, ``fee_usdt``
        of the exit and the funding paid meanwhile."""
        at = at or cause
        sym = self.state.symbol(cause.symbol)  # type: ignore[attr-defined]
        side = sym.side
        if side is None or sym.position_id is None:
            return
        iid = sym.correlation_id or ""
        self.news_exits.pop(cause.symbol, None)  # type: ignore[attr-defined]
        fees = sym.entry_fee_usdt + fee_usdt + sym.funding_usdt
        pnl = realized_pnl(side, sym.qty, sym.entry_price, price, fees)
        self._push(
            derive(
                ev.PositionClosed, at, iid, correlation_id=iid, causation_id=cause.event_id,
                position_id=sym.position_id, side=side, qty=sym.qty, entry_price=sym.entry_price, exit_price=price,
                exit_reason=exit_reason, realized_pnl_usdt=pnl, fee_usdt=fees,
                return_fraction=pnl / (sym.entry_price * sym.qty), holding_ns=at.ts_event - sym.opened_ts_ns,
                reduced_qty=sym.reduced_qty, reduced_pnl_usdt=sym.reduced_pnl_usdt,
                reduced_fee_usdt=sym.reduced_fee_usdt,
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
        return ExecutorSnap(
            self.state, self.venue.get_state(), dict(self.overrides), sorted(self.bar_symbols), dict(self.news_exits)
        )

    def set_state(self, snap: ExecutorSnap) -> None:
        """Put back a state from :meth:`get_state` (its config overrides applied to this executor's base)."""
        self.overrides = dict(snap.config_overrides)
        config = self.base
        if self.overrides and self.reconfigure is not None:
            try:
                config = self.reconfigure(self.overrides)
            except live_config.ConfigRejected as err:
                self.config_rejected += 1
                log.warning("config.rejected", extra={"errors": err.errors, "at": "restore"})
        self._configure(config)
        self.bar_symbols = set(snap.bar_symbols)
        self.news_exits = {k: (v[0], v[1]) for k, v in snap.news_exits.items()}
        self.state = snap.state
        if isinstance(self.venue, PaperVenue):
            self.venue.set_state(snap.venue or PaperState())
        self._steps = {}
        self._before = {}


def _suppression_reason(sym: SymbolState, intent: ev.IntentProposed) -> str:
    if sym.lock == "COOLDOWN":
        return "cooldown"
    if sym.lock == "ENTRY_PENDING":
        return "entry_pending"
    return "locked_same_side" if intent.side == sym.side else "locked_opposing_side"
