"""Composition root of the executor: the Hard Lock component on its three lanes, with the paper venue."""

from __future__ import annotations

import argparse
import logging

from nertz_common import events as ev
from nertz_common import runtime, settings
from nertz_common.node.component import Node, Output
from nertz_common.node.nats_runner import ComponentRunner, Hooks
from nertz_executor.adapters.bybit import BybitVenueAdapter, private_socket_factory
from nertz_executor.adapters.bybit_rest import REST_URLS, BybitRest
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


async def start(
    rt: runtime.Runtime, config: ExecutorSettings, metrics: ExecutorMetrics | None = None
) -> tuple[Executor, ComponentRunner]:
    """Build the executor and its JetStream runner on ``rt`` (run it with ``runner.run()``)."""
    executor = Executor(config.executor.to_config(), reconfigure=config.executor.reconfigured)
    metrics = metrics or ExecutorMetrics(rt.registry)
    runner = await rt.component(
        Node(executor), config, config_hash=config.fingerprint(), hooks=hooks(metrics, executor, list(config.symbols))
    )
    metrics.observe_state(executor.state, list(config.symbols))
    return executor, runner


def venue_adapter(rt: runtime.Runtime, config: ExecutorSettings, metrics: ExecutorMetrics) -> BybitVenueAdapter:
    """Build the Bybit venue adapter of ``config`` on ``rt`` (run it with ``adapter.run()``).

    Raises
    ------
    ValueError
        If the API key or secret is missing (settings validation says so first).
    """
    key, secret = config.bybit_api_key, config.bybit_api_secret
    if key is None or secret is None:
        raise ValueError("expected BYBIT_API_KEY and BYBIT_API_SECRET for the Bybit venue")
    b = config.bybit
    rest = BybitRest(
        b.rest_url or REST_URLS[config.bybit_env], key.get_secret_value(), secret.get_secret_value(),
        timeout_s=b.timeout_s, recv_window_ms=b.recv_window_ms, attempts=b.attempts,
        rate_limit_max_wait_s=b.rate_limit_max_wait_s,
        on_call=lambda method, outcome: metrics.venue_calls.labels(method=method, outcome=outcome).inc(),
    )  # fmt: skip
    socket = private_socket_factory(
        api_key=key.get_secret_value(), api_secret=secret.get_secret_value(), env=config.bybit_env, base_url=b.ws_url
    )
    return BybitVenueAdapter(
        js=rt.js, nc=rt.nc, publisher=rt.publisher, rest=rest, socket=socket, symbols=config.symbols, stop=rt.stop,
        on_report=lambda e: metrics.venue_reports.labels(type=type(e).__name__ if e is not None else "invalid").inc(),
    )  # fmt: skip


async def run(config: ExecutorSettings) -> None:
    """Run the executor until SIGTERM/SIGINT (flush, snapshot, exit); with the Bybit venue, its adapter too."""
    async with runtime.runtime(SERVICE, config) as rt:
        metrics = ExecutorMetrics(rt.registry)
        _, runner = await start(rt, config, metrics)
        work = [runner.run()]
        if config.executor.venue == "bybit":
            work.append(venue_adapter(rt, config, metrics).run())
        log.info("executor.venue", extra={"venue": config.executor.venue, "bybit_env": config.bybit_env})
        await rt.until_stopped(*work)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nertz_executor``."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_executor",
        description=(
            "Nertz executor: the Structural Hard Lock. Reads market data and operator commands "
            "(executor-market) in log order and, at every closed bar, joins its FactorSnapshot, intent and "
            "verdict (executor-decisions, executor-verdicts); suppresses verdicts while a symbol is locked, "
            "runs the risk guard, and trades on the paper venue (publishing exec.* and venue.*.paper events) or "
            "on Bybit, whose adapter sends the orders through pybit and records Bybit's answers, fills, "
            "positions and wallet as venue.*.bybit events (reconciled on start and after every reconnect of "
            "the private stream). On start it restores its snapshot and re-derives the tail of the log after it."
        ),
        epilog=(
            "Environment: NATS_URL, NERTZ_METRICS_PORT, NERTZ_LOG_LEVEL, NERTZ_SYMBOLS, NERTZ_EXECUTOR__<KEY> "
            "with KEY in EQUITY_USDT, TAKER_FEE, SLIPPAGE_BPS, ENTRY_TIMEOUT_S, COOLDOWN_S, MIN_HOLD_S, "
            "MAX_HOLD_S, STALE_BAND, NEWS_PROTECTION, NEWS_PROTECTION_H, MAX_POSITIONS, MAX_LEVERAGE, "
            "MIN_NOTIONAL_USDT, MAX_RISK_PER_TRADE, "
            "DAILY_LOSS_LIMIT, TRADING_ENABLED, VENUE (paper|bybit), ON_FOREIGN (adopt|halt), "
            "CORRELATION_GROUPS (JSON), MAX_POSITIONS_PER_GROUP, "
            "MAX_FUNDING_RATE_8H, BASE_LEVERAGE, REFERENCE_VOLATILITY, VOLATILITY_WINDOW, VOLATILITY_MIN_SAMPLES, "
            "VOL_FACTOR_MIN, VOL_FACTOR_MAX, DRAWDOWN_TIERS (JSON), DRAWDOWN_FLOOR_FACTOR, DRAWDOWN_WINDOW_DAYS, "
            "PERFORMANCE_WINDOW, PERFORMANCE_MIN_TRADES, PERFORMANCE_FACTOR_MIN, PERFORMANCE_FACTOR_MAX, "
            "MAKER_FEE, EXIT_PLAN (single|scaled), TP1_R, TP2_R, TP1_FRACTION, BREAKEVEN_TRIGGER (0 = off), "
            "BREAKEVEN_OFFSET, TRAIL_DISTANCE (0 = off); "
            "NERTZ_KERNEL__<KEY> (FETCH_BATCH, SNAPSHOT_EVERY, SNAPSHOT_INTERVAL_S, SNAPSHOTS). "
            "The Bybit venue (NERTZ_EXECUTOR__VENUE=bybit): BYBIT_ENV (mainnet, testnet, demo), BYBIT_API_KEY, "
            "BYBIT_API_SECRET, NERTZ_BYBIT__<KEY> (REST_URL, WS_URL, TIMEOUT_S, RECV_WINDOW_MS, ATTEMPTS, "
            "RATE_LIMIT_MAX_WAIT_S)."
        ),
    )
    parser.parse_args(argv)
    return runtime.run_service(run(settings.load(ExecutorSettings)))
