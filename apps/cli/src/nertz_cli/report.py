"""The figures of a run (a backtest, or one side of a counterfactual): per symbol and in total.

:func:`summarize` turns a run's events into plain data (what the JSON report holds and what sweeps rank
by); :mod:`nertz_cli.html` draws it; :func:`save` writes a report to a directory or a URL
(``s3://bucket/reports/``). Money in USDT, returns and drawdowns as fractions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nertz_common import events as ev
from nertz_common.storage import Storage, Target, join

if TYPE_CHECKING:
    from nertz_cli.tools import Run

COMPONENTS = ("signal", "llm-validator", "executor")


def iso(ts_ns: int) -> str:
    """Return UNIX ns as an ISO 8601 UTC string (seconds)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SymbolFigures:
    """One symbol's decisions and results."""

    intents: int = 0
    approved: int = 0
    rejected: int = 0
    suppressed: int = 0
    risk_denied: int = 0
    expired: int = 0
    trades: int = 0
    wins: int = 0
    pnl_usdt: float = 0.0
    fees_usdt: float = 0.0
    max_drawdown_usdt: float = 0.0
    r_multiples: list[float] = field(default_factory=list)
    buy_and_hold: float | None = None

    @property
    def win_rate(self) -> float:
        """Winning trades / trades (0 without trades)."""
        return self.wins / self.trades if self.trades else 0.0

    @property
    def gross_pnl_usdt(self) -> float:
        """P&L before fees."""
        return self.pnl_usdt + self.fees_usdt

    @property
    def avg_r(self) -> float | None:
        """Mean R-multiple (net P&L / planned risk at the stop-loss), None without trades."""
        return sum(self.r_multiples) / len(self.r_multiples) if self.r_multiples else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "intents": self.intents, "approved": self.approved, "rejected": self.rejected,
            "suppressed": self.suppressed, "risk_denied": self.risk_denied, "expired": self.expired,
            "trades": self.trades, "wins": self.wins, "win_rate": self.win_rate, "pnl_usdt": self.pnl_usdt,
            "gross_pnl_usdt": self.gross_pnl_usdt, "fees_usdt": self.fees_usdt,
            "max_drawdown_usdt": self.max_drawdown_usdt, "avg_r_multiple": self.avg_r,
            "buy_and_hold_return": self.buy_and_hold,
        }  # fmt: skip


def summarize(
    events: Iterable[ev.Event],
    *,
    equity_usdt: float,
    closes: Mapping[str, tuple[float, float]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Return the figures of a run.

    Parameters
    ----------
    events : iterable of Event
        Every event of the run in log order (signal's, the validator's, the executor's).
    equity_usdt : float
        Starting equity.
    closes : mapping, optional
        Per symbol, the first and last close (buy-and-hold of the same period).
    weights : mapping, optional
        Factor weights, for the factor contributions of the trades' entries.

    Returns
    -------
    dict
        ``total``, ``symbols``, ``equity`` (``[ts_ns, equity]`` at each close), ``trades`` and ``factors``.
    """
    syms: dict[str, SymbolFigures] = defaultdict(SymbolFigures)
    intents: dict[str, ev.IntentProposed] = {}
    snapshots: dict[str, ev.FactorSnapshot] = {}
    opened: dict[str, ev.PositionOpened] = {}
    cum: dict[str, float] = defaultdict(float)
    peak: dict[str, float] = defaultdict(float)
    equity = equity_usdt
    top = equity_usdt
    max_dd = 0.0
    curve: list[list[float]] = []
    trades: list[dict[str, Any]] = []
    contributions: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if isinstance(e, ev.FactorSnapshot):
            if e.intent_id is not None:
                snapshots[e.intent_id] = e
            continue
        if not isinstance(e, ev.InstrumentEvent) or isinstance(e, ev.Bar):
            continue
        sym = e.symbol
        s = syms[sym]
        if isinstance(e, ev.IntentProposed):
            s.intents += 1
            intents[e.correlation_id] = e
        elif isinstance(e, ev.VerdictIssued):
            if e.decision == "approve":
                s.approved += 1
            else:
                s.rejected += 1
        elif isinstance(e, ev.SignalSuppressed):
            s.suppressed += 1
        elif isinstance(e, ev.RiskDenied):
            s.risk_denied += 1
        elif isinstance(e, ev.EntryExpired):
            s.expired += 1
        elif isinstance(e, ev.PositionOpened):
            opened[e.correlation_id] = e
        elif isinstance(e, ev.OrderFilled):
            s.fees_usdt += e.fee_usdt
        elif isinstance(e, ev.PositionClosed):
            pc = e  # the whole round trip (a TP1 closed earlier included: trade_*)
            s.trades += 1
            s.wins += pc.trade_pnl_usdt > 0
            s.pnl_usdt += pc.trade_pnl_usdt
            cum[sym] += pc.trade_pnl_usdt
            peak[sym] = max(peak[sym], cum[sym])
            s.max_drawdown_usdt = max(s.max_drawdown_usdt, peak[sym] - cum[sym])
            equity += pc.trade_pnl_usdt
            top = max(top, equity)
            max_dd = max(max_dd, (top - equity) / top if top > 0 else 0.0)
            curve.append([pc.ts_event, equity])
            intent = intents.get(pc.correlation_id)
            risk = abs(pc.entry_price - intent.stop_loss) * pc.trade_qty if intent else 0.0
            r = pc.trade_pnl_usdt / risk if risk > 0 else None
            if r is not None:
                s.r_multiples.append(r)
            snap = snapshots.get(pc.correlation_id)
            if snap is not None and weights:
                used = [n for n in snap.used if weights.get(n, 0) > 0]
                w_sum = sum(weights[n] for n in used) or 1.0
                for n in used:
                    v = getattr(snap, n)
                    if v is not None:
                        contributions[n].append(10.0 * weights[n] / w_sum * v * (1 if pc.side == "long" else -1))
            op = opened.get(pc.correlation_id)
            trades.append({
                "symbol": sym, "side": pc.side, "opened": iso(op.ts_event) if op else None, "closed": iso(pc.ts_event),
                "entry_price": pc.entry_price, "exit_price": pc.exit_price, "qty": pc.trade_qty,
                "exit_reason": pc.exit_reason, "pnl_usdt": pc.trade_pnl_usdt, "fees_usdt": pc.trade_fee_usdt,
                "return": pc.trade_return_fraction, "r_multiple": r, "holding_h": pc.holding_ns / 3.6e12,
                "combined": intent.combined if intent else None,
            })  # fmt: skip
    if closes:
        for sym, (first, last) in closes.items():
            syms[sym].buy_and_hold = last / first - 1.0 if first > 0 else None
    syms.pop("", None)
    total_trades = sum(s.trades for s in syms.values())
    pnl = sum(s.pnl_usdt for s in syms.values())
    fees = sum(s.fees_usdt for s in syms.values())
    gross = pnl + fees
    bh = [s.buy_and_hold for s in syms.values() if s.buy_and_hold is not None]
    r_all = [r for s in syms.values() for r in s.r_multiples]
    total = {
        "start_equity_usdt": equity_usdt,
        "end_equity_usdt": equity,
        "return": (equity - equity_usdt) / equity_usdt,
        "pnl_usdt": pnl,
        "gross_pnl_usdt": gross,
        "fees_usdt": fees,
        "fees_share_of_gross": fees / abs(gross) if gross else None,
        "trades": total_trades,
        "wins": sum(s.wins for s in syms.values()),
        "win_rate": sum(s.wins for s in syms.values()) / total_trades if total_trades else 0.0,
        "max_drawdown": max_dd,
        "avg_r_multiple": sum(r_all) / len(r_all) if r_all else None,
        "intents": sum(s.intents for s in syms.values()),
        "suppressed": sum(s.suppressed for s in syms.values()),
        "risk_denied": sum(s.risk_denied for s in syms.values()),
        "buy_and_hold_return": sum(bh) / len(bh) if bh else None,
    }
    return {
        "total": total,
        "symbols": {k: v.as_dict() for k, v in sorted(syms.items())},
        "equity": curve,
        "trades": trades,
        "factors": {n: {"mean": sum(v) / len(v), "n": len(v)} for n, v in sorted(contributions.items()) if v},
    }


def of_run(run: Run, files: list[str]) -> dict[str, Any]:
    """Return the report of a backtest run (what ``nertz backtest`` prints and writes).

    :func:`summarize` of every component's events, plus ``run`` (the input files, bars, speed, period,
    settings and their hash) and ``buy_and_hold`` (``[ts_ns, equity_usdt]``, from the same equity).
    """
    settings = run.settings
    events = [e for name in COMPONENTS for e in run.outputs.get(name, [])]
    events.sort(key=lambda e: e.ts_event)
    out = summarize(
        events, equity_usdt=settings.executor.equity_usdt, closes=run.closes, weights=settings.signal.weights.as_dict()
    )
    out["run"] = {
        "files": files, "bars": run.bars, "inputs": run.inputs, "seconds": run.seconds,
        "bars_per_s": run.bars_per_s, "first": iso(run.first_ns), "last": iso(run.last_ns),
        "settings": settings.decisions(), "config_hash": settings.decisions_hash(),
    }  # fmt: skip
    start = settings.executor.equity_usdt
    out["buy_and_hold"] = [[ts, start * g] for ts, g in run.hold]
    return out


def save(out_dir: Target, name: str, text: str, storage: Storage | None = None) -> str:
    """Write one report file (JSON, HTML) as ``name`` in the directory ``out_dir``; return where it went.

    ``out_dir`` is a local directory (created if needed) or a URL (``s3://bucket/reports/run-1``); the
    file is replaced atomically (:mod:`nertz_common.storage`). ``storage``: how URLs are reached
    (default: settings from the environment).

    Raises
    ------
    StorageError
        If a URL's store refuses the write or cannot be reached.
    OSError
        If a local file cannot be written.
    """
    where = join(out_dir, name)
    (storage or Storage()).write_text(where, text)
    return where
