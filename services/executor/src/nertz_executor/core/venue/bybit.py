"""What Bybit says, as ``venue.*`` events: pure translations of its private-stream and REST rows.

The adapter (:mod:`nertz_executor.adapters.bybit`) hands these functions Bybit's JSON rows (WIRE.md §3.3,
§4.4: numbers as strings, times in ms) and what it knows of the order they concern
(:class:`OrderRef`, from the ``OrderSubmitted`` on the log); they return the event to record. Ids are
derived from Bybit's own ids (``execId``, ``orderLinkId``), so the same execution reported twice —
by the stream and by a reconciliation, or twice by the stream — is the same event (the bus drops the
second within its duplicate window; the executor ignores a ``fill_id`` it already took).

Prices USDT, quantities base currency, times UNIX ns (Bybit's ms × 10⁶).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nertz_common import events as ev
from nertz_common.ids import derive_id

VENUE = "bybit"
MS = 1_000_000

#: Bybit ``stopOrderType`` of an exit it triggered → our exit reason
_EXIT_REASONS: dict[str, ev.ExitReason] = {
    "TakeProfit": "take_profit",
    "PartialTakeProfit": "take_profit",
    "StopLoss": "stop_loss",
    "PartialStopLoss": "stop_loss",
    "TrailingStop": "trailing_stop",
}
#: ``orderStatus`` values that end an order without (completely) filling it
ENDED_UNFILLED = frozenset({"Cancelled", "Deactivated", "PartiallyFilledCanceled"})


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What the log says of one of our orders (its ``OrderSubmitted``)."""

    order_id: str
    symbol: str
    correlation_id: str
    causation_id: str
    reduce_only: bool


def _f(row: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    v = row.get(key)
    if v in (None, ""):
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _ns(row: Mapping[str, Any], key: str, default_ns: int) -> int:
    v = row.get(key)
    try:
        return int(v) * MS if v not in (None, "", "0") else default_ns
    except (TypeError, ValueError):
        return default_ns


def _optional(row: Mapping[str, Any], key: str) -> float | None:
    v = _f(row, key, 0.0)
    return v if v > 0 else None


def execution(
    row: Mapping[str, Any], ref: OrderRef | None, position_correlation: str, recv_ns: int
) -> ev.OrderFilled | ev.FundingSettled | None:
    """Return the event of one ``execution`` row (stream or ``/v5/execution/list``), None if not ours.

    A ``Trade`` (or liquidation) is an ``OrderFilled``; a ``Funding`` a ``FundingSettled``. An
    execution of an order Bybit created (a take-profit, stop-loss or trailing stop of the position:
    ``stopOrderType``) or of a closing order is reduce-only and names its exit reason.
    """
    if row.get("category", "linear") not in ("linear", ""):
        return None
    exec_id = str(row.get("execId") or "")
    symbol = str(row.get("symbol") or "")
    if not exec_id or not symbol:
        return None
    ts = _ns(row, "execTime", recv_ns)
    kind = str(row.get("execType") or "Trade")
    corr = ref.correlation_id if ref is not None else position_correlation
    cause = ref.causation_id if ref is not None else corr
    if kind == "Funding":
        return ev.FundingSettled(
            event_id=derive_id("FundingSettled", VENUE, exec_id), ts_event=ts, ts_init=recv_ns, symbol=symbol,
            correlation_id=corr, causation_id=cause, fill_id=exec_id, fee_usdt=_f(row, "execFee"),
            rate=_optional(row, "feeRate"), position_value_usdt=_optional(row, "execValue"), venue_name=VENUE,
        )  # fmt: skip
    stop = str(row.get("stopOrderType") or "")
    exit_reason: ev.ExitReason | None = _EXIT_REASONS.get(stop)
    if kind in ("BustTrade", "AdlTrade") or str(row.get("createType") or "").startswith("CreateByLiq"):
        exit_reason = "liquidation"
    reduce_only = (
        (ref.reduce_only if ref is not None else False) or exit_reason is not None or _f(row, "closedSize") > 0
    )
    link = str(row.get("orderLinkId") or "") or str(row.get("orderId") or "")
    return ev.OrderFilled(
        event_id=derive_id("OrderFilled", VENUE, exec_id), ts_event=ts, ts_init=recv_ns, symbol=symbol,
        correlation_id=corr, causation_id=cause, order_id=ref.order_id if ref is not None else link,
        fill_id=exec_id, side="Sell" if row.get("side") == "Sell" else "Buy", qty=_f(row, "execQty"),
        price=_f(row, "execPrice"), fee_usdt=_f(row, "execFee"),
        liquidity="maker" if row.get("isMaker") in (True, "true") else "taker", reduce_only=reduce_only,
        venue_name=VENUE, exit_reason=exit_reason, venue_order_id=str(row.get("orderId") or "") or None,
        leaves_qty=_f(row, "leavesQty"),
    )  # fmt: skip


def order_update(row: Mapping[str, Any], ref: OrderRef, recv_ns: int) -> ev.OrderRefused | ev.OrderCanceled | None:
    """Return the event of an ``order`` row of one of our orders that ended without filling (or part
    filled), None for the others (a new, part filled or filled order: its executions tell)."""
    status = str(row.get("orderStatus") or "")
    ts = _ns(row, "updatedTime", recv_ns)
    if status == "Rejected":
        return ev.OrderRefused(
            event_id=derive_id("OrderRefused", VENUE, ref.order_id), ts_event=ts, ts_init=recv_ns, symbol=ref.symbol,
            correlation_id=ref.correlation_id, causation_id=ref.causation_id, order_id=ref.order_id, ret_code=0,
            ret_msg=str(row.get("rejectReason") or "Rejected"), reduce_only=ref.reduce_only, venue_name=VENUE,
        )  # fmt: skip
    if status in ENDED_UNFILLED:
        return ev.OrderCanceled(
            event_id=derive_id("OrderCanceled", VENUE, ref.order_id), ts_event=ts, ts_init=recv_ns, symbol=ref.symbol,
            correlation_id=ref.correlation_id, causation_id=ref.causation_id, order_id=ref.order_id,
            venue_order_id=str(row.get("orderId") or "") or None,
            reason=f"{status} ({row.get('cancelType') or row.get('rejectReason') or 'no reason given'})",
            filled_qty=_f(row, "cumExecQty"), reduce_only=ref.reduce_only, venue_name=VENUE,
        )  # fmt: skip
    return None


def accepted(ref: OrderRef, venue_order_id: str, server_ms: int, recv_ns: int) -> ev.OrderAccepted:
    """Return the ``OrderAccepted`` of an order Bybit took (or that was found by its ``orderLinkId``)."""
    return ev.OrderAccepted(
        event_id=derive_id("OrderAccepted", VENUE, ref.order_id), ts_event=server_ms * MS if server_ms else recv_ns,
        ts_init=recv_ns, symbol=ref.symbol, correlation_id=ref.correlation_id, causation_id=ref.causation_id,
        order_id=ref.order_id, venue_order_id=venue_order_id, reduce_only=ref.reduce_only, venue_name=VENUE,
    )  # fmt: skip


def refused(ref: OrderRef, code: int, message: str, server_ms: int, recv_ns: int) -> ev.OrderRefused:
    """Return the ``OrderRefused`` of an order Bybit refused with ``code`` (its retCode) and ``message``."""
    return ev.OrderRefused(
        event_id=derive_id("OrderRefused", VENUE, ref.order_id), ts_event=server_ms * MS if server_ms else recv_ns,
        ts_init=recv_ns, symbol=ref.symbol, correlation_id=ref.correlation_id, causation_id=ref.causation_id,
        order_id=ref.order_id, ret_code=code, ret_msg=message, reduce_only=ref.reduce_only, venue_name=VENUE,
    )  # fmt: skip


def position(
    row: Mapping[str, Any], source: str, recv_ns: int, *, round_id: str = "", server_ms: int = 0
) -> ev.PositionSnapshot | None:
    """Return the snapshot of a ``position`` row (WS ``entryPrice``, REST ``avgPrice``); ``round_id``
    names the reconciliation it belongs to (its id is a function of it)."""
    symbol = str(row.get("symbol") or "")
    if not symbol or row.get("category", "linear") not in ("linear", ""):
        return None
    size = _f(row, "size")
    side_raw = row.get("side")
    side: ev.PositionSide | None = "long" if side_raw == "Buy" else "short" if side_raw == "Sell" else None
    if size <= 0:
        side = None
    ts = server_ms * MS if server_ms else _ns(row, "updatedTime", recv_ns)
    key = round_id or str(row.get("seq") or row.get("updatedTime") or recv_ns)
    return ev.PositionSnapshot(
        event_id=derive_id("PositionSnapshot", VENUE, symbol, source, key), ts_event=ts, ts_init=recv_ns,
        symbol=symbol, venue_name=VENUE, source="reconcile" if source == "reconcile" else "stream", side=side,
        qty=size if side else 0.0, entry_price=(_f(row, "avgPrice") or _f(row, "entryPrice") or None) if side else None,
        mark_price=_optional(row, "markPrice"), take_profit=_optional(row, "takeProfit"),
        stop_loss=_optional(row, "stopLoss"), trailing_stop=_optional(row, "trailingStop"),
        leverage=_optional(row, "leverage"), unrealized_pnl_usdt=_f(row, "unrealisedPnl"),
    )  # fmt: skip


def wallet(row: Mapping[str, Any], recv_ns: int, *, key: str, ts_ns: int) -> ev.WalletSnapshot:
    """Return the snapshot of a unified account (``wallet`` row, stream or ``/v5/account/wallet-balance``)."""
    coin: Mapping[str, Any] = next((c for c in row.get("coin") or [] if c.get("coin") == "USDT"), {})
    equity = _f(row, "totalEquity") or _f(coin, "equity")
    return ev.WalletSnapshot(
        event_id=derive_id("WalletSnapshot", VENUE, key), ts_event=ts_ns, ts_init=recv_ns, venue_name=VENUE,
        equity_usdt=equity, wallet_balance_usdt=_f(row, "totalWalletBalance") or _f(coin, "walletBalance"),
        available_usdt=_optional(row, "totalAvailableBalance"),
        unrealized_pnl_usdt=_f(row, "totalPerpUPL") or _f(coin, "unrealisedPnl"),
    )  # fmt: skip


def fmt(x: float) -> str:
    """Format a rounded price or quantity as Bybit wants it: a plain decimal string, no exponent."""
    text = f"{x:.10f}".rstrip("0").rstrip(".")
    return text or "0"
