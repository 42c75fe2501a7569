"""The text of every post, in Telegram's HTML parse mode (https://core.telegram.org/bots/api#html-style).

Everything that comes from the log is escaped (``<``, ``>``, ``&`` → entities) and free text (reasons,
notes) is cut at :data:`MAX_FREE_TEXT` characters, so a post always parses and stays far below
Telegram's 4,096 characters. Numbers: prices and quantities with up to 8 significant digits, USDT with
two decimals and a sign, fractions as percent. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import html

from nertz_common import events as ev
from nertz_notifier.core.state import ClosedTrade

#: longest free text (a reason, a note) quoted in a post, characters
MAX_FREE_TEXT = 300
DEFAULT_DISCLAIMER = "Not financial advice. Automated message from Nertz."

EXIT_REASONS: dict[str, str] = {
    "take_profit": "take-profit",
    "stop_loss": "stop-loss",
    "stale_exit": "stale exit",
    "manual": "manual",
    "trailing_stop": "trailing stop",
    "liquidation": "liquidation",
    "reconciled": "reconciled with the venue",
    "news": "news protection",
}


def esc(text: object, limit: int = MAX_FREE_TEXT) -> str:
    """Return ``text`` (``str()`` of it) cut at ``limit`` characters (an ellipsis marks the cut) and
    HTML-escaped."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)


def with_disclaimer(body: str, disclaimer: str) -> str:
    """Return ``body`` followed by a blank line and ``disclaimer`` in italics (escaped)."""
    return f"{body}\n\n<i>{esc(disclaimer)}</i>"


def num(x: float) -> str:
    """A price or quantity: up to 8 significant digits, thousands separated (``67,321.5``, ``0.0012``)."""
    return f"{x:,.8g}"


def usdt(x: float) -> str:
    """An amount in USDT with its sign and two decimals (``+12.34 USDT``)."""
    return f"{x:+,.2f} USDT"


def pct(fraction: float) -> str:
    """A fraction as percent with its sign (0.0123 → ``+1.23 %``)."""
    return f"{fraction * 100:+.2f} %"


def utc(ts_ns: int) -> str:
    """UNIX ns as ``2025-05-30 22:00 UTC``."""
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(ns: int) -> str:
    """A holding time: ``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    s = ns // 1_000_000_000
    if s < 60:
        return f"{s} s"
    m, h, d = s // 60, s // 3600, s // 86_400
    if h < 1:
        return f"{m} min"
    if d < 1:
        return f"{h} h {m % 60:02d} min"
    return f"{d} d {h % 24} h"


def _side(side: str) -> str:
    return "🟢 LONG" if side == "long" else "🔴 SHORT"


def _result_mark(pnl_usdt: float) -> str:
    return "✅" if pnl_usdt > 0 else "❌" if pnl_usdt < 0 else "➖"


def entry(e: ev.PositionOpened, leverage: float | None) -> str:
    """The entry post: symbol, side, quantity, entry price, take-profit, stop-loss, leverage, notional."""
    lev = f"{leverage:g}x" if leverage is not None else "n/a"
    return (
        f"{_side(e.side)} <b>{esc(e.symbol)}</b> opened\n"
        f"Qty: {num(e.qty)} · Entry: {num(e.entry_price)}\n"
        f"TP: {num(e.take_profit)} · SL: {num(e.stop_loss)}\n"
        f"Leverage: {lev} · Notional: {num(round(e.qty * e.entry_price, 2))} USDT\n"
        f"🕒 {utc(e.ts_event)}"
    )


def r_multiple(e: ev.PositionClosed, risk_per_unit: float | None) -> float | None:
    """The round trip's R-multiple: ``trade_pnl_usdt / (risk_per_unit × trade_qty)``, net of fees.

    ``risk_per_unit`` is ``|entry − stop-loss|`` at entry (USDT per unit of base; a stop moved later does
    not change the trade's R). None when unknown or zero (no R to measure against).
    """
    if risk_per_unit is None or risk_per_unit <= 0 or e.trade_qty <= 0:
        return None
    return e.trade_pnl_usdt / (risk_per_unit * e.trade_qty)


def exit_(e: ev.PositionClosed, r: float | None) -> str:
    """The exit post: exit reason, exit and entry price, the round trip's realized P&L (USDT), its return
    and R-multiple (when computable), fees and holding time."""
    pnl = e.trade_pnl_usdt
    line_r = f" · {r:+.2f} R" if r is not None else ""
    part = f"\nThis exit: {usdt(e.realized_pnl_usdt)} on {num(e.qty)}" if e.reduced_qty > 0 else ""
    reason = esc(EXIT_REASONS.get(e.exit_reason, e.exit_reason))
    return (
        f"{_result_mark(pnl)} <b>{esc(e.symbol)}</b> {e.side} closed: {reason}\n"
        f"Exit: {num(e.exit_price)} · Entry: {num(e.entry_price)} · Qty: {num(e.trade_qty)}\n"
        f"P&amp;L: <b>{usdt(pnl)}</b> ({pct(e.trade_return_fraction)}){line_r}{part}\n"
        f"Fees: {e.trade_fee_usdt:,.2f} USDT · Held {duration(e.holding_ns)}"
    )


def reduce(e: ev.PositionReduced) -> str:
    """The partial-exit post: what closed at which price, its P&L (USDT), what is left."""
    return (
        f"➗ <b>{esc(e.symbol)}</b> {e.side} reduced: {esc(EXIT_REASONS.get(e.exit_reason, e.exit_reason))}\n"
        f"Closed {num(e.qty_closed)} at {num(e.exit_price)} · {num(e.qty_left)} left\n"
        f"P&amp;L: <b>{usdt(e.realized_pnl_usdt)}</b> · Fees: {e.fee_usdt:,.2f} USDT"
    )


def daily(day: str, trades: list[ClosedTrade]) -> str:
    """The daily statistics of one UTC day: trades, wins, losses, win rate, net P&L and fees (USDT).

    A win is a round trip with P&L > 0 net of fees, a loss one with P&L < 0; the win rate is wins over
    trades.
    """
    n = len(trades)
    if n == 0:
        return f"📊 <b>Daily statistics {esc(day)}</b> (UTC)\nNo closed trades."
    wins = sum(t.pnl_usdt > 0 for t in trades)
    losses = sum(t.pnl_usdt < 0 for t in trades)
    net = sum(t.pnl_usdt for t in trades)
    fees = sum(t.fee_usdt for t in trades)
    return (
        f"📊 <b>Daily statistics {esc(day)}</b> (UTC)\n"
        f"Trades: {n} · Wins: {wins} · Losses: {losses} · Win rate: {wins / n * 100:.1f} %\n"
        f"Net P&amp;L: <b>{usdt(net)}</b> · Fees: {fees:,.2f} USDT"
    )


def lock(e: ev.LockEngaged) -> str:
    """The alert of a Hard Lock engaged for another reason than an entry of Nertz's own."""
    return (
        f"🔒 <b>Hard Lock engaged on {esc(e.symbol)}</b>: {esc(e.reason)}\n"
        f"New signals for {esc(e.symbol)} are suppressed until the position closes and its cooldown ends."
    )


_MISMATCH = {
    "halted": "🚨 <b>Trading halted on {s}</b>: the venue disagrees with the log",
    "adopted": "⚠️ <b>Position on {s} adopted</b>: opened outside Nertz, now locked and managed",
    "closed": "⚠️ <b>Position on {s} closed on the log</b>: the venue no longer holds it",
}


def mismatch(e: ev.VenueMismatch) -> str:
    """The alert of a reconciliation the log did not explain (``halted`` needs an operator)."""
    head = _MISMATCH[e.action].format(s=esc(e.symbol))
    tail = f'\nOnce checked, resume it: POST /start {{"scope": "{esc(e.symbol)}"}}' if e.action == "halted" else ""
    return f"{head}\nReason: {esc(e.reason)} ({esc(e.venue_name)}){tail}"


def _override_line(o: ev.RiskOverride) -> str:
    until = utc(o.until_ns)
    if o.kind == "position_size":
        what = f"position size ×{o.value:g}" if o.value is not None else "position size"
    elif o.kind == "entry_threshold":
        what = f"entry threshold |combined| ≥ {o.value:g}" if o.value is not None else "entry threshold"
    elif o.kind == "disable_side":
        what = f"{o.side or 'one'} side disabled"
    else:
        what = "symbol disabled"
    return f"• {esc(o.symbol)}: {what} until {until}"


def override(e: ev.RiskOverrideIssued) -> str:
    """The alert of a circuit-breaker review: its trigger, policy, the overrides (or none) and refusals."""
    lines = [f"🛡️ <b>Risk override on {esc(e.symbol)}</b> (trigger: {esc(e.trigger)}, policy: {esc(e.policy)})"]
    lines += [_override_line(o) for o in e.overrides[:10]] or ["• no action"]
    if e.refused:
        lines.append(f"Refused: {esc('; '.join(e.refused))}")
    if e.note:
        lines.append(f"Note: {esc(e.note)}")
    return "\n".join(lines)


def _scope(scope: str) -> str:
    return "all symbols" if scope == "all" else esc(scope)


def trading_stopped(e: ev.TradingStopped) -> str:
    """The alert of an operator's halt of new entries."""
    why = f": {esc(e.reason)}" if e.reason else ""
    return (
        f"⛔ <b>Trading stopped</b> ({_scope(e.scope)}) by {esc(e.actor)}{why}\n"
        "Open positions keep their exchange take-profit and stop-loss."
    )


def trading_started(e: ev.TradingStarted) -> str:
    """The notice that an operator allowed new entries again."""
    return f"▶️ <b>Trading started</b> ({_scope(e.scope)}) by {esc(e.actor)}"


def dead_letter(e: ev.DeadLettered, suppressed: int) -> str:
    """The alert of a dead letter; ``suppressed`` is how many of the service's were not alerted since the
    previous alert."""
    more = f"\n(+{suppressed} more since the previous alert)" if suppressed else ""
    subject = f"\nSubject: <code>{esc(e.subject, 120)}</code>" if e.subject else ""
    return f"⚠️ <b>Dead letter from {esc(e.service)}</b>: {esc(e.reason)}{subject}{more}"
