"""Parse Bybit kline CSV rows (``timestamp,open,high,low,close,volume``) into closed ``Bar`` events.

The format is the one of the bundled 1m files (``data/bybit_kline_1m/``, origin in ``data/SOURCES.md``):
``timestamp`` is the bar's open time, prices are USDT, ``volume`` is base currency; there is no turnover.
The timestamp may be ISO 8601 with a UTC offset (``2025-05-30 16:39:00+00:00``), ISO 8601 without one
(read as UTC: ``2025-05-30 16:39:00``, ``2025-05-30T16:39:00Z``), or an integer epoch: milliseconds
(Bybit's REST form, 12-14 digits), seconds (9-10 digits) or nanoseconds (16-19 digits). A bar read
from a file is closed and known at its close, so ``ts_event = ts_init = open + interval``. Its id is the
id a closed WebSocket kline of the same bar gets (``derive_id("Bar", symbol, interval, open_ns, True)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from nertz_common import events as ev
from nertz_ingest.core.bars import make_bar
from nertz_ingest.core.bybit import check_ohlc
from nertz_ingest.core.rejection import BadInput, Rejected, check_size, to_float

HEADER = "timestamp,open,high,low,close,volume"
MINUTE_NS = 60_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")


def parse_row(line: str, symbol: str, interval_min: int = 1) -> ev.Bar | Rejected:
    """Parse one data row.

    Parameters
    ----------
    line : str
        ``timestamp,open,high,low,close,volume`` (a trailing newline is ignored).
    symbol : str
        Exchange symbol the file holds, e.g. ``BTCUSDT``.
    interval_min : int
        Bar length, minutes (1 for the bundled files); Bybit's interval name is ``str(interval_min)``.

    Returns
    -------
    Bar or Rejected
        A closed bar, or the reason the row is unusable (``bad_row``, ``bad_timestamp``,
        ``not_numeric``, ``nan``, ``non_positive_price``, ``negative_size``, ``high_below_low``...).
    """
    text = line.rstrip("\r\n")
    try:
        cols = text.split(",")
        if len(cols) != 6:
            raise BadInput("bad_row", f"expected 6 columns ({HEADER}), was {len(cols)}")
        open_ns = parse_time_ns(cols[0])
        o, h, lo, c = (to_float(cols[i], name) for i, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close")))
        check_ohlc(o, h, lo, c, "row")
        volume = check_size(to_float(cols[5], "volume"), "volume")
    except BadInput as bad:
        return Rejected(bad.reason, bad.detail, text)
    close_ns = open_ns + interval_min * MINUTE_NS
    interval = str(interval_min)
    return make_bar(
        symbol, interval, open_ns, ts_event=close_ns, ts_init=close_ns, open=o, high=h, low=lo, close=c, volume=volume
    )


def parse_lines(lines: Iterable[str], symbol: str, interval_min: int = 1) -> Iterator[ev.Bar | Rejected]:
    """Parse a whole file's lines: the header (if present) is skipped, blank lines are ignored.

    Raises
    ------
    ValueError
        If ``symbol`` is not a valid exchange symbol or ``interval_min`` < 1 (a caller's error, not data).
    """
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"expected a symbol of 2-30 of A-Z 0-9, was {symbol!r}")
    if interval_min < 1:
        raise ValueError(f"expected interval_min >= 1, was {interval_min}")
    first = True
    for line in lines:
        if first:
            first = False
            if line.strip().lower().replace(" ", "") == HEADER:
                continue
        if not line.strip():
            continue
        yield parse_row(line, symbol, interval_min)


def parse_time_ns(text: str) -> int:
    """Parse a bar's open time into UNIX ns: ISO 8601 (UTC when it has no offset) or an epoch integer.

    Raises
    ------
    BadInput
        ``bad_timestamp`` if unparseable, an epoch of an unknown unit, or before 1970.
    """
    raw = text.strip()
    if raw.isdigit():
        digits = len(raw)
        if 12 <= digits <= 14:
            return int(raw) * 1_000_000
        if 9 <= digits <= 10:
            return int(raw) * 1_000_000_000
        if 16 <= digits <= 19:
            return int(raw)
        raise BadInput(
            "bad_timestamp",
            f"expected epoch milliseconds (13 digits, Bybit's form), seconds or nanoseconds, was {text!r}",
        )
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise BadInput(
            "bad_timestamp",
            f"expected an ISO timestamp like 2025-05-30 16:39:00+00:00 or epoch milliseconds, was {text!r}",
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    ns = (t - _EPOCH) // _US * 1000
    if ns < 0:
        raise BadInput("bad_timestamp", f"expected a timestamp after 1970, was {text!r}")
    return ns
