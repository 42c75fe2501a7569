"""The typed refusal of a frame or row, and the value checks that produce it.

A bad input never raises out of a parser: it becomes a :class:`Rejected` that the caller counts (by
``reason``), logs (with ``detail``) and dead-letters (with ``raw``), while good inputs around it flow on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import msgspec

RejectReason = Literal[
    "invalid_json",  # not parseable as JSON at all
    "not_an_object",  # JSON, but not an object
    "unknown_topic",  # a topic this service does not parse
    "missing_field",  # a required field is absent
    "not_numeric",  # a number field holds something else
    "bad_field",  # any other type or value error (wrong side, symbol mismatch...)
    "nan",  # a price or size is NaN
    "infinite",  # a price or size is +/-inf or out of float range
    "non_positive_price",  # a price <= 0
    "negative_size",  # a size, volume or turnover < 0
    "high_below_low",  # a bar's high < its low
    "ohlc_inconsistent",  # a bar's open or close outside [low, high]
    "bad_symbol",  # symbol not ^[A-Z0-9]{2,30}$
    "bad_timestamp",  # a timestamp that is missing, negative or unparseable
    "request_failed",  # an exchange ack saying a request failed (subscribe refused...)
    "bad_recording_line",  # a recording line that is not a valid cryptofeed record
    "bad_row",  # a CSV row with the wrong number of columns
    "out_of_order",  # a bar opening before the last bar of its series (symbol, interval): back in time
    "conflicting_bar",  # a second bar for one interval (same open time) with other prices or volume
]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame or row that could not be used.

    Attributes
    ----------
    reason : RejectReason
        Short, low-cardinality code (a Prometheus label value).
    detail : str
        What was expected and what it was, e.g. ``"expected price > 0, was -1.5 at b[3]"``.
    raw : str
        The input exactly as received (a frame's JSON text, a CSV line).
    topic : str
        The Bybit topic when it could be read, else ``""``.
    ts_ns : int
        Receive time of the frame (UNIX ns), or the time of the last good row before a bad CSV row; 0
        when unknown.
    source : str
        Where it came from (``"path:line"``), for logs only.
    """

    reason: RejectReason
    detail: str
    raw: str
    topic: str = ""
    ts_ns: int = 0
    source: str = ""


class BadInput(Exception):
    """Raised inside the core's parsers and turned into :class:`Rejected` at their boundary."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RejectReason = reason
        self.detail = detail


def check_price(value: float, what: str) -> float:
    """Return ``value`` if it is a finite price > 0.

    Raises
    ------
    BadInput
        ``nan``, ``infinite`` or ``non_positive_price``.
    """
    if 0.0 < value < math.inf:
        return value
    raise _bad_number(value, what, "non_positive_price", "> 0")


def check_size(value: float, what: str) -> float:
    """Return ``value`` if it is a finite size >= 0 (base currency, or USDT for turnover).

    Raises
    ------
    BadInput
        ``nan``, ``infinite`` or ``negative_size``.
    """
    if 0.0 <= value < math.inf:
        return value
    raise _bad_number(value, what, "negative_size", ">= 0")


def check_finite(value: float, what: str) -> float:
    """Return ``value`` if it is finite (any sign, e.g. a funding rate).

    Raises
    ------
    BadInput
        ``nan`` or ``infinite``.
    """
    if math.isfinite(value):
        return value
    raise _bad_number(value, what, "bad_field", "finite")


def to_float(text: str, what: str) -> float:
    """Parse a decimal string (Bybit sends numbers as strings).

    Raises
    ------
    BadInput
        ``not_numeric`` if ``text`` is not a number.
    """
    try:
        return float(text)
    except (TypeError, ValueError):
        raise BadInput("not_numeric", f"expected a number for {what}, was {text!r}") from None


def from_validation_error(e: msgspec.ValidationError, where: str) -> BadInput:
    """Map msgspec's message to a reason code, keeping its text (which names the JSON path) as detail."""
    msg = str(e)
    if msg.startswith("Object missing required field"):
        reason: RejectReason = "missing_field"
    elif msg.startswith("Number out of range"):
        reason = "infinite"
    elif msg.startswith(("Expected `float`", "Expected `int`")):
        reason = "not_numeric"
    elif msg.startswith("Expected `object`") and "at `" not in msg:
        reason = "not_an_object"
    else:
        reason = "bad_field"
    return BadInput(reason, f"{where}: {msg}")


def _bad_number(value: float, what: str, sign_reason: RejectReason, expected: str) -> BadInput:
    if value != value:
        return BadInput("nan", f"expected {what} {expected}, was NaN")
    if math.isinf(value):
        return BadInput("infinite", f"expected finite {what}, was {value}")
    return BadInput(sign_reason, f"expected {what} {expected}, was {value}")
