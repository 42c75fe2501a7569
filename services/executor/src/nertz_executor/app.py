"""Composition root of the executor: settings, runtime, restart from the log, and the merge loop."""

from __future__ import annotations

import argparse
import asyncio
import logging

from nertz_common import runtime, settings
from nertz_executor.adapters import journal
from nertz_executor.adapters.metrics import ExecutorMetrics
from nertz_executor.core.config import SECOND_NS
from nertz_executor.core.lock import apply_control, initial_state
from nertz_executor.core.recovery import Recovery, recover
from nertz_executor.handlers import Executor
from nertz_executor.settings import ExecutorSettings

log = logging.getLogger("nertz.executor")
SERVICE = "executor"


async def build(rt: runtime.Runtime, config: ExecutorSettings) -> Executor:
    """Rebuild the state from the log (docs/decisions.md D3), bind both consumers and return the loop.

    Order: read both consumers' ack floors and reset them to it (so unfinished messages come again
    at once, in log order); fold the executor's own output into a :class:`Recovery`; apply the
    operator commands the decisions consumer already took; bind ``executor-market``,
    ``executor-decisions`` and ``executor-verdicts``.
    """
    group = config.executor
    core_config = group.to_config()
    floors = await journal.ack_floors(rt.js, reset=group.reset_consumers)
    history = await journal.read_output(rt.js)
    recovery = recover(initial_state(core_config), history)
    controls = await journal.read_controls(rt.js, floors.decisions)
    before = recovery.before
    for c in controls:
        before = apply_control(before, c)
    recovery = Recovery(recovery.input_seq, before, recovery.step_events, recovery.known_ids)
    log.info(
        "executor.rebuilt",
        extra={
            "events": len(history),
            "input_seq": recovery.input_seq,
            "redo_known": len(recovery.known_ids),
            "controls": len(controls),
            "equity_usdt": recovery.after().equity_usdt,
        },
    )
    market = await rt.consumer(journal.MARKET)
    decisions = await rt.consumer(journal.DECISIONS)
    verdicts = await rt.consumer(journal.VERDICTS)
    return Executor(
        publisher=rt.publisher,
        market=market,
        decisions=decisions,
        verdicts=verdicts,
        config=core_config,
        recovery=recovery,
        metrics=ExecutorMetrics(rt.registry),
        symbols=list(config.symbols),
        batch=group.fetch_batch,
        keepalive_s=group.keepalive_s,
        horizon_ns=round(group.buffer_horizon_s * SECOND_NS),
    )


async def run(config: ExecutorSettings) -> None:
    """Run the executor until SIGTERM/SIGINT (drain, then exit)."""
    async with runtime.runtime(SERVICE, config) as rt:
        executor = await build(rt, config)
        await rt.until_stopped(executor.run())


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m nertz_executor``."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_executor",
        description=(
            "Nertz executor: the Structural Hard Lock. Reads market data (executor-market) in log order and, "
            "at every closed bar, its FactorSnapshot and verdict (executor-decisions); suppresses verdicts "
            "while a symbol is locked, runs the risk guard, and trades on the paper venue, publishing "
            "exec.* and venue.fill events. On start it rebuilds its state from its own log and redoes only "
            "the unfinished step."
        ),
        epilog=(
            "Environment: NATS_URL, NERTZ_METRICS_PORT, NERTZ_LOG_LEVEL, NERTZ_SYMBOLS, NERTZ_EXECUTOR__<KEY> "
            "with KEY in EQUITY_USDT, TAKER_FEE, SLIPPAGE_BPS, ENTRY_TIMEOUT_S, COOLDOWN_S, MIN_HOLD_S, "
            "MAX_HOLD_S, STALE_BAND, MAX_POSITIONS, MAX_LEVERAGE, MIN_NOTIONAL_USDT, MAX_RISK_PER_TRADE, "
            "DAILY_LOSS_LIMIT, TRADING_ENABLED, VENUE_NAME, FETCH_BATCH, KEEPALIVE_S, BUFFER_HORIZON_S, "
            "RESET_CONSUMERS."
        ),
    )
    parser.parse_args(argv)
    asyncio.run(run(settings.load(ExecutorSettings)))
