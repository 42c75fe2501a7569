"""Composition root of the executor: the Hard Lock component on its three lanes, with the paper venue."""

from __future__ import annotations

import argparse
import logging

from nertz_common import events as ev
from nertz_common import runtime, settings
from nertz_common.node.component import Node, Output
from nertz_common.node.nats_runner import ComponentRunner, Hooks
from nertz_executor.adapters.metrics import ExecutorMetrics
from nertz_executor.core.component import Executor
from nertz_executor.settings import ExecutorSettings

log = logging.getLogger("nertz.executor")
SERVICE = "executor"

#: log event name of each published event type
_LOG_NAMES: dict[type[ev.Event], str] = {
    ev.VerdictAwaited: "verdict.awaited",
    ev.SignalSuppressed: "signal.suppressed",
    ev.RiskDenied: "risk.denied",
    ev.OrderSubmitted: "order.submitted",
    ev.OrderRejected: "order.rejected",
    ev.OrderFilled: "order.filled",
    ev.PositionOpened: "position.opened",
    ev.LockEngaged: "lock.engaged",
    ev.PositionClosed: "position.closed",
    ev.EntryExpired: "entry.expired",
    ev.LockReleased: "lock.released",
}
_LOGGED_FIELDS = ("reason", "rule", "lock_state", "order_id", "side", "qty", "price", "exit_reason")


def hooks(metrics: ExecutorMetrics, executor: Executor, symbols: list[str]) -> Hooks:
    """Log and count what was published, and refresh the state gauges; never a decision."""

    def published(outputs: list[Output]) -> None:
        for e, pos in outputs:
            metrics.observe_event(e)
            if not isinstance(e, ev.Correlated):
                continue
            extra: dict[str, object] = {
                "symbol": e.symbol, "stream_seq": pos.seq, "event_id": e.event_id, "correlation_id": e.correlation_id,
            }  # fmt: skip
            for f in _LOGGED_FIELDS:
                if hasattr(e, f):
                    extra[f] = getattr(e, f)
            if isinstance(e, ev.PositionClosed):
                extra["realized_pnl_usdt"] = round(e.realized_pnl_usdt, 6)
            log.info(_LOG_NAMES.get(type(e), "executor.event"), extra=extra)

    return Hooks(published=published, after_flush=lambda: metrics.observe_state(executor.state, symbols))


async def start(rt: runtime.Runtime, config: ExecutorSettings) -> tuple[Executor, ComponentRunner]:
    """Build the executor and its JetStream runner on ``rt`` (run it with ``runner.run()``)."""
    executor = Executor(config.executor.to_config())
    metrics = ExecutorMetrics(rt.registry)
    runner = await rt.component(
        Node(executor), config, config_hash=config.fingerprint(), hooks=hooks(metrics, executor, list(config.symbols))
    )
    metrics.observe_state(executor.state, list(config.symbols))
    return executor, runner


async def run(config: ExecutorSettings) -> None:
    """Run the executor until SIGTERM/SIGINT (flush, snapshot, exit)."""
    async with runtime.runtime(SERVICE, config) as rt:
        _, runner = await start(rt, config)
        await rt.until_stopped(runner.run())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nertz_executor``."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_executor",
        description=(
            "Nertz executor: the Structural Hard Lock. Reads market data and operator commands "
            "(executor-market) in log order and, at every closed bar, joins its FactorSnapshot, intent and "
            "verdict (executor-decisions, executor-verdicts); suppresses verdicts while a symbol is locked, "
            "runs the risk guard, and trades on the paper venue, publishing exec.* and venue.fill events. "
            "On start it restores its snapshot and re-derives the tail of the log after it."
        ),
        epilog=(
            "Environment: NATS_URL, NERTZ_METRICS_PORT, NERTZ_LOG_LEVEL, NERTZ_SYMBOLS, NERTZ_EXECUTOR__<KEY> "
            "with KEY in EQUITY_USDT, TAKER_FEE, SLIPPAGE_BPS, ENTRY_TIMEOUT_S, COOLDOWN_S, MIN_HOLD_S, "
            "MAX_HOLD_S, STALE_BAND, MAX_POSITIONS, MAX_LEVERAGE, MIN_NOTIONAL_USDT, MAX_RISK_PER_TRADE, "
            "DAILY_LOSS_LIMIT, TRADING_ENABLED, VENUE_NAME, CORRELATION_GROUPS (JSON), MAX_POSITIONS_PER_GROUP, "
            "MAX_FUNDING_RATE_8H, BASE_LEVERAGE, REFERENCE_VOLATILITY, VOLATILITY_WINDOW, VOLATILITY_MIN_SAMPLES, "
            "VOL_FACTOR_MIN, VOL_FACTOR_MAX, DRAWDOWN_TIERS (JSON), DRAWDOWN_FLOOR_FACTOR, DRAWDOWN_WINDOW_DAYS, "
            "PERFORMANCE_WINDOW, PERFORMANCE_MIN_TRADES, PERFORMANCE_FACTOR_MIN, PERFORMANCE_FACTOR_MAX; "
            "NERTZ_KERNEL__<KEY> (FETCH_BATCH, SNAPSHOT_EVERY, "
            "SNAPSHOT_INTERVAL_S, SNAPSHOTS)."
        ),
    )
    parser.parse_args(argv)
    return runtime.run_service(run(settings.load(ExecutorSettings)))
