"""Prometheus metrics of the executor: ``nertz_executor_*`` (labels: symbol, outcome, reason, rule)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from nertz_common import events as ev
from nertz_executor.core.lock import LOCK_LEVEL, ExecutorState

P = "nertz_executor"


class ExecutorMetrics:
    """Lock state per symbol, orders by outcome, positions, equity, drawdown, suppressions, barrier waits."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._peak_equity = 0.0  # highest equity observed (drawdown gauge), USDT
        self.lock_state = Gauge(
            f"{P}_lock_state",
            "Hard Lock state per symbol: 0 FLAT, 1 ENTRY_PENDING, 2 LOCKED, 3 COOLDOWN",
            ["symbol"],
            registry=registry,
        )
        self.orders = Counter(
            f"{P}_orders_total",
            "Orders by outcome (submitted, filled, expired, rejected, risk_denied)",
            ["outcome"],
            registry=registry,
        )
        self.open_positions = Gauge(f"{P}_open_positions", "Positions open (LOCKED symbols)", registry=registry)
        self.equity = Gauge(f"{P}_equity_usdt", "Account equity: start + realized P&L, USDT", registry=registry)
        self.realized_pnl = Gauge(f"{P}_realized_pnl_usdt", "Realized P&L net of fees, USDT", registry=registry)
        self.drawdown = Gauge(f"{P}_drawdown_ratio", "Drawdown from peak equity, fraction", registry=registry)
        self.suppressed = Counter(
            f"{P}_suppressed_total", "Verdicts suppressed by the Hard Lock, by reason", ["reason"], registry=registry
        )
        self.risk_denied = Counter(
            f"{P}_risk_denied_total", "Approved verdicts denied by a risk rule", ["rule"], registry=registry
        )
        self.positions_closed = Counter(
            f"{P}_positions_closed_total", "Positions closed, by exit reason", ["exit_reason"], registry=registry
        )
        self.positions_reduced = Counter(
            f"{P}_positions_reduced_total", "Positions partly closed (TP1), by exit reason", ["exit_reason"],
            registry=registry,
        )  # fmt: skip
        self.stops_moved = Counter(
            f"{P}_stops_moved_total", "Exits of open positions moved, by phase (entry, breakeven, trail)", ["phase"],
            registry=registry,
        )  # fmt: skip
        self.trading_enabled = Gauge(
            f"{P}_trading_enabled", "1 when new entries are allowed on every symbol (scope all)", registry=registry
        )
        self.venue_calls = Counter(
            f"{P}_venue_calls_total",
            "Bybit REST calls by pybit method and outcome (ok, rate_limited, clock_skew, transient, refused, unknown)",
            ["method", "outcome"],
            registry=registry,
        )
        self.venue_reports = Counter(
            f"{P}_venue_reports_total", "Reports of the real venue recorded on the log, by type", ["type"],
            registry=registry,
        )  # fmt: skip
        self.venue_mismatches = Counter(
            f"{P}_venue_mismatches_total", "Reconciliation mismatches, by action (adopted, halted, closed)",
            ["action"], registry=registry,
        )  # fmt: skip
        self.symbol_trading = Gauge(
            f"{P}_symbol_trading_enabled", "1 when new entries are allowed on the symbol", ["symbol"], registry=registry
        )

    def observe_event(self, event: ev.Event) -> None:
        """Count one published event."""
        if isinstance(event, ev.OrderSubmitted) and not event.reduce_only:
            self.orders.labels(outcome="submitted").inc()
        elif isinstance(event, ev.OrderFilled) and not event.reduce_only:
            self.orders.labels(outcome="filled").inc()
        elif isinstance(event, ev.EntryExpired):
            self.orders.labels(outcome="expired").inc()
        elif isinstance(event, ev.OrderRejected):
            self.orders.labels(outcome="rejected").inc()
        elif isinstance(event, ev.RiskDenied):
            self.orders.labels(outcome="risk_denied").inc()
            self.risk_denied.labels(rule=event.rule).inc()
        elif isinstance(event, ev.SignalSuppressed):
            self.suppressed.labels(reason=event.reason).inc()
        elif isinstance(event, ev.PositionClosed):
            self.positions_closed.labels(exit_reason=event.exit_reason).inc()
        elif isinstance(event, ev.VenueMismatch):
            self.venue_mismatches.labels(action=event.action).inc()
        elif isinstance(event, ev.PositionReduced):
            self.positions_reduced.labels(exit_reason=event.exit_reason).inc()
        elif isinstance(event, ev.StopMoved):
            self.stops_moved.labels(phase=event.phase).inc()

    def observe_state(self, state: ExecutorState, symbols: list[str] | None = None) -> None:
        """Set the gauges from ``state`` (``symbols`` are shown FLAT until seen)."""
        for s in symbols or []:
            self.lock_state.labels(symbol=s).set(LOCK_LEVEL[state.symbol(s).lock])
        for s, sym in state.symbols.items():
            self.lock_state.labels(symbol=s).set(LOCK_LEVEL[sym.lock])
        self.open_positions.set(state.open_positions)
        self.equity.set(state.equity_usdt)
        self.realized_pnl.set(state.realized_pnl_usdt)
        self._peak_equity = max(self._peak_equity, state.start_equity_usdt, state.equity_usdt)
        self.drawdown.set((self._peak_equity - state.equity_usdt) / self._peak_equity)
        self.trading_enabled.set(1 if state.trading_enabled else 0)
        for s in symbols or []:
            self.symbol_trading.labels(symbol=s).set(1 if state.trading_allowed(s) else 0)
