"""Bybit V5 REST market answers → events: instruments-info → ``InstrumentSpec``, kline list → closed ``Bar``.

Pure (no I/O, no clock): the server's time comes in as an argument (the envelope's ``time``). Shapes
are Bybit's (WIRE.md §3.3, docs ``market/instrument``, ``market/kline``): numbers are strings; a kline
row is ``[startTime, open, high, low, close, volume, turnover]``, newest first.

Decisions:

- A backfilled bar is the same fact as the WebSocket's closed kline and the CSV row: same id
  (``derive_id("Bar", symbol, interval, open_ns, True)``), so a bar seen twice is stored once (the
  stream drops the duplicate ``Nats-Msg-Id``). Its ``ts_init`` is its close time, like a CSV bar, so
  the event is a function of the data alone.
- The newest row of a kline page is usually the candle still open ("close is the last price while the
  candle is open"): a row whose close time is after the server's time is not a closed bar and is left out.
- ``InstrumentSpec`` ids are a function of the symbol and its rules, so re-fetching unchanged rules at
  a restart stores nothing new, and a change of rules is a new event. Its ``ts_event``/``ts_init`` are
  the server time of the answer. The rules are Bybit's: ``priceFilter.tickSize``, ``lotSizeFilter``'s
  ``qtyStep``, ``minOrderQty``, ``minNotionalValue`` (USDT) and ``maxMktOrderQty``,
  ``leverageFilter.maxLeverage``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_ingest.core.bars import make_bar
from nertz_ingest.core.bybit import KLINE_INTERVAL_MS, MS, check_ohlc
from nertz_ingest.core.rejection import BadInput, Rejected, check_price, check_size, to_float


def instrument_spec(entry: Mapping[str, Any], server_ms: int) -> ev.InstrumentSpec:
    """Return the ``InstrumentSpec`` of one instruments-info entry.

    Parameters
    ----------
    entry : mapping
        One element of ``result.list`` (``symbol``, ``priceFilter.tickSize``, ``lotSizeFilter.qtyStep``,
        ``lotSizeFilter.minOrderQty``; optional ``lotSizeFilter.minNotionalValue`` and
        ``lotSizeFilter.maxMktOrderQty``, ``leverageFilter.maxLeverage``).
    server_ms : int
        The answer's server time (envelope ``time``), ms.

    Raises
    ------
    BadInput
        ``missing_field``, ``not_numeric``, ``non_positive_price``, ``negative_size`` or ``bad_symbol``.
    """
    try:
        symbol = str(entry["symbol"])
        tick = entry["priceFilter"]["tickSize"]
        step = entry["lotSizeFilter"]["qtyStep"]
        min_qty = entry["lotSizeFilter"]["minOrderQty"]
    except (KeyError, TypeError) as e:
        detail = f"expected symbol, priceFilter.tickSize, lotSizeFilter.qtyStep and minOrderQty, missing {e!r}"
        raise BadInput("missing_field", detail) from None
    if not (2 <= len(symbol) <= 30 and symbol.isalnum() and symbol.upper() == symbol):
        raise BadInput("bad_symbol", f"expected a symbol of 2-30 of A-Z 0-9, was {symbol!r}")
    tick_size = check_price(to_float(tick, "priceFilter.tickSize"), "priceFilter.tickSize")
    qty_step = check_price(to_float(step, "lotSizeFilter.qtyStep"), "lotSizeFilter.qtyStep")
    min_order_qty = check_size(to_float(min_qty, "lotSizeFilter.minOrderQty"), "lotSizeFilter.minOrderQty")
    lev = (entry.get("leverageFilter") or {}).get("maxLeverage")
    max_leverage = None
    if lev:
        max_leverage = check_price(to_float(lev, "leverageFilter.maxLeverage"), "leverageFilter.maxLeverage")
    lots = entry["lotSizeFilter"]
    min_notional = _optional_size(lots, "minNotionalValue")
    max_market_qty = _optional_size(lots, "maxMktOrderQty")
    ts_ns = server_ms * MS
    return ev.InstrumentSpec(
        event_id=derive_id(
            "InstrumentSpec", symbol, tick_size, qty_step, min_order_qty, max_leverage, min_notional, max_market_qty
        ),
        ts_event=ts_ns,
        ts_init=ts_ns,
        symbol=symbol,
        tick_size=tick_size,
        qty_step=qty_step,
        min_order_qty=min_order_qty,
        max_leverage=max_leverage,
        min_notional_usdt=min_notional,
        max_market_qty=max_market_qty,
    )


def _optional_size(lots: Mapping[str, Any], key: str) -> float | None:
    text = lots.get(key) if isinstance(lots, Mapping) else None
    if text is None or text == "":
        return None
    return check_size(to_float(text, f"lotSizeFilter.{key}"), f"lotSizeFilter.{key}")


def instruments_answer(answer: Mapping[str, Any]) -> list[ev.InstrumentSpec]:
    """Return the ``InstrumentSpec`` of every entry of an instruments-info answer.

    Parameters
    ----------
    answer : mapping
        Bybit's envelope (``result.list``, ``time`` in ms) or a recorded copy of it with the list and the
        time at the top (``list``, ``time``; the bundled ``data/bybit_instruments_linear.json``).

    Raises
    ------
    BadInput
        ``missing_field`` without a list or a time, or as :func:`instrument_spec` for an entry.
    """
    entries = answer.get("list")
    if entries is None:
        entries = (answer.get("result") or {}).get("list")
    server_ms = answer.get("time")
    if not isinstance(entries, list) or not isinstance(server_ms, int):
        raise BadInput("missing_field", "expected an instruments-info answer with list (or result.list) and time")
    return [instrument_spec(e, server_ms) for e in entries]


def kline_bars(
    symbol: str, interval: str, rows: Sequence[Sequence[Any]], server_ms: int
) -> tuple[list[ev.Bar], list[Rejected]]:
    """Turn kline rows (any order) into closed bars, ascending by open time, without duplicates.

    Parameters
    ----------
    symbol : str
    interval : str
        Bybit interval (``"1"``, ``"5"``, ``"60"``, ``"D"``...; not ``"M"``).
    rows : sequence of rows
        ``[startTime, open, high, low, close, volume, turnover]`` (strings or numbers).
    server_ms : int
        Server time of the answer, ms: rows whose candle closes after it are still open and left out.

    Returns
    -------
    (bars, rejected)
        Closed bars in time order, and the rows that could not be used (raw = the row as JSON).

    Raises
    ------
    ValueError
        If ``interval`` is not a fixed-length Bybit interval.
    """
    dur_ms = KLINE_INTERVAL_MS.get(interval)
    if dur_ms is None:
        fixed = [k for k, v in KLINE_INTERVAL_MS.items() if v]
        raise ValueError(f"expected a fixed-length kline interval in {fixed}, was {interval!r}")
    bars: dict[int, ev.Bar] = {}
    rejected: list[Rejected] = []
    for i, row in enumerate(rows):
        where = f"list[{i}]"
        try:
            if len(row) < 6:
                raise BadInput("missing_field", f"expected {where} with 7 fields, was {len(row)}")
            start_ms = int(to_float(row[0], f"{where}.startTime"))
            if start_ms < 0 or start_ms > 2**63 // MS - dur_ms:
                raise BadInput("bad_timestamp", f"expected {where}.startTime >= 0 ms, was {row[0]!r}")
            o, h, lo, c = (to_float(row[k], f"{where}[{k}]") for k in (1, 2, 3, 4))
            check_ohlc(o, h, lo, c, where)
            volume = check_size(to_float(row[5], f"{where}.volume"), f"{where}.volume")
            turnover = None
            if len(row) > 6 and row[6] not in ("", None):
                turnover = check_size(to_float(row[6], f"{where}.turnover"), f"{where}.turnover")
        except BadInput as bad:
            topic = f"kline.{interval}.{symbol}"
            rejected.append(Rejected(bad.reason, bad.detail, json.dumps(list(row)), topic=topic, ts_ns=server_ms * MS))
            continue
        if start_ms + dur_ms > server_ms:
            continue  # still open
        open_ns = start_ms * MS
        close_ns = open_ns + dur_ms * MS
        bars[start_ms] = make_bar(
            symbol, interval, open_ns, ts_event=close_ns, ts_init=close_ns,
            open=o, high=h, low=lo, close=c, volume=volume, turnover=turnover,
        )  # fmt: skip
    return [bars[k] for k in sorted(bars)], rejected
