"""Event factories for tests: valid events with sensible defaults, overridable by keyword."""

from __future__ import annotations

from typing import Any

from nertz_common import events as ev
from nertz_common.ids import derive_id

MINUTE_NS = 60_000_000_000
T0_NS = 1_748_623_140_000_000_000  # 2025-05-30 16:39 UTC, the first bar of the bundled data


def bar(i: int = 0, symbol: str = "BTCUSDT", close: float = 100.0, **kw: Any) -> ev.Bar:
    """Return the closed 1m bar number ``i`` after ``T0_NS`` (open = ``close`` unless given)."""
    open_time = T0_NS + i * MINUTE_NS
    o = kw.pop("open", close)
    fields: dict[str, Any] = dict(
        event_id=derive_id("Bar", symbol, "1", open_time, True),
        ts_event=open_time + MINUTE_NS,
        ts_init=open_time + MINUTE_NS,
        symbol=symbol,
        interval="1",
        open_time_ns=open_time,
        open=o,
        high=max(o, close) * 1.001,
        low=min(o, close) * 0.999,
        close=close,
        volume=10.0,
    )
    fields.update(kw)
    return ev.Bar(**fields)


def book(
    ts_ns: int = T0_NS,
    symbol: str = "BTCUSDT",
    mid: float = 100.0,
    spread: float = 0.1,
    levels: int = 10,
    qty: float = 1.0,
    **kw: Any,
) -> ev.BookSnapshot:
    """Return a symmetric book of ``levels`` levels around ``mid`` (tick = ``spread``)."""
    bids = [(round(mid - spread / 2 - i * spread, 8), qty) for i in range(levels)]
    asks = [(round(mid + spread / 2 + i * spread, 8), qty) for i in range(levels)]
    fields: dict[str, Any] = dict(
        event_id=derive_id("BookSnapshot", symbol, ts_ns),
        ts_event=ts_ns,
        ts_init=ts_ns,
        symbol=symbol,
        bids=bids,
        asks=asks,
        depth=levels,
        update_id=1,
    )
    fields.update(kw)
    return ev.BookSnapshot(**fields)


def intent(
    bar_: ev.Bar, side: ev.PositionSide = "long", sl: float = 0.01, rr: float = 3.0, **kw: Any
) -> ev.IntentProposed:
    """Return an intent proposed on ``bar_`` with a stop-loss distance ``sl`` (fraction)."""
    iid = derive_id("IntentProposed", bar_.event_id)
    p = bar_.close
    sign = 1 if side == "long" else -1
    fields: dict[str, Any] = dict(
        event_id=iid,
        ts_event=bar_.ts_event,
        ts_init=bar_.ts_event,
        symbol=bar_.symbol,
        correlation_id=iid,
        causation_id=bar_.event_id,
        side=side,
        entry_price=p,
        take_profit=p * (1 + sign * rr * sl),
        stop_loss=p * (1 - sign * sl),
        qty=1.0,
        notional_usdt=p,
        leverage=3.0,
        sl_distance=sl,
        tp_distance=rr * sl,
        combined=5.0,
        trend="up" if side == "long" else "down",
    )
    fields.update(kw)
    return ev.IntentProposed(**fields)


def verdict(intent_: ev.IntentProposed, decision: ev.Decision = "approve", **kw: Any) -> ev.VerdictIssued:
    """Return the rules policy's verdict on ``intent_``."""
    fields: dict[str, Any] = dict(
        event_id=derive_id("VerdictIssued", intent_.event_id),
        ts_event=intent_.ts_event,
        ts_init=intent_.ts_event,
        symbol=intent_.symbol,
        correlation_id=intent_.correlation_id,
        causation_id=intent_.event_id,
        decision=decision,
        confidence=0.7,
        size_multiplier=1.0,
        policy="rules",
    )
    fields.update(kw)
    return ev.VerdictIssued(**fields)


HOUR_NS = 60 * MINUTE_NS


def news(
    ts_ns: int = T0_NS,
    symbol: str = "BTCUSDT",
    events: tuple[tuple[str, float, bool, float], ...] = (),
    **kw: Any,
) -> ev.NewsAssessed:
    """Return a scheduled ``NewsAssessed`` at ``ts_ns`` whose key events are ``(title, impact, critical,
    hours before ts_ns)``; its overall impact is the events' mean (0 without any)."""
    items = [
        ev.NewsItem(date="2025-05-30", ts_ns=ts_ns - round(age_h * HOUR_NS), title=title, impact=impact, critical=crit)
        for title, impact, crit, age_h in events
    ]
    fields: dict[str, Any] = dict(
        event_id=derive_id("NewsAssessed", symbol, ts_ns),
        ts_event=ts_ns,
        ts_init=ts_ns,
        symbol=symbol,
        trigger="schedule",
        slot_ns=ts_ns,
        impact=sum(i.impact for i in items) / len(items) if items else 0.0,
        key_events=items,
    )
    fields.update(kw)
    return ev.NewsAssessed(**fields)
