"""A real exchange as the pure core sees it: orders leave through the log, answers come back on it.

:class:`ExchangeVenue` implements :class:`~nertz_executor.core.venue.Venue` for a venue that answers
later (Bybit): ``submit``, ``cancel`` and ``move_stop`` cause nothing now — the ``OrderSubmitted`` (or
``EntryExpired``, ``StopMoved``) on the log *is* the instruction, which the venue's adapter
(:mod:`nertz_executor.adapters.bybit`) reads, sends and answers with ``venue.*`` reports — and market data
fill nothing. What the venue holds is what it last reported (positions, wallet), kept by the executor's
fold (:func:`nertz_executor.core.lock.absorb`), so a replay of the log reproduces every decision
without asking the exchange again.
"""

from __future__ import annotations

from typing import ClassVar

from nertz_common import events as ev
from nertz_executor.core.venue import MarketData, VenueOrder, VenuePosition, Wallet


class ExchangeVenue:
    """The pure side of a real venue (see the module docstring).

    Parameters
    ----------
    name : str
        The venue's name (``bybit``), recorded in orders and expected in its reports.
    """

    state_type: ClassVar[None] = None

    def __init__(self, name: str) -> None:
        self.name = name

    def submit(self, order: ev.OrderSubmitted, expires_ns: int | None = None) -> list[ev.Event]:
        """Nothing now: the adapter sends the order on the log and reports what the venue said."""
        return []

    def cancel(self, order_id: str, at: ev.Event) -> list[ev.Event]:
        """Nothing now: the adapter cancels the order named by the ``EntryExpired`` on the log."""
        return []

    def move_stop(self, moved: ev.StopMoved) -> list[ev.Event]:
        """Nothing now: the adapter sends the ``StopMoved`` on the log (``/v5/position/trading-stop``)."""
        return []

    def on_market(self, event: MarketData) -> list[ev.Event]:
        """Nothing: the exchange fills and triggers on its own market, and reports it."""
        return []

    def positions(self) -> dict[str, VenuePosition]:
        """Not kept here: the executor's state holds what the venue reported."""
        return {}

    def open_orders(self) -> dict[str, VenueOrder]:
        """Not kept here: the executor's state holds the order in hand per symbol."""
        return {}

    def wallet(self) -> Wallet:
        """Not kept here: the executor's state holds the reported equity."""
        return Wallet()

    def get_state(self) -> None:
        """No state of its own."""
        return None

    def set_state(self, state: None) -> None:
        """No state of its own."""
