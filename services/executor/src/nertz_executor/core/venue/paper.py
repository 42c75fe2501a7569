"""The paper venue (docs/decisions.md D2): a deterministic fill simulation driven by market data.

:class:`PaperVenue` implements :class:`~nertz_executor.core.venue.Venue`; the functions below are its fill
rules.

- A market entry fills at the next market price for its symbol after the order: the next
  ``BookSnapshot`` (best ask for a buy, best bid for a sell) or the next ``Bar`` whose open time is at or
  after the order (its open), plus an adverse slippage, paying the taker fee.
- Exchange-native take-profit and stop-loss trigger from later bars (low/high) and books (best bid
  for a long's exit, best ask for a short's): for a long, ``low <= stop_loss`` stops and
  ``high >= take_profit`` takes profit; when one bar touches both, the stop-loss wins (conservative).
- A take-profit fills at its trigger price, a stop-loss at its trigger price less the slippage; a
  market exit (stale exit) at the market price less the slippage. Every fill pays the taker fee.
- Exit management (issue 8): a reduce-only Limit order (the scaled plan's TP1) fills at its price, paying
  the maker fee, once a later bar's range or a book's best bid (a long's; best ask for a short) reaches
  it; TP2 and the stop then act on the rest. A moved stop (``StopMoved``) and a trailing stop act from
  the next market data on. A trailing stop follows the best price (bars' high/low, books' best bid/ask)
  since it started and stops the position once the price falls back by its distance; a bar is checked
  against the level before its own range moves it. Whatever the combination, a bar touching a stop and a
  take-profit fills the stop.

Every function is pure: prices in USDT, quantities in base currency, fees in USDT, times in UNIX ns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import msgspec
from msgspec import Struct

from nertz_common import events as ev
from nertz_common.derive import derive
from nertz_common.ids import derive_id, order_link_id
from nertz_executor.core.config import ExecutorConfig
from nertz_executor.core.venue import MarketData, VenueOrder, VenuePosition, Wallet


@dataclass(frozen=True, slots=True)
class EntryFill:
    """An entry fill.

    Attributes
    ----------
    price : float
        Fill price including slippage, USDT.
    fee_usdt : float
        Taker fee, USDT.
    active_from_ns : int
        The time from which later price ranges count for the position's TP/SL, UNIX ns (a bar's open
        time when it filled at that bar's open, else the book's ``ts_event``).
    """

    price: float
    fee_usdt: float
    active_from_ns: int


@dataclass(frozen=True, slots=True)
class ExitFill:
    """An exit fill: why, at what price (USDT, slippage included) and its taker fee (USDT)."""

    reason: ev.ExitReason
    price: float
    fee_usdt: float


def entry_side(side: ev.PositionSide) -> ev.OrderSide:
    """Return the order side that opens a ``side`` position (``long`` → ``Buy``)."""
    return "Buy" if side == "long" else "Sell"


def exit_side(side: ev.PositionSide) -> ev.OrderSide:
    """Return the order side that closes a ``side`` position (``long`` → ``Sell``)."""
    return "Sell" if side == "long" else "Buy"


def fee(price: float, qty: float, config: ExecutorConfig) -> float:
    """Return the taker fee of a fill, USDT: ``price × qty × taker_fee``."""
    return price * qty * config.taker_fee


def _adverse(price: float, order_side: ev.OrderSide, config: ExecutorConfig) -> float:
    """Move ``price`` against the taker by the configured slippage (buys pay more, sells get less)."""
    return price * (1.0 + config.slippage) if order_side == "Buy" else price * (1.0 - config.slippage)


def entry_fill(
    side: ev.PositionSide, qty: float, order_ts_ns: int, event: ev.Event, config: ExecutorConfig
) -> EntryFill | None:
    """Fill a market entry against ``event`` if it carries the next market price after the order.

    Parameters
    ----------
    side : {"long", "short"}
        The position the entry opens.
    qty : float
        Order quantity, base currency.
    order_ts_ns : int
        When the order was submitted (``ts_event`` of ``OrderSubmitted``), UNIX ns.
    event : Event
        The market input: a ``BookSnapshot`` (best ask for a buy, best bid for a sell) or a ``Bar`` whose
        ``open_time_ns >= order_ts_ns`` (its open). Anything else gives no fill.
    config : ExecutorConfig

    Returns
    -------
    EntryFill or None
        None when ``event`` carries no usable price (other type, empty book side, an older bar).
    """
    order_side = entry_side(side)
    if isinstance(event, ev.BookSnapshot):
        levels = event.asks if order_side == "Buy" else event.bids
        if not levels:
            return None
        raw, active_from = levels[0][0], event.ts_event
    elif isinstance(event, ev.Bar):
        if event.open_time_ns < order_ts_ns:
            return None
        raw, active_from = event.open, event.open_time_ns
    else:
        return None
    price = _adverse(raw, order_side, config)
    return EntryFill(price=price, fee_usdt=fee(price, qty, config), active_from_ns=active_from)


def exit_trigger(
    side: ev.PositionSide,
    take_profit: float,
    stop_loss: float,
    active_from_ns: int,
    event: ev.Event,
) -> tuple[ev.ExitReason, float] | None:
    """Return ``(reason, trigger price)`` when ``event`` touches the take-profit or the stop-loss.

    A bar counts only if it opened at or after ``active_from_ns`` (its range then happened while the
    position was open); when it touches both levels the stop-loss wins. A book is read at its best bid
    for a long's exit and its best ask for a short's.

    Parameters
    ----------
    side : {"long", "short"}
    take_profit, stop_loss : float
        Trigger prices, USDT.
    active_from_ns : int
        See :class:`EntryFill`, UNIX ns.
    event : Event
        A ``Bar`` or ``BookSnapshot``; anything else never triggers.
    """
    if isinstance(event, ev.Bar):
        if event.open_time_ns < active_from_ns:
            return None
        if side == "long":
            hit_sl, hit_tp = event.low <= stop_loss, event.high >= take_profit
        else:
            hit_sl, hit_tp = event.high >= stop_loss, event.low <= take_profit
    elif isinstance(event, ev.BookSnapshot):
        levels = event.bids if side == "long" else event.asks
        if not levels:
            return None
        px = levels[0][0]
        if side == "long":
            hit_sl, hit_tp = px <= stop_loss, px >= take_profit
        else:
            hit_sl, hit_tp = px >= stop_loss, px <= take_profit
    else:
        return None
    if hit_sl:
        return "stop_loss", stop_loss
    if hit_tp:
        return "take_profit", take_profit
    return None


def best_price(side: ev.PositionSide, event: ev.Event) -> float | None:
    """Return the most favourable price ``event`` shows a ``side`` position, USDT: a bar's high (long)
    or low (short), a book's best bid (long) or best ask (short); None for other events or an empty
    book side. (What the break-even trigger and a trailing stop read.)
    """
    if isinstance(event, ev.Bar):
        return event.high if side == "long" else event.low
    if isinstance(event, ev.BookSnapshot):
        levels = event.bids if side == "long" else event.asks
        return levels[0][0] if levels else None
    return None


def limit_reached(side: ev.PositionSide, price: float, active_from_ns: int, event: ev.Event) -> bool:
    """True if ``event`` reaches the limit ``price`` (USDT) of a reduce-only order closing a ``side``
    position: a long's sell limit by a bar's high or a book's best bid at or above it, a short's buy
    limit by a low or best ask at or below it. A bar counts only if it opened at or after ``active_from_ns``.
    """
    if isinstance(event, ev.Bar) and event.open_time_ns < active_from_ns:
        return False
    px = best_price(side, event)
    if px is None:
        return False
    return px >= price if side == "long" else px <= price


def trailing_level(side: ev.PositionSide, best: float, distance: float) -> float:
    """Return the trigger of a trailing stop ``distance`` behind the ``best`` price, USDT."""
    return best - distance if side == "long" else best + distance


def market_price(side: ev.PositionSide, event: ev.Event) -> float | None:
    """Return the price at which ``side`` could exit now: a bar's close, or the book's best bid (long) /
    best ask (short), USDT; None for other events or an empty book side.
    """
    if isinstance(event, ev.Bar):
        return event.close
    if isinstance(event, ev.BookSnapshot):
        levels = event.bids if side == "long" else event.asks
        return levels[0][0] if levels else None
    return None


def exit_fill(
    side: ev.PositionSide, reason: ev.ExitReason, trigger: float, qty: float, config: ExecutorConfig
) -> ExitFill:
    """Fill an exit of ``qty``: a take-profit at ``trigger``; a stop-loss or market exit at ``trigger``
    moved against the position by the slippage. The taker fee is charged either way.
    """
    price = trigger if reason == "take_profit" else _adverse(trigger, exit_side(side), config)
    return ExitFill(reason=reason, price=price, fee_usdt=fee(price, qty, config))


def gross_return(side: ev.PositionSide, entry_price: float, price: float) -> float:
    """Return the price return of a position, fraction of the entry price (positive = in profit)."""
    sign = 1.0 if side == "long" else -1.0
    return sign * (price - entry_price) / entry_price


def r_multiple(side: ev.PositionSide, entry_price: float, stop_loss: float, r: float) -> float:
    """Return the price ``r`` R into profit, USDT: ``entry ± r × |entry − stop_loss|`` (+ for a long).

    R is the risk per unit, the distance from the entry to the stop-loss (the scaled plan's TP1 and TP2
    are 1.5 R and 2.5 R by default).
    """
    distance = abs(entry_price - stop_loss)
    return entry_price + r * distance if side == "long" else entry_price - r * distance


def realized_pnl(side: ev.PositionSide, qty: float, entry_price: float, exit_price: float, fees_usdt: float) -> float:
    """Return the realized P&L of a round trip net of ``fees_usdt`` (both legs), USDT.

    ``pnl = sign × (exit − entry) × qty − fees`` with ``sign = +1`` for a long, ``−1`` for a short.
    """
    sign = 1.0 if side == "long" else -1.0
    return sign * (exit_price - entry_price) * qty - fees_usdt


def _better(side: ev.PositionSide, best: float, px: float | None, event: ev.Event, active_from_ns: int) -> float:
    if px is None or (isinstance(event, ev.Bar) and event.open_time_ns < active_from_ns):
        return best
    if best <= 0:
        return px
    return max(best, px) if side == "long" else min(best, px)


# --- the venue ------------------------------------------------------------------------------------


class PaperEntry(Struct, frozen=True, kw_only=True):
    """A working market entry with its attached take-profit and stop-loss."""

    order: ev.OrderSubmitted
    expires_ns: int | None = None


class PaperPosition(Struct, frozen=True, kw_only=True):
    """An open paper position.

    ``active_from_ns`` is the time from which price ranges count for its TP/SL (see :class:`EntryFill`).
    ``qty`` is what is left (TP1 lowers it) and ``fee_usdt`` the entry fee's share of it. ``take_profit``
    and ``stop_loss`` are the exits in force (None: the entry order's); ``tp1`` the working TP1 order;
    ``trailing_distance`` (USDT, 0 = none) and ``trail_best`` (the best price since the trailing stop
    started, 0 = not yet) its trailing stop.
    """

    order: ev.OrderSubmitted
    side: ev.PositionSide
    qty: float
    entry_price: float
    fee_usdt: float
    active_from_ns: int
    take_profit: float | None = None
    stop_loss: float | None = None
    tp1: ev.OrderSubmitted | None = None
    trailing_distance: float = 0.0
    trail_best: float = 0.0

    @property
    def exits(self) -> tuple[float | None, float | None]:
        """``(take_profit, stop_loss)`` in force, USDT (None: the entry carries none)."""
        tp = self.take_profit if self.take_profit is not None else self.order.take_profit
        sl = self.stop_loss if self.stop_loss is not None else self.order.stop_loss
        return tp, sl


class PaperState(Struct):
    """The paper account: working entries and open positions by symbol, realized P&L and fees."""

    entries: dict[str, PaperEntry] = {}
    positions: dict[str, PaperPosition] = {}
    realized_pnl_usdt: float = 0.0
    fees_usdt: float = 0.0


class PaperVenue:
    """A venue simulated from the market data the executor reads (pure, deterministic).

    A market entry fills at the next market price after it (:func:`entry_fill`), unless that is past
    its ``expires_ns``; its exchange-native take-profit and stop-loss then trigger from later books and
    bars (:func:`exit_trigger`; on the bar whose open filled the entry, that bar's range counts). A
    reduce-only market order (the executor's own exit) fills at once at its ``price_ref`` with slippage;
    a reduce-only Limit order (TP1) rests until the market reaches it (:func:`limit_reached`). A
    ``StopMoved`` (:meth:`move_stop`) sets the exits in force, and a trailing stop, as Bybit's
    ``/v5/position/trading-stop`` does.
    Every fill pays the taker fee. Fills are ``OrderFilled`` events; an exit fill names its trigger in
    ``exit_reason`` (``take_profit``/``stop_loss``), as Bybit's ``stopOrderType`` does.

    Parameters
    ----------
    config : ExecutorConfig
        Taker fee, slippage, venue name.
    """

    name: ClassVar[str] = "paper"
    state_type: ClassVar[type[Struct]] = PaperState

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.state = PaperState()

    # --- orders -------------------------------------------------------------------------------------

    def submit(self, order: ev.OrderSubmitted, expires_ns: int | None = None) -> list[ev.Event]:
        """Take an entry (fills at the next market price) or a reduce-only exit (fills now).

        Raises
        ------
        ValueError
            If the symbol already has a working entry, or an exit has no position to reduce.
        """
        st = self.state
        if not order.reduce_only:
            if order.symbol in st.entries or order.symbol in st.positions:
                raise ValueError(f"expected no working entry or position on {order.symbol} for {order.order_id}")
            st.entries = {**st.entries, order.symbol: PaperEntry(order=order, expires_ns=expires_ns)}
            return []
        pos = st.positions.get(order.symbol)
        if pos is None:
            raise ValueError(f"expected a position on {order.symbol} for the exit {order.order_id}")
        if order.order_type == "Limit":  # TP1: rests until the market reaches it
            self._put(msgspec.structs.replace(pos, tp1=order))
            return []
        return [self._close(pos, None, order.price_ref, order, order.order_id, order.event_id)]

    def move_stop(self, moved: ev.StopMoved) -> list[ev.Event]:
        """Set the position's exits to those of ``moved`` (from the next market data on); no event.

        A trailing stop newly set starts following at once from ``moved.active_price`` (the executor
        sets it where the market just traded: TP1's price), or from the next market data without one.
        A position already closed is left alone.
        """
        pos = self.state.positions.get(moved.symbol)
        if pos is None:
            return []
        distance = moved.trailing_distance or 0.0
        best = pos.trail_best if pos.trailing_distance > 0 else (moved.active_price or 0.0)
        self._put(
            msgspec.structs.replace(
                pos,
                stop_loss=moved.stop_loss,
                take_profit=moved.take_profit if moved.take_profit is not None else pos.exits[0],
                trailing_distance=distance,
                trail_best=best if distance > 0 else 0.0,
            )
        )
        return []

    def cancel(self, order_id: str, at: ev.Event) -> list[ev.Event]:
        """Drop a working entry (no event: the executor records why, e.g. ``EntryExpired``)."""
        self.state.entries = {s: e for s, e in self.state.entries.items() if e.order.order_id != order_id}
        return []

    # --- market ------------------------------------------------------------------------------------

    def on_market(self, event: MarketData) -> list[ev.Event]:
        """Fill the symbol's working entry and trigger its position's TP/SL on ``event``."""
        st = self.state
        sym = event.symbol
        out: list[ev.Event] = []
        entry = st.entries.get(sym)
        if entry is not None:
            order = entry.order
            side: ev.PositionSide = "long" if order.side == "Buy" else "short"
            fill = entry_fill(side, order.qty, order.ts_event, event, self.config)
            if fill is not None and (entry.expires_ns is None or fill.active_from_ns <= entry.expires_ns):
                filled = derive(
                    ev.OrderFilled, event, order.correlation_id, order.order_id,
                    correlation_id=order.correlation_id, causation_id=event.event_id, route=order,
                    order_id=order.order_id, fill_id=derive_id("fill", order.order_id), side=order.side,
                    qty=order.qty, price=fill.price, fee_usdt=fill.fee_usdt, reduce_only=False,
                    venue_name=self.config.venue_name,
                )  # fmt: skip
                out.append(filled)
                pos = PaperPosition(
                    order=order, side=side, qty=order.qty, entry_price=fill.price, fee_usdt=fill.fee_usdt,
                    active_from_ns=fill.active_from_ns,
                )  # fmt: skip
                st.entries = {s: e for s, e in st.entries.items() if s != sym}
                st.positions = {**st.positions, sym: pos}
                st.fees_usdt += fill.fee_usdt
                if not isinstance(event, ev.Bar):
                    return out  # a book fill: the position is active from this book on
        held = st.positions.get(sym)
        if held is None:
            return out
        pos = held
        order = pos.order
        take_profit, stop_loss = pos.exits
        if take_profit is None or stop_loss is None:
            return out
        stop = stop_loss
        stop_reason: ev.ExitReason = "stop_loss"
        if pos.trailing_distance > 0 and pos.trail_best > 0:
            level = trailing_level(pos.side, pos.trail_best, pos.trailing_distance)
            if (level > stop) if pos.side == "long" else (level < stop):
                stop, stop_reason = level, "trailing_stop"
        trigger = exit_trigger(pos.side, take_profit, stop, pos.active_from_ns, event)
        if trigger is not None and trigger[0] == "stop_loss":  # the stop wins over any take-profit
            oid = order_link_id(order.correlation_id, stop_reason)
            out.append(self._close(pos, stop_reason, stop, event, oid, event.event_id))
            return out
        tp1 = pos.tp1
        if tp1 is not None and limit_reached(pos.side, tp1.price or tp1.price_ref, pos.active_from_ns, event):
            out.append(self._reduce(pos, tp1, event))
            pos = st.positions[sym]
        if trigger is not None:
            reason, price = trigger
            out.append(
                self._close(pos, reason, price, event, order_link_id(order.correlation_id, reason), event.event_id)
            )
            return out
        if pos.trailing_distance > 0:  # the trailing stop follows the best price (from the next event on)
            best = _better(pos.side, pos.trail_best, best_price(pos.side, event), event, pos.active_from_ns)
            if best != pos.trail_best:
                self._put(msgspec.structs.replace(pos, trail_best=best))
        return out

    def _put(self, pos: PaperPosition) -> None:
        self.state.positions = {**self.state.positions, pos.order.symbol: pos}

    def _reduce(self, pos: PaperPosition, tp1: ev.OrderSubmitted, at: ev.Event) -> ev.OrderFilled:
        """Fill TP1 (a resting reduce-only Limit order) at its price, paying the maker fee."""
        price = tp1.price or tp1.price_ref
        qty = min(tp1.qty, pos.qty)
        fill_fee = price * qty * self.config.maker_fee
        share = pos.fee_usdt * qty / pos.qty
        st = self.state
        st.fees_usdt += fill_fee
        st.realized_pnl_usdt += realized_pnl(pos.side, qty, pos.entry_price, price, share + fill_fee)
        self._put(msgspec.structs.replace(pos, qty=pos.qty - qty, fee_usdt=pos.fee_usdt - share, tp1=None))
        entry = pos.order
        return derive(
            ev.OrderFilled, at, entry.correlation_id, tp1.order_id,
            correlation_id=entry.correlation_id, causation_id=at.event_id, route=entry, order_id=tp1.order_id,
            fill_id=derive_id("fill", tp1.order_id), side=exit_side(pos.side), qty=qty, price=price,
            fee_usdt=fill_fee, liquidity="maker", reduce_only=True, venue_name=self.config.venue_name,
            exit_reason="take_profit",
        )  # fmt: skip

    def _close(
        self,
        pos: PaperPosition,
        reason: ev.ExitReason | None,
        trigger: float,
        at: ev.Event,
        order_id: str,
        causation_id: str,
    ) -> ev.OrderFilled:
        fill = exit_fill(pos.side, reason or "stale_exit", trigger, pos.qty, self.config)
        entry = pos.order
        st = self.state
        st.positions = {s: p for s, p in st.positions.items() if s != entry.symbol}
        st.fees_usdt += fill.fee_usdt
        st.realized_pnl_usdt += realized_pnl(
            pos.side, pos.qty, pos.entry_price, fill.price, pos.fee_usdt + fill.fee_usdt
        )
        return derive(
            ev.OrderFilled, at, entry.correlation_id, order_id,
            correlation_id=entry.correlation_id, causation_id=causation_id, route=entry,
            order_id=order_id, fill_id=derive_id("fill", order_id), side=exit_side(pos.side), qty=pos.qty,
            price=fill.price, fee_usdt=fill.fee_usdt, reduce_only=True, venue_name=self.config.venue_name,
            exit_reason=reason,
        )  # fmt: skip

    # --- what the venue holds ------------------------------------------------------------------------

    def positions(self) -> dict[str, VenuePosition]:
        """Open positions by symbol."""
        return {
            s: VenuePosition(symbol=s, side=p.side, qty=p.qty, entry_price=p.entry_price,
                             take_profit=p.exits[0] or 0.0, stop_loss=p.exits[1] or 0.0)
            for s, p in self.state.positions.items()
        }  # fmt: skip

    def open_orders(self) -> dict[str, VenueOrder]:
        """Working entries by ``order_id``."""
        return {
            e.order.order_id: VenueOrder(order_id=e.order.order_id, symbol=s, side=e.order.side, qty=e.order.qty,
                                         take_profit=e.order.take_profit, stop_loss=e.order.stop_loss,
                                         submitted_ns=e.order.ts_event)
            for s, e in self.state.entries.items()
        }  # fmt: skip

    def wallet(self) -> Wallet:
        """Realized P&L and fees of the paper account."""
        return Wallet(realized_pnl_usdt=self.state.realized_pnl_usdt, fees_usdt=self.state.fees_usdt)

    def get_state(self) -> PaperState:
        """Return the account (a copy of its value)."""
        return msgspec.structs.replace(self.state)

    def set_state(self, state: PaperState) -> None:
        """Put back an account from :meth:`get_state`."""
        self.state = msgspec.structs.replace(state)
