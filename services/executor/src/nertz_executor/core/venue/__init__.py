"""The venue protocol: where orders go and what the venue says back, behind one interface.

The Hard Lock never knows which venue it trades on (ARCHITECTURE.md §3). A venue takes the executor's
orders (``OrderSubmitted``, which is on the log before any venue sees it: the log is the outbox) and
answers with **venue events** (``venue.*``: fills, rejections), which the executor folds into its lock:

- :class:`~nertz_executor.core.venue.paper.PaperVenue` is a pure simulation driven by the market data the
  executor reads, in log order: its answers are a function of the log, so replays derive them again;
- a Bybit venue (a later issue) answers from the exchange; its answers are recorded on the log as
  ``venue.*`` events and served back by key on replay, never asked again.

Prices in USDT, quantities in base currency, times in UNIX ns.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

from msgspec import Struct

from nertz_common import events as ev

MarketData: TypeAlias = ev.Bar | ev.BookSnapshot | ev.Ticker | ev.FeedGap | ev.FeedResynced | ev.FeedStale


class VenueOrder(Struct, frozen=True, kw_only=True):
    """A working order at the venue.

    Attributes
    ----------
    order_id : str
        Bybit's ``orderLinkId`` (derived from the intent).
    symbol : str
    side : {"Buy", "Sell"}
    qty : float
        Base currency.
    take_profit, stop_loss : float or None
        Exchange-native exits attached to an entry (``tpslMode=Full``), USDT.
    reduce_only : bool
    submitted_ns : int
        When it was submitted (event time), UNIX ns.
    """

    order_id: str
    symbol: str
    side: ev.OrderSide
    qty: float
    take_profit: float | None = None
    stop_loss: float | None = None
    reduce_only: bool = False
    submitted_ns: int = 0


class VenuePosition(Struct, frozen=True, kw_only=True):
    """An open position at the venue with its exchange-native take-profit and stop-loss."""

    symbol: str
    side: ev.PositionSide
    qty: float
    entry_price: float
    take_profit: float
    stop_loss: float


class Wallet(Struct, frozen=True, kw_only=True):
    """The account as the venue sees it: realized P&L net of fees, and fees paid, USDT."""

    realized_pnl_usdt: float = 0.0
    fees_usdt: float = 0.0


class Venue(Protocol):
    """What the executor needs of a venue.

    Every method returns the venue events the call causes *now* (possibly none: a real exchange
    answers later, on the log).
    """

    name: str

    def submit(self, order: ev.OrderSubmitted, expires_ns: int | None = None) -> list[ev.Event]:
        """Take an order; ``expires_ns`` is the event time after which an entry may not fill."""
        ...

    def cancel(self, order_id: str, at: ev.Event) -> list[ev.Event]:
        """Cancel a working order at the time of ``at``."""
        ...

    def move_stop(self, moved: ev.StopMoved) -> list[ev.Event]:
        """Set the open position's exits (stop-loss, take-profit, trailing stop) to those of ``moved``."""
        ...

    def on_market(self, event: MarketData) -> list[ev.Event]:
        """Show the venue a market event (a simulation fills and triggers on it; an exchange ignores it)."""
        ...

    def positions(self) -> dict[str, VenuePosition]:
        """Open positions by symbol."""
        ...

    def open_orders(self) -> dict[str, VenueOrder]:
        """Working orders by ``order_id``."""
        ...

    def wallet(self) -> Wallet:
        """The account's realized P&L and fees."""
        ...
