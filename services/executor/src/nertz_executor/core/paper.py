"""The paper venue (docs/decisions.md D2): a deterministic fill simulation driven by market data.

- A market entry fills at the next market price for its symbol after the order: the next
  ``BookSnapshot`` (best ask for a buy, best bid for a sell) or the next ``Bar`` whose open time is at or
  after the order (its open), plus an adverse slippage, paying the taker fee.
- Exchange-native take-profit and stop-loss trigger from later bars (low/high) and books (best bid
  for a long's exit, best ask for a short's): for a long, ``low <= stop_loss`` stops and
  ``high >= take_profit`` takes profit; when one bar touches both, the stop-loss wins (conservative).
- A take-profit fills at its trigger price, a stop-loss at its trigger price less the slippage; a
  market exit (stale exit) at the market price less the slippage. Every fill pays the taker fee.

Every function is pure: prices in USDT, quantities in base currency, fees in USDT, times in UNIX ns.
"""

from __future__ import annotations

from dataclasses import dataclass

from nertz_common import events as ev
from nertz_executor.core.config import ExecutorConfig


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


def realized_pnl(side: ev.PositionSide, qty: float, entry_price: float, exit_price: float, fees_usdt: float) -> float:
    """Return the realized P&L of a round trip net of ``fees_usdt`` (both legs), USDT.

    ``pnl = sign × (exit − entry) × qty − fees`` with ``sign = +1`` for a long, ``−1`` for a short.
    """
    sign = 1.0 if side == "long" else -1.0
    return sign * (exit_price - entry_price) * qty - fees_usdt
