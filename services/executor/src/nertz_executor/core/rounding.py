"""Orders as Bybit wants them: quantities and prices on the instrument's grid, in exact decimals.

Bybit refuses a quantity that is not a multiple of ``lotSizeFilter.qtyStep`` and a price that is not a
multiple of ``priceFilter.tickSize`` (Bybit V5 docs, "Get Instruments Info"). Binary floats cannot hold
most such multiples exactly, so every rounding here goes through :class:`decimal.Decimal` built from the
float's shortest representation (``repr``): ``qty_down(0.5000395, 0.001)`` is ``0.5``, never
``0.49999999``, and the result is the float nearest to the exact multiple (whose ``repr`` is that
multiple).

The direction is always the conservative one: a quantity is rounded **down** (never more than the
risk guard approved), and take-profit and stop-loss are rounded **towards the entry** (a long's
take-profit down and stop-loss up, a short's the other way), so the loss at the stop never grows.

Prices in USDT, quantities in base currency.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from nertz_common import events as ev


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def to_step(value: float, step: float, *, up: bool = False) -> float:
    """Return ``value`` rounded to a multiple of ``step``, down (default) or up, exactly.

    Parameters
    ----------
    value : float
        A finite quantity or price (≥ 0).
    step : float
        The grid, > 0 (a ``qty_step`` or ``tick_size``).
    up : bool
        Round up (towards +inf) instead of down.

    Raises
    ------
    ValueError
        If ``step`` is not > 0 or ``value`` is negative or not finite.
    """
    if not step > 0:
        raise ValueError(f"expected step > 0, was {step!r}")
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"expected a finite value >= 0, was {value!r}")
    d = _dec(step)
    n = (_dec(value) / d).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return float(n * d)


def qty_down(qty: float, qty_step: float) -> float:
    """Return ``qty`` rounded down to a multiple of ``qty_step`` (base currency)."""
    return to_step(qty, qty_step)


def exits_towards_entry(
    side: ev.PositionSide, take_profit: float, stop_loss: float, tick_size: float
) -> tuple[float, float]:
    """Return ``(take_profit, stop_loss)`` on the tick grid, each rounded towards the entry.

    A long's take-profit (above the entry) is rounded down and its stop-loss (below) up; a short's
    take-profit (below) up and its stop-loss (above) down. Prices in USDT.
    """
    if side == "long":
        return to_step(take_profit, tick_size), to_step(stop_loss, tick_size, up=True)
    return to_step(take_profit, tick_size, up=True), to_step(stop_loss, tick_size)


def is_multiple(value: float, step: float) -> bool:
    """True if ``value`` is an exact multiple of ``step`` (in their shortest decimal forms)."""
    return _dec(value) % _dec(step) == 0
